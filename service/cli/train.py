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
        int, typer.Option(help="Seed of the split, the folds, the models and the cohort.")
    ] = DEFAULT_SEED,
    setting: Annotated[
        list[str] | None,
        typer.Option("--setting", help="With --synthetic: draw only this setting (repeatable; default all)."),
    ] = None,
    repeats: Annotated[
        int | None, typer.Option("--repeats", min=1, help="Cross-validation repeats (default: by data size).")
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Fit, evaluate and register both models (discontinuation and dose reduction) in MLflow."""
    if (data is None) == (synthetic is None):
        raise typer.BadParameter("give exactly one of --data FILE or --synthetic N")
    if setting and synthetic is None:
        raise typer.BadParameter("--setting only applies to --synthetic")

    from features.model.registry import RegistrySettings
    from features.tableio import read_table
    from features.validate import validate_table
    from training.card import SyntheticSource
    from training.cohort.generate import generate_cohort, resolve_settings
    from training.pipeline import check_outcomes
    from training.pipeline import train as fit
    from training.registry import log_and_register

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
    with progress(quiet) as bar:

        def track(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        result = fit(frame, seed=seed, source=label, n_repeats=repeats, progress=track)
        task = bar.add_task("logging and registering in MLflow", total=1)
        with _mlflow_output(quiet):
            registered = log_and_register(result, settings, synthetic=cohort)
        bar.advance(task)

    held_out = [r.result.heldout_metrics for r in registered]
    rows = {
        "version": [r.version for r in registered],
        "aliases": [", ".join(r.aliases) for r in registered],
        "family": [r.result.chosen for r in registered],
        "CV log loss": [f"{r.cv_log_loss:.4f}" for r in registered],
        "AUC (95% CI)": [
            f"{h['roc_auc']:.3f} ({h['roc_auc_ci_lower']:.3f}–{h['roc_auc_ci_upper']:.3f})" for h in held_out
        ],
        "cal. slope": [f"{h['calibration_slope']:.2f}" for h in held_out],
    }
    table = _table("Registered models", [r.name for r in registered], rows)
    console().print(table)
    out.print(f"Browse the runs and models: {_browse_hint(settings.tracking_uri)}")


def promote(
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Registered model name (repeatable; default both).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the challenger is worse.")] = False,
) -> None:
    """Move the champion alias to the challenger when its cross-validated log loss is no worse."""
    from features.model.registry import RegistrySettings
    from training.registry import promote as decide

    decisions = decide(RegistrySettings(), model or None, force=force)
    rows = {
        "champion": [f"{d.champion or 'none'} ({_loss(d.champion_cv_log_loss)})" for d in decisions],
        "challenger": [f"{d.challenger} ({_loss(d.challenger_cv_log_loss)})" for d in decisions],
        "decision": [d.decision for d in decisions],
    }
    table = _table("Promotion", [d.name for d in decisions], rows)
    console().print(table)


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
    """``mlflow ui`` for a database store (password masked), the address of a tracking server."""
    parsed = urlparse(uri)
    if parsed.password:
        uri = parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()
    return uri if parsed.scheme in ("http", "https") else f"mlflow ui --backend-store-uri {uri}"


def _loss(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"
