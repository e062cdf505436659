"""``lenrisk score``: score a CSV or Parquet file, or a dataset of parts on Spark, with the registered models.

A thin command over :mod:`service.batch` (the local, streaming engine and the Spark engine). Domain errors
propagate to the root app (``service.cli``), which prints them and exits with code 2.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.batch.explain import Explain
from service.cli.console import Quiet, console, row_progress

if TYPE_CHECKING:
    from service.predictor import Predictor


class Engine(StrEnum):
    """Where the rows are scored."""

    LOCAL = "local"  # this process, streaming
    SPARK = "spark"  # Apache Spark: spark.master from spark-submit or spark-defaults, else local mode


class PartitionBy(StrEnum):
    """Columns the Spark engine's scored dataset can be partitioned by."""

    SETTING = "setting"


def score(
    input_path: Annotated[
        str,
        typer.Option(
            "--input",
            metavar="PATH",
            help="What to score, CSV or Parquet: the record's columns, one row per treatment line. The "
            "local engine reads one file; the spark engine a file, a folder or a glob of parts, on any "
            "file system Spark reads (hdfs://, s3a://, abfss://...).",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            metavar="PATH",
            help="Local engine: the file for the scored rows, CSV or Parquet; a manifest (counts, digests, "
            "model versions) is written last beside it, as <output>.manifest.json. Spark engine: a folder "
            "that receives scored/ and rejects/ (Parquet datasets), manifest.json, and _SUCCESS last.",
        ),
    ],
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            metavar="FILE",
            help="Local engine: where to write the rows that could not be scored, one line per broken "
            "rule; without it, <output name>.rejects.csv beside the output. (Spark: <output>/rejects/.)",
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
    partition_by: Annotated[
        PartitionBy | None,
        typer.Option(
            "--partition-by",
            help="Spark engine: partition the scored dataset by this column (scored/setting=<value>/...).",
        ),
    ] = None,
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            metavar="URL",
            help="Spark engine: the cluster to run on (spark://host:7077, yarn, k8s://...); without it, "
            "spark.master from PYSPARK_SUBMIT_ARGS or spark-defaults.conf, else local mode.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Score every row of a CSV or Parquet file (local engine) or dataset of parts (spark engine).

    Valid rows go to the output with both risks, the others to the rejects with the reason; the manifest is
    written last (with the spark engine, then _SUCCESS).
    """
    from service.batch.publish import BatchPathError

    if engine is Engine.SPARK:
        if rejects is not None:
            raise BatchPathError("with --engine spark the rejects are the dataset <output>/rejects/")
        _score_on_spark(input_path, output, model_alias, explain, interval, partition_by, spark_master, quiet)
    else:
        if partition_by is not None or spark_master is not None:
            raise BatchPathError("--partition-by and --spark-master need --engine spark")
        _score_locally(Path(input_path), Path(output), rejects, model_alias, explain, interval, quiet)


def _predictor(model_alias: str | None) -> tuple[Predictor, str]:
    """The registered models to score with, and the alias they were loaded by."""
    from service.model_store import load_predictor
    from service.settings import get_settings

    settings = get_settings()
    if model_alias is not None:
        settings = settings.model_copy(update={"model_alias": model_alias})
    return load_predictor(settings), settings.model_alias


def _announce(
    quiet: bool,
    source: str,
    predictor: Predictor,
    alias: str,
    explain: Explain,
    interval: bool,
    engine: Engine,
) -> None:
    models = ", ".join(f"{m.name} v{m.version}" for m in predictor.models.values())
    console(quiet).print(
        f"Scoring {source} with {models} (@{alias}; explain {explain}"
        f"{', intervals' if interval else ''}, {engine})"
    )


def _summary_line(counts: dict[str, int], manifest: str) -> None:
    typer.echo(
        f"{counts['read']} rows read = {counts['scored']} scored + {counts['rejected']} rejected "
        f"({counts['reject_lines']} reject lines); manifest {manifest}"
    )


def _score_locally(
    input_path: Path,
    output: Path,
    rejects: Path | None,
    model_alias: str | None,
    explain: Explain,
    interval: bool,
    quiet: bool,
) -> None:
    from service.batch.local import prepare_run, score_file

    paths, source = prepare_run(
        input_path, output, rejects
    )  # whole-file problems stop here, before any output
    predictor, alias = _predictor(model_alias)
    _announce(quiet, paths.input.name, predictor, alias, explain, interval, Engine.LOCAL)
    with row_progress(quiet, source.rows) as advance:
        summary = score_file(predictor, paths, source, explain=explain, interval=interval, progress=advance)
    _summary_line(summary.counts, str(paths.manifest))
    console(quiet).print(f"output: {paths.output}\nrejects: {paths.rejects}")


def _score_on_spark(
    input_path: str,
    output: str,
    model_alias: str | None,
    explain: Explain,
    interval: bool,
    partition_by: PartitionBy | None,
    spark_master: str | None,
    quiet: bool,
) -> None:
    from service.batch.dataset_output import MANIFEST, REJECTS, SCORED
    from service.batch.spark import plan_dataset_run, score_dataset
    from service.batch.spark_session import spark_session

    with spark_session(master=spark_master, quiet=quiet) as spark:
        partitions = (partition_by.value,) if partition_by else ()
        run = plan_dataset_run(spark, input_path, output, partition_by=partitions)  # before any output
        predictor, alias = _predictor(model_alias)
        _announce(
            quiet,
            f"{len(run.source.parts)} part(s) of {run.source.root}",
            predictor,
            alias,
            explain,
            interval,
            Engine.SPARK,
        )
        with row_progress(quiet, None) as advance:
            summary = score_dataset(
                spark, predictor, run, explain=explain, interval=interval, progress=advance
            )
    root = run.output.root
    _summary_line(summary.counts, f"{root}/{MANIFEST}")
    console(quiet).print(f"output: {root}/{SCORED}\nrejects: {root}/{REJECTS}")
