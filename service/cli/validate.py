"""``lenrisk validate``: external validation of registered versions on a labelled file.

A thin command over :func:`training.external_run.run_validation`. Domain errors (no such model or alias, no
outcome column, an unreadable file) propagate to the root app (``service.cli``), which prints them and exits
with code 2.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from service.cli.console import Quiet, console


def validate(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Labelled file, CSV or Parquet: the record's columns and the outcome of each line "
            "(discontinued_toxicity and/or dose_reduced: 0 or 1), one row per treatment line.",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="NAME@ALIAS",
            help="One registered version, by alias or version number (e.g. "
            "lenalidomide-discontinuation@challenger, lenalidomide-dose-reduction@3). Without it, both "
            "models' champion.",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="OUT.html",
            dir_okay=False,
            help="Also write the one-page HTML report here (it is always logged with the MLflow run).",
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            metavar="FILE",
            dir_okay=False,
            help="Where to write the rows that break the record contract, one line per broken rule (CSV or "
            "Parquet); without it, beside the report as <report name>.rejects.csv, or nowhere without a "
            "report (the run keeps the counts of each reason).",
        ),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            min=0,
            metavar="N",
            help="Bootstrap resamples of patients for the AUC's confidence interval.",
        ),
    ] = 1000,
    seed: Annotated[int, typer.Option(metavar="SEED", help="Seed of the bootstrap.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Validate registered models on your own labelled patients: calibration, discrimination, net benefit.

    Logs an MLflow run linked to each model version (tagged last_external_validation_run) with the metrics,
    figures and the report; rows that break the record contract are rejected with the reason.
    """
    from features.model.registry import RegistrySettings
    from training.external_report import verdict
    from training.external_run import run_validation

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    out = console(quiet)
    if rejects is None and report is not None:
        rejects = report.with_name(f"{report.stem}.rejects.csv")
    result = run_validation(
        RegistrySettings(),
        data,
        model,
        report=report,
        rejects=rejects,
        n_boot=bootstrap,
        seed=seed,
        note=lambda message: out.print(message, markup=False, highlight=False),
    )
    table = Table(title=f"External validation on {result.data.file_name} (95% CI)", box=box.SIMPLE_HEAD)
    table.add_column("")
    for ref, _, _ in result.models:
        table.add_column(f"{ref.name.removeprefix('lenalidomide-')} v{ref.version}", justify="right")
    perfs = [v.performance for _, v, _ in result.models]
    table.add_row("lines (events)", *(f"{p.n} ({p.events})" for p in perfs))
    for label, name in (
        ("calibration in the large", "calibration_intercept"),
        ("calibration slope", "calibration_slope"),
        ("observed/expected", "observed_expected"),
        ("AUC", "roc_auc"),
    ):
        table.add_row(label, *(_ci(getattr(p, name)) for p in perfs))
    table.add_row("Brier (scaled)", *(f"{p.brier:.3f} ({p.scaled_brier:.2f})" for p in perfs))
    console().print(table)
    for ref, v, run_id in result.models:
        headline, _ = verdict(v)
        typer.echo(f"{ref.name} v{ref.version}: {headline} (run {run_id})")
    d = result.data
    typer.echo(f"{d.rows_read} rows read = {d.rows_validated} validated + {d.rows_rejected} rejected")
    if report is not None:
        out.print(f"report: {report}", markup=False, highlight=False)
    if rejects is not None:
        out.print(f"rejects: {rejects}", markup=False, highlight=False)


def _ci(i) -> str:
    if math.isnan(i.lower):
        return "n/a" if math.isnan(i.estimate) else f"{i.estimate:.2f}"
    return f"{i.estimate:.2f} ({i.lower:.2f} to {i.upper:.2f})"
