"""``lenrisk train`` and ``lenrisk promote``: thin commands over :mod:`training.pipeline` and
:mod:`training.registry`.

Heavy imports (MLflow, XGBoost, SHAP) happen inside the commands, so ``lenrisk --help`` and the other
commands stay fast. Domain errors propagate to the root app (``service.cli``), which prints them and exits
with code 2.
"""

from __future__ import annotations

import math
import shlex
import sys
import textwrap
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich import box
from rich.table import Table

from service.cli.console import Quiet, console, mlflow_output, progress

DEFAULT_SEED = 2026
MLFLOW_UI_PORT = 5000  # mlflow ui's own default, away from the API's 8000


def train(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Training table, CSV or Parquet: the record's columns and both outcomes "
            "(discontinued_toxicity, dose_reduced: 0 or 1), one row per treatment line.",
        ),
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option(
            "--synthetic",
            min=1,
            metavar="LINES",
            help="Train instead on this many synthetic lines (as `lenrisk cohort` writes them).",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            metavar="SEED",
            help="Random seed of the synthetic cohort, the cross-validation folds, the bootstrap and the "
            "models: the same seed, the same models.",
        ),
    ] = DEFAULT_SEED,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--setting",
            metavar="SETTING",
            help="With --synthetic: only lines of this treatment setting (see `lenrisk cohort --help`). "
            "Repeat the option for several; without it, all four.",
        ),
    ] = None,
    repeats: Annotated[
        int | None,
        typer.Option(
            "--repeats",
            min=1,
            metavar="N",
            help="How many times the cross-validation that picks each model is repeated; without it, "
            "chosen by the number of lines (more for fewer).",
        ),
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option(
            "--bootstrap",
            min=200,
            metavar="N",
            help="How many bootstrap resamples estimate how the models will do on new patients (their "
            "internal validation); at least 200, and 200 without it.",
        ),
    ] = None,
    allow_small_sample: Annotated[
        bool,
        typer.Option(
            "--allow-small-sample",
            help="Train even when there are fewer lines than the simplest model needs; the models are "
            "flagged as small-sample and become champion only through `lenrisk promote --force`.",
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Train both models and register them in MLflow.

    One model per outcome (discontinuation for toxicity, dose reduction). The command checks that there are
    enough lines, picks each model by cross-validation, estimates its performance on new patients by
    bootstrap, and registers it as the challenger (a model's first version also becomes the champion, the
    version the service uses). A model that predicts no better than the average risk, or ranks patients the
    wrong way round, is logged but not registered, and the command exits with code 2.
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
        with mlflow_output(quiet):
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
        list[str] | None,
        typer.Option(
            "--model",
            metavar="NAME",
            help="Only this registered model: lenalidomide-discontinuation or lenalidomide-dose-reduction. "
            "Without it, both.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote even if the challenger does worse, was trained on too small a sample, or was "
            "compared at registration with another champion than today's.",
        ),
    ] = False,
) -> None:
    """Make the challenger the champion if it does no worse.

    The champion is the version the service uses; the challenger is the newest registered version. Both are
    scored on the patients the challenger was developed on (the challenger's score corrected for optimism).
    """
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
