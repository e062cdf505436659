"""``lenrisk score``: score a CSV or Parquet file with the registered models.

A thin command over :mod:`service.batch` (the local, streaming engine and the Spark engine). Domain errors
propagate to the root app (``service.cli``), which prints them and exits with code 2.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from service.batch.explain import Explain
from service.cli.console import Quiet, console, row_progress


class Engine(StrEnum):
    """Where the rows are scored."""

    LOCAL = "local"  # this process, streaming
    SPARK = "spark"  # Apache Spark: spark.master from spark-submit or spark-defaults, else local mode


def score(
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            metavar="FILE",
            help="File to score, CSV or Parquet: the record's columns, one row per treatment line.",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            metavar="FILE",
            help="Where to write the scored rows, CSV or Parquet; a manifest (counts, digests, model "
            "versions) is written last beside it, as <output>.manifest.json.",
        ),
    ],
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            metavar="FILE",
            help="Where to write the rows that could not be scored, one line per broken rule; without it, "
            "<output name>.rejects.csv beside the output.",
        ),
    ] = None,
    model_alias: Annotated[
        str | None,
        typer.Option(
            "--model-alias",
            metavar="ALIAS",
            help="Which registered version of both models to use, by alias (e.g. challenger); without it, "
            "LENRISK_MODEL_ALIAS, else champion.",
        ),
    ] = None,
    explain: Annotated[
        Explain,
        typer.Option(
            "--explain",
            help="Explanation columns per outcome: none, top3 (the three fields that move the risk most) "
            "or all (every field's contribution).",
        ),
    ] = Explain.NONE,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="Where to score: local (in this process) or spark (Apache Spark; needs Java 17 or 21).",
        ),
    ] = Engine.LOCAL,
    interval: Annotated[
        bool,
        typer.Option(
            "--interval",
            help="Also write each risk's 95% uncertainty interval: <outcome>_lower and <outcome>_upper, "
            "how much the risk could move had the model been developed on another sample (not the spread "
            "of outcomes); empty for rows outside the training data and for models without one.",
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Score every row of a CSV or Parquet file.

    Valid rows go to the output with both risks, the others to the rejects with the reason; the manifest is
    written last.
    """
    from service.batch.local import prepare_run, score_file
    from service.model_store import load_predictor
    from service.settings import get_settings

    paths, source = prepare_run(
        input_path, output, rejects
    )  # whole-file problems stop here, before any output
    settings = get_settings()
    if model_alias is not None:
        settings = settings.model_copy(update={"model_alias": model_alias})
    predictor = load_predictor(settings)
    out = console(quiet)
    models = ", ".join(f"{m.name} v{m.version}" for m in predictor.models.values())
    out.print(
        f"Scoring {paths.input.name} with {models} (@{settings.model_alias}; explain {explain}"
        f"{', intervals' if interval else ''}, {engine})"
    )
    with row_progress(quiet, source.rows) as advance:
        if engine is Engine.SPARK:
            from service.batch.spark import score_file_spark, spark_session

            with spark_session(quiet=quiet) as spark:
                summary = score_file_spark(
                    spark, predictor, paths, source, explain=explain, interval=interval, progress=advance
                )
        else:
            summary = score_file(
                predictor, paths, source, explain=explain, interval=interval, progress=advance
            )
    counts = summary.counts
    typer.echo(
        f"{counts['read']} rows read = {counts['scored']} scored + {counts['rejected']} rejected "
        f"({counts['reject_lines']} reject lines); manifest {paths.manifest}"
    )
    out.print(f"output: {paths.output}\nrejects: {paths.rejects}")
