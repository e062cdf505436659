"""``lenrisk monitor``: is the model still looking at the patients it was developed on?

``--input FILE``: input drift of a contract file against the development profile carried by a registered
model (:mod:`features.drift`): per field the Jensen–Shannon distance, its threshold for a batch of this
size, whether it drifted, the share of numbers outside the training range and the categories no training
line had. ``--labels FILE``: calibration of the served risks once outcomes arrive, over sliding
windows (:mod:`service.cli.monitor_labels`). Exit status (shared by both checks): 0 nothing drifted,
3 something did (for schedulers to alert on), 2 the input or the model could not be used (domain errors,
``service.cli``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli.console import Quiet, console

if TYPE_CHECKING:
    from rich.console import Console

    from features.drift import DriftReport
    from features.model.riskmodel import RiskModel

#: Exit status when something drifted (0: nothing did).
DRIFTED = 3


def monitor(
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input",
            metavar="FILE",
            help="Contract file (CSV or Parquet; outcomes optional) to compare with the development data.",
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            metavar="FILE",
            help="Outcomes, CSV or Parquet: a file written by lenrisk score with the outcome columns "
            "(discontinued_toxicity, dose_reduced: 0, 1, or empty while not yet known) added; with "
            "--predictions, a file of key columns and outcome columns. Checks calibration over sliding "
            "windows instead of input drift.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", metavar="OUT", help="Write the numbers as JSON (schema: docs/monitor.md)."),
    ] = None,
    html_out: Annotated[
        Path | None,
        typer.Option("--html", metavar="OUT", help="Write a drift report to look at (self-contained HTML)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="NAME@ALIAS",
            help="Registered model whose development data to compare with; without it "
            "lenalidomide-discontinuation@champion (both outcomes' models share their development data).",
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            metavar="FILE",
            help="With --labels: the file written by lenrisk score, when the outcomes come in a separate "
            "--labels file joined to it on --key.",
        ),
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            metavar="COLUMN",
            help="With --labels --predictions: column(s) joining the two, unique per line in both (repeat "
            "the option for several); default: patient_id. Lines with an empty or repeated key are rejected.",
        ),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option(
            "--order-by",
            metavar="COLUMN",
            help="With --labels: order the lines by this column (numbers or ISO 8601 dates, e.g. the "
            "treatment start) before windowing; without it, the file's order.",
        ),
    ] = None,
    window: Annotated[
        int,
        typer.Option("--window", metavar="N", min=1, help="With --labels: labelled lines per window."),
    ] = 500,
    step: Annotated[
        int,
        typer.Option(
            "--step",
            metavar="N",
            min=1,
            help="With --labels: lines from one window's start to the next; the last window always ends at "
            "the newest line.",
        ),
    ] = 250,
    rejects_out: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            metavar="FILE",
            help="With --labels: write the rejected lines, one per broken rule (row number, patient_id, "
            "column, reason), as CSV or Parquet.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Is the model still looking at the patients it was developed on, and still calibrated?

    --input: input drift from the development data. --labels: calibration over sliding windows once outcomes
    arrive, with the update to make. Exit status: 0 nothing drifted, 3 something did, 2 unusable input.
    """
    if (input_path is None) == (labels is None):
        raise typer.BadParameter(
            "give --input FILE (input drift) or --labels FILE (calibration), one of them"
        )
    if labels is not None:
        if model is not None:
            raise typer.BadParameter(
                "only with --input (--labels reads the risks from the scored file)", param_hint="--model"
            )
        from service.cli.monitor_labels import monitor_labels

        monitor_labels(
            labels,
            predictions=predictions,
            key=key,
            order_by=order_by,
            window=window,
            step=step,
            json_out=json_out,
            html_out=html_out,
            rejects_out=rejects_out,
            quiet=quiet,
        )
        return
    if predictions is not None or key or order_by is not None or rejects_out is not None:
        raise typer.BadParameter("--predictions, --key, --order-by and --rejects go with --labels")
    out = console(quiet)
    name, version, risk_model = _registered(model)
    report, rows = _input_drift(input_path, risk_model)
    document: dict[str, Any] = {
        "model": {"name": name, "version": version},
        "file": input_path.name,
        "rows": rows,
        **report.to_dict(),
    }
    _show(out, report, rows, f"{name} v{version}")
    if json_out is not None:
        _write_json(json_out, document)
    if html_out is not None:
        from training.drift_report import write_drift_report

        write_drift_report(html_out, report, rows=rows, model=f"{name} v{version}", source=input_path.name)
    drifted = report.drifted_fields
    typer.echo(f"drifted fields: {', '.join(drifted) if drifted else 'none'}")
    if drifted:
        raise typer.Exit(code=DRIFTED)


def _registered(spec: str | None) -> tuple[str, str, RiskModel]:
    """The registered version ``NAME@ALIAS`` names (loaded and verified), refusing one without a profile."""
    import tempfile

    from features.drift import ProfileMissingError
    from features.model.registry import CHAMPION, MODEL_NAMES, RegistrySettings, load_registered
    from service.errors import ModelLoadError
    from service.model_store import check_registry

    name, _, alias = (spec or f"{MODEL_NAMES['discontinuation']}@{CHAMPION}").partition("@")
    if not name or not alias:
        raise typer.BadParameter(f"{spec!r}: write it as NAME@ALIAS", param_hint="--model")
    uri = RegistrySettings().tracking_uri
    check_registry(uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    try:
        version = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        raise ModelLoadError(f"no registered version {name}@{alias}: {err.message.splitlines()[0]}") from None
    with tempfile.TemporaryDirectory() as folder:
        risk_model = load_registered(client, name, version, folder)
    if risk_model.profile is None:
        raise ProfileMissingError(
            f"{name} version {version} was registered without a development profile (before drift "
            "monitoring): retrain it with this version of lenrisk to monitor its inputs"
        )
    return name, version, risk_model


def _input_drift(path: Path, risk_model: RiskModel) -> tuple[DriftReport, dict[str, Any]]:
    """The drift of the file's valid rows, and the row counts (read = monitored + rejected, with reasons)."""
    from features.drift import compare
    from features.errors import ContractError
    from features.tableio import read_table
    from features.validate import check_table_columns, validate_table

    frame = read_table(path)
    check_table_columns(frame.columns)
    validation = validate_table(frame)
    if validation.clean.empty:
        raise ContractError(f"{path.name}: no row meets the record contract", validation.errors)
    reasons = Counter(f"{e.column}: {e.reason}" for e in validation.errors)
    rows = {
        "read": validation.n_rows,
        "monitored": len(validation.clean),
        "rejected": len(validation.rejected),
        "reject_reasons": dict(reasons.most_common()),
    }
    return compare(risk_model.profile, risk_model.encoder, validation.clean), rows


def _show(out: Console, report: DriftReport, rows: dict[str, Any], model: str) -> None:
    from rich.table import Table

    table = Table(title=f"Input drift against {model}'s development data ({report.development_n} lines)")
    for column in ("field", "JS distance", "threshold", "drifted", "out of range", "unseen categories"):
        table.add_column(column, justify="left" if column in ("field", "unseen categories") else "right")
    for f in report.fields:
        table.add_row(
            f.field,
            f"{f.value:.3f}",
            f"{f.threshold:.3f}",
            "[bold red]yes[/]" if f.drifted else "no",
            "" if f.out_of_range_share is None else f"{f.out_of_range_share:.1%}",
            ", ".join(f"{v} ({c})" for v, c in (f.unseen_categories or {}).items()),
        )
    out.print(table)
    out.print(
        f"{rows['read']} rows read = {rows['monitored']} monitored + {rows['rejected']} rejected; "
        f"batch-level false alarm rate {report.alpha:.0%} (Bonferroni over {len(report.fields)} fields)"
    )


def _write_json(path: Path, document: dict[str, Any]) -> None:
    import json

    from features.tableio import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(document, f, indent=1)
