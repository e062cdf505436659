"""``lenrisk update``: update registered models on local labelled data (``training.updating``).

A thin command over :mod:`training.updating` (the closed testing procedure and the validation) and
:mod:`training.registry` (the new version with lineage tags, alias ``challenger``). When the procedure
chooses no update, the run is logged, nothing is registered, and the command says so and exits 0.
Domain errors propagate to the root app (``service.cli``), which prints them and exits with code 2.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from service.cli.console import Quiet, console, mlflow_output, progress

DEFAULT_SEED = 2026


def update(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Local labelled table, CSV or Parquet: the record's columns and both outcomes "
            "(discontinued_toxicity, dose_reduced: 0 or 1), one row per treatment line.",
        ),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            metavar="NAME@ALIAS",
            help="The registered version to update, e.g. lenalidomide-discontinuation@champion (an alias or "
            "a version number after @; without @, champion). Repeat for both; without it, both champions.",
        ),
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option(
            "--bootstrap",
            min=20,
            metavar="N",
            help="Bootstrap resamples of the local patients that validate the update procedure; 200 "
            "without it.",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(metavar="SEED", help="Seed of the bootstrap and of a refit.")
    ] = DEFAULT_SEED,
    quiet: Quiet = False,
) -> None:
    """Update registered models on local data: no update, new intercept, new intercept and slope, or refit.

    The update is chosen per model by a closed testing procedure (Vergouwe et al. 2017), validated by
    bootstrap on the local data, and registered as a new version with the alias challenger (never champion:
    see `lenrisk promote`). When no update is needed, nothing is registered.
    """
    from features.model.registry import MODEL_NAMES, RegistrySettings
    from features.tableio import read_table
    from features.validate import validate_table
    from training.pipeline import check_outcomes
    from training.registry import RegistryError, load_parent, register_update
    from training.updating import METHOD_NAMES, N_BOOT
    from training.updating import update as run_update

    targets = [_target(m, list(MODEL_NAMES.values()), RegistryError) for m in model or MODEL_NAMES.values()]
    settings = RegistrySettings()
    out = console(quiet)
    frame = validate_table(read_table(data), require_outcomes=True).raise_on_errors()
    check_outcomes(frame)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    n_boot = bootstrap or N_BOOT
    out.print(f"Updating on {data.name}: {len(frame)} lines (SHA-256 {digest[:12]}…)")
    for name, alias in targets:
        with tempfile.TemporaryDirectory() as tmp, mlflow_output(quiet):
            version, parent = load_parent(settings, name, alias, Path(tmp))
        with progress(quiet) as bar:
            task = bar.add_task(f"{name} v{version}: closed test and bootstrap ({n_boot})", total=n_boot)
            result = run_update(
                parent, frame, seed=seed, n_boot=n_boot, advance=lambda t=task: bar.advance(t)
            )
        with mlflow_output(quiet):
            registered = register_update(
                settings, name, version, result, frame=frame, source=data.name, data_sha256=digest
            )
        for t in result.closed_test.tests:
            out.print(
                f"  {t.method} vs {t.against}: LR {t.statistic:.2f}, df {t.df}, p {t.p_value:.3g}",
                highlight=False,
            )
        if result.closed_test.refit_not_offered:
            out.print(f"  refit not offered: {result.closed_test.refit_not_offered}", highlight=False)
        chosen = METHOD_NAMES[result.method]
        if registered.version is None:
            typer.echo(
                f"{name} v{version}: {chosen}: the model fits the local data; nothing registered "
                f"(run {registered.run_id})"
            )
        else:
            v = result.validation.metrics
            typer.echo(
                f"{name} v{version} -> v{registered.version} ({', '.join(registered.aliases)}): {chosen}; "
                f"optimism-corrected calibration-in-the-large {v['calibration_intercept'].corrected:.3f}, "
                f"slope {v['calibration_slope'].corrected:.2f}, AUC {v['roc_auc'].corrected:.3f} "
                f"(run {registered.run_id})"
            )


def _target(option: str, names: list[str], error: type[Exception]) -> tuple[str, str]:
    """``NAME@ALIAS`` (or ``NAME``: champion) -> (name, alias or version)."""
    from features.model.registry import CHAMPION

    name, _, alias = option.partition("@")
    if name not in names:
        raise error(f"unknown model {name!r}; expected one of: {', '.join(names)}")
    return name, alias or CHAMPION
