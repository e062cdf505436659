"""``lenrisk monitor --labels``: calibration of the served risks once outcomes arrive, over sliding windows.

A thin command over :mod:`training.labelled_predictions` (reading, joining, rejecting) and
:mod:`training.outcome_monitoring` (windows, alert rule, suggestion); the HTML page is
:mod:`training.outcome_report`. Exit code 0 without an alert, 3 with one (as the input drift monitor), 2 for
a file that cannot be monitored.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from service.cli.console import console
from service.cli.monitor import DRIFTED


def monitor_labels(
    labels: Path,
    *,
    predictions: Path | None,
    key: list[str] | None,
    order_by: str | None,
    window: int,
    step: int,
    json_out: Path | None,
    html_out: Path | None,
    rejects_out: Path | None,
    quiet: bool,
) -> None:
    """Monitor calibration once outcomes arrive: O:E, calibration intercept and slope with 95% intervals
    over sliding windows, per outcome.

    A window alerts when its calibration differs from the model's beyond what chance gives over all the
    run's windows (5% false alarms per run); the suggested update is printed. Exit status: 0 no alert,
    3 alert, 2 a file that cannot be monitored.
    """
    from training.labelled_predictions import load_labelled
    from training.outcome_monitoring import as_json, monitor

    if predictions is None and key:
        raise typer.BadParameter(
            "--key joins --labels to --predictions; give --predictions too", param_hint="--key"
        )
    keys = list(key or ["patient_id"])
    if predictions is None:
        labelled = load_labelled(labels, order_by=order_by)
        sources = {"predictions": labels.name, "labels": labels.name, "key": None, "order_by": order_by}
    else:
        labelled = load_labelled(predictions, labels, key=keys, order_by=order_by)
        sources = {"predictions": predictions.name, "labels": labels.name, "key": keys, "order_by": order_by}
    result = monitor(labelled, window=window, step=step)
    out = console(quiet)
    for name, outcome in result.outcomes.items():
        out.print(_table(name, outcome))
        if outcome.suggestion is not None:
            out.print(f"suggested update: {outcome.suggestion.method}: {outcome.suggestion.reason}")
            out.print(f"  {outcome.suggestion.command}", markup=False, highlight=False)
    if json_out is not None:
        _write_text(json_out, json.dumps(as_json(result, sources), indent=2, allow_nan=False) + "\n")
    if html_out is not None:
        from training.outcome_report import report_html

        _write_text(html_out, report_html(result, sources))
    if rejects_out is not None:
        _write_rejects(rejects_out, labelled.rejects)
    for name, o in result.outcomes.items():
        r = o.rows
        typer.echo(
            f"{name}: {r.read} lines read = {r.used} monitored + {r.unlabelled} without outcome + "
            f"{r.rejected} rejected; {len(o.windows)} windows, {len(o.alerts)} alerting"
        )
    if result.alert:
        alerting = ", ".join(
            f"{n} ({o.suggestion.method})" for n, o in result.outcomes.items() if o.suggestion
        )
        typer.echo(f"ALERT: calibration drifted: {alerting}")
        raise typer.Exit(code=DRIFTED)
    typer.echo("no alert")


def _table(name: str, outcome) -> Table:
    """One outcome's windows, narrow enough for 80 columns (the JSON and HTML have every number)."""
    table = Table(
        title=f"{name}: {len(outcome.alerts)} of {len(outcome.windows)} windows alerting",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("#", "from", "to", "lines", "O:E (95% CI)", "slope (95% CI)", ""):
        table.add_column(column, justify="left" if column in ("from", "to", "") else "right", no_wrap=True)
    for w in outcome.windows:
        table.add_row(
            str(w.index),
            str(w.start),
            str(w.end),
            f"{w.n:,}",
            _ci(w.observed_expected),
            _ci(w.calibration_slope),
            "[bold red]ALERT[/]" if w.alert else "",
        )
    return table


def _ci(i) -> str:
    return f"{i.estimate:.2f} ({i.lower:.2f}-{i.upper:.2f})"


def _write_text(path: Path, text: str) -> None:
    from features.tableio import atomic_write

    with atomic_write(path, "w") as f:
        f.write(text)


def _write_rejects(path: Path, rejects) -> None:
    import pandas as pd

    from features.tableio import write_table

    columns = ["row_number", "patient_id", "column", "reason"]
    write_table(pd.DataFrame([[getattr(e, c) for c in columns] for e in rejects], columns=columns), path)
