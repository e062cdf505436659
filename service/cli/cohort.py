"""``lenrisk cohort``: write a synthetic cohort, or reproduce the key study's published table (``--validate``;
the study is seed ``000``).

A thin layer over :func:`~training.cohort.generate.generate_cohort`, the project's atomic
:func:`~features.tableio.write_table` (CSV or Parquet by extension) and
:func:`~training.cohort.published.reproduce_published`. Unknown settings and unusable output paths are
checked before generating and reported as bad ``--setting``/``--out`` values (exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from features.errors import FileFormatError
from features.schema import SETTINGS
from service.cli.console import Quiet, console, progress

if TYPE_CHECKING:  # pandas, pyarrow, scipy and statsmodels are imported by the command that needs them
    from training.cohort.published import Comparison

VALIDATE_N = 200_000
VALIDATE_REPLICATES = 500


def cohort(
    n: Annotated[
        int | None,
        typer.Option(
            "--n",
            min=1,
            metavar="LINES",
            help="Number of treatment lines to generate. Required, except with --validate, where the "
            f"default is {VALIDATE_N:,}.",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            min=0,
            metavar="SEED",
            help="Random seed: the same seed and options give the same table.",
        ),
    ] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", dir_okay=False, metavar="FILE", help="File to write, CSV or Parquet by its extension."
        ),
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--setting",
            metavar="SETTING",
            help=f"Only lines of this treatment setting: {', '.join(SETTINGS)}. Repeat the option for "
            "several; without it, all four, mixed.",
        ),
    ] = None,
    with_truth: Annotated[
        bool,
        typer.Option(
            "--with-truth",
            help="Also write each line's true probability of each outcome (columns true_p_...), known only "
            "because the data are simulated.",
        ),
    ] = False,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate",
            help="Write no file: check that the generator reproduces the published results of the key "
            "study (78 patients, 107 relapsed/refractory lines) and print the comparison; exit code 1 if a "
            "check fails.",
        ),
    ] = False,
    shift_log_odds: Annotated[
        float,
        typer.Option(
            "--shift-log-odds",
            metavar="LOG_ODDS",
            help="A population unlike the development one: add this to both outcomes' intercepts in every "
            "setting (e.g. 0.5: higher baseline risks), for testing validation, updating and monitoring.",
        ),
    ] = 0.0,
    shift_age: Annotated[
        float,
        typer.Option(
            "--shift-age",
            metavar="YEARS",
            help="A population unlike the development one: add this many years to every setting's ages "
            "(kept within 18-100).",
        ),
    ] = 0.0,
    replicates: Annotated[
        int | None,
        typer.Option(
            "--replicates",
            min=1,
            metavar="COHORTS",
            help="With --validate: how many simulated cohorts of the study's size (107 lines) to compare "
            f"with it; the default is {VALIDATE_REPLICATES}.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Write a synthetic cohort, or check the generator.

    Without --validate: synthetic lenalidomide treatment lines, with both outcomes, to a file. With
    --validate: the key study's published results beside the generator's, in a table.
    """
    if validate:
        if out is not None or setting or with_truth or shift_log_odds or shift_age:
            raise typer.BadParameter(
                "takes only --n, --replicates, --seed and --quiet (it uses relapsed_refractory lines)",
                param_hint="--validate",
            )
        _validate(n or VALIDATE_N, replicates or VALIDATE_REPLICATES, seed, quiet)
        return
    if replicates is not None:
        raise typer.BadParameter("only with --validate", param_hint="--replicates")
    from features.tableio import write_table
    from training.cohort.generate import UnknownSettingError, generate_cohort, resolve_settings
    from training.cohort.shift import shifted

    if n is None:
        raise typer.BadParameter("give the number of lines to generate", param_hint="--n")
    if out is None:
        raise typer.BadParameter("give the output file (.csv or .parquet)", param_hint="--out")
    try:
        settings = resolve_settings(setting)
    except UnknownSettingError as err:
        raise typer.BadParameter(str(err), param_hint="--setting") from err
    _check_output(out)
    with progress(quiet) as bar:
        task = bar.add_task(f"generating {n:,} lines", total=2)
        params = shifted(log_odds=shift_log_odds, age_years=shift_age)
        frame = generate_cohort(n, seed, settings=settings, with_truth=with_truth, params=params)
        bar.update(task, advance=1, description=f"writing {out.name}")
        write_table(frame, out)
        bar.advance(task)
    patients = frame["patient_id"].nunique()
    console().print(f"wrote {len(frame):,} lines of {patients:,} patients to {out}")


def _check_output(out: Path) -> None:
    """Refuse an output path that cannot be written before spending time on the cohort."""
    from features.tableio import FORMATS, table_format

    try:
        table_format(out)
    except FileFormatError:
        raise typer.BadParameter(
            f"{out.name!r} must end in {' or '.join(FORMATS)}", param_hint="--out"
        ) from None
    if not out.parent.is_dir():
        raise typer.BadParameter(f"directory {str(out.parent)!r} does not exist", param_hint="--out")


def _validate(n: int, replicates: int, seed: int, quiet: bool) -> None:
    """Print the comparison table; exit with code 1 if any check fails."""
    with progress(quiet) as bar:
        task = bar.add_task(f"fitting {n:,} lines, then {replicates} cohorts of 107", total=replicates + 1)
        from training.cohort.published import reproduce_published

        rows = reproduce_published(n=n, replicates=replicates, seed=seed, progress=lambda: bar.advance(task))
    title = f"Key study reproduced: {n:,} relapsed/refractory lines, {replicates} cohorts of 107, seed {seed}"
    console().print(comparison_table(rows, title))
    failed = [r.quantity for r in rows if r.passed is False]
    if failed:
        console().print(f"[bold red]{len(failed)} check(s) failed:[/] {'; '.join(failed)}")
        raise typer.Exit(1)


def comparison_table(rows: list[Comparison], title: str) -> Table:
    """The comparison rows as a rich table (result: pass, FAIL, or — for report-only rows)."""
    table = Table(title=title)
    for name in ("quantity", "published", "reproduced", "criterion", "result"):
        table.add_column(name, justify="left" if name == "quantity" else "right")
    for r in rows:
        result = "—" if r.passed is None else "pass" if r.passed else "[bold red]FAIL[/]"
        table.add_row(r.quantity, r.published, r.reproduced, r.criterion, result)
    return table
