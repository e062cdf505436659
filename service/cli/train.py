"""``lenrisk train`` and ``lenrisk promote``: thin commands over :mod:`training.pipeline` and
:mod:`training.registry`.

Heavy imports (MLflow, XGBoost, SHAP) happen inside the commands, so ``lenrisk --help`` and the other
commands stay fast. Domain errors propagate to the root app (``service.cli``), which prints them and exits
with code 2.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shlex
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stderr
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich import box
from rich.table import Table

from service.cli.console import Quiet, console, progress

DEFAULT_SEED = 2026
MLFLOW_UI_PORT = 5000  # mlflow ui's own default, away from the API's 8000


def train(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Training table (.csv or .parquet) in the contract schema, with outcomes."
        ),
    ] = None,
    synthetic: Annotated[
        int | None, typer.Option("--synthetic", min=1, help="Train on a synthetic cohort of N lines instead.")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the folds, the bootstrap, the models and the synthetic cohort.")
    ] = DEFAULT_SEED,
    setting: Annotated[
        list[str] | None,
        typer.Option("--setting", help="With --synthetic: draw only this setting (repeatable; default all)."),
    ] = None,
    repeats: Annotated[
        int | None, typer.Option("--repeats", min=1, help="Cross-validation repeats (default: by data size).")
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option(
            "--bootstrap",
            min=200,
            help="Bootstrap resamples of the internal validation (at least 200, the default: Harrell).",
        ),
    ] = None,
    allow_small_sample: Annotated[
        bool,
        typer.Option(
            "--allow-small-sample",
            help="Train even when the data are below the parsimonious model's minimum sample size; the "
            "model is flagged and never becomes champion by itself.",
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Check the sample size, develop, validate and register both models (discontinuation and dose reduction).

    Models that do not beat the average risk, or whose ranking is inverted, are logged but not registered;
    the command then exits with code 2.
    """
    if (data is None) == (synthetic is None):
        raise typer.BadParameter("give exactly one of --data FILE or --synthetic N")
    if setting and synthetic is None:
        raise typer.BadParameter("--setting only applies to --synthetic")

    from features.model.registry import RegistrySettings
    from features.tableio import read_table
    from features.validate import validate_table
    from training.card import SyntheticSource
    from training.cohort.generate import generate_cohort, resolve_settings
    from training.pipeline import N_BOOT, check_outcomes, check_sample_size
    from training.pipeline import train as fit
    from training.registry import NotRegisteredError, log_and_register

    settings = RegistrySettings()
    out = console(quiet)
    if data is not None:
        cohort = None
        frame = validate_table(read_table(data), require_outcomes=True).raise_on_errors()
        label = data.name
    else:
        cohort = SyntheticSource(n=synthetic, seed=seed, settings=resolve_settings(setting))
        frame = validate_table(generate_cohort(synthetic, seed, cohort.settings)).raise_on_errors()
        label = cohort.label()
    check_outcomes(frame)  # refuse one-class data before any work
    out.print(f"Training on {label}: {len(frame)} lines")
    checks = check_sample_size(frame, allow_small_sample=True)  # shown before fitting; refused in `fit`
    out.print(_sample_size_table(checks))
    with progress(quiet) as bar:

        def track(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        result = fit(
            frame,
            seed=seed,
            source=label,
            n_boot=bootstrap or N_BOOT,
            n_repeats=repeats,
            allow_small_sample=allow_small_sample,
            progress=track,
        )
        task = bar.add_task("logging and registering in MLflow", total=1)
        with _mlflow_output(quiet):
            logged = log_and_register(result, settings, synthetic=cohort)
        bar.advance(task)

    def validated(r, metric: str, digits: int = 3) -> str:
        m = r.result.validation.metrics[metric]
        return f"{m.corrected:.{digits}f} ({m.lower:.{digits}f}–{m.upper:.{digits}f})"

    rows = {
        "version": [r.version or "not registered" for r in logged],
        "aliases": [", ".join(r.aliases) for r in logged],
        "model": [r.result.chosen + (" (small sample)" if r.result.small_sample else "") for r in logged],
        "AUC (95% CI)": [validated(r, "roc_auc") for r in logged],
        "cal. slope": [validated(r, "calibration_slope", 2) for r in logged],
        "log loss": [f"{r.validated_log_loss:.4f}" for r in logged],
        "null log loss": [f"{r.result.null.metrics['log_loss'].corrected:.4f}" for r in logged],
    }
    title = f"Optimism-corrected ({result.n_boot} bootstrap resamples)"
    table = _table(title, [r.name for r in logged], rows)
    console().print(table)
    hint = textwrap.indent(_browse_hint(settings.tracking_uri), "  ")
    out.print(f"Browse the runs and models:\n{hint}", markup=False, highlight=False, soft_wrap=True)
    refused = [r for r in logged if r.version is None]
    if refused:
        raise NotRegisteredError(
            "; ".join(f"{r.name} not registered: {', '.join(r.result.problems)}" for r in refused)
        )


def promote(
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Registered model name (repeatable; default both).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote even if the challenger is worse, small-sample, or was compared with another "
            "champion.",
        ),
    ] = False,
) -> None:
    """Move the champion alias to the challenger when it does no worse on the same (its development) data."""
    from features.model.registry import RegistrySettings
    from training.registry import promote as decide

    decisions = decide(RegistrySettings(), model or None, force=force)
    rows = {
        "champion": [f"{d.champion or 'none'} ({_loss(d.champion_log_loss)})" for d in decisions],
        "challenger": [f"{d.challenger} ({_loss(d.challenger_log_loss)})" for d in decisions],
        "decision": [d.decision for d in decisions],
    }
    table = _table("Promotion", [d.name for d in decisions], rows)
    console().print(table)


def _sample_size_table(checks) -> Table:
    """Per outcome and candidate: parameters, lines needed, and whether the effective size meets it."""
    table = Table(title="Sample size (Riley criteria; effective lines)", box=box.SIMPLE_HEAD)
    for column in ("outcome", "effective lines", "candidate", "parameters", "lines needed", "EPP", "met"):
        table.add_column(column, justify="left" if column in ("outcome", "candidate", "met") else "right")
    for outcome, check in checks.items():
        for i, row in enumerate(check.table()):
            table.add_row(
                outcome if i == 0 else "",
                f"{check.effective.n:.0f}" if i == 0 else "",
                row["candidate"],
                str(row["parameters"]),
                str(row["min_lines"]),
                _loss(row["events_per_parameter_effective"], 1),
                "yes" if row["met"] else "no",
            )
    return table


@contextmanager
def _mlflow_output(quiet: bool) -> Iterator[None]:
    """MLflow's own chatter: warnings only (all of it hidden when ``quiet``), no download progress bars."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # mlflow.utils.environment warns that pip (absent from uv environments) goes unpinned into conda.yaml.
    levels = {
        "mlflow": logging.ERROR if quiet else logging.WARNING,
        "mlflow.utils.environment": logging.ERROR,
    }
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    before = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        with redirect_stderr(io.StringIO()) if quiet else nullcontext():  # "Successfully registered ..."
            yield
    finally:
        for logger, level in before.items():
            logger.setLevel(level)


def _table(title: str, models: list[str], rows: dict[str, list[str]]) -> Table:
    """One column per model (two fit in 80 columns), one row per item."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("")
    for name in models:
        table.add_column(name, no_wrap=True)
    for label, values in rows.items():
        table.add_row(label, *values)
    return table


def _browse_hint(uri: str) -> str:
    """How to browse the runs and models, to paste as printed: this environment's ``mlflow ui`` on a database
    store (password masked) with the address to open, or the address of a tracking server."""
    parsed = urlparse(uri)
    if parsed.password:
        uri = parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()
    if parsed.scheme in ("http", "https"):
        return f"open {uri}"
    mlflow = Path(sys.executable).with_name("mlflow")
    if mlflow.is_relative_to(Path.cwd()):  # e.g. .venv/bin/mlflow from the project root
        mlflow = mlflow.relative_to(Path.cwd())
    command = shlex.join([str(mlflow), "ui", "--backend-store-uri", uri, "--port", str(MLFLOW_UI_PORT)])
    return f"{command}\nthen open http://127.0.0.1:{MLFLOW_UI_PORT}"


def _loss(value: float, digits: int = 4) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
