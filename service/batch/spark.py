"""The Spark engine of ``lenrisk score``: datasets in, datasets out, scored by the executors in parallel.

The driver lists and checks the input's parts (:mod:`service.batch.dataset_input`) and the output folder
(:mod:`service.batch.dataset_output`) through the Hadoop file systems Spark uses, loads and verifies the
models as the local engine does, and broadcasts the verified artifacts' bytes: each executor Python process
writes them to a scratch folder, loads them once with their registry digests checked again
(:meth:`features.model.riskmodel.RiskModel.load`), and never contacts the registry. Executors score their
rows with :func:`service.batch.score.score_chunk`, the local engine's function, inside ``mapInArrow``
(:mod:`service.batch.spark_executor`):

- CSV parts are read with Spark's text source, one line per row, parsed by
  :func:`service.batch.read.read_csv_lines` as the local engine parses a file. A first pass counts the lines
  of every block of every part (a Spark aggregate: one row per block reaches the driver), so each task
  numbers its rows within the part.
- Parquet rows carry their position in the part (``_metadata.row_index``); batches are cast back to the
  parts' Arrow schema.

The scored rows and the reject lines leave ``mapInArrow`` as one table (the union of both schemas and a
kind), persisted on the executors; Spark's writers then write the scored dataset (one part per task, and per
value with ``partition_by``) and the rejects dataset into the run's staging folder. Counts come from a
Spark aggregate over that table, every written part is described (rows, SHA-256) by the executors, and the
driver publishes only when, for every input part, its rows = its rows scored + rejected = its distinct row
numbers, and the written parts hold exactly the rows counted. The driver handles names, counts and one row
per block or part: its memory and CPU do not grow with the rows (docs/performance.md).

Each output row carries its identity: ``input_file`` (the part's path relative to the input's root) and
``row_number`` (1-based, within the part, as the local engine numbers a file's rows).
"""

from __future__ import annotations

import importlib.metadata
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from features.errors import FileFormatError, LenriskError
from features.model.riskmodel import INTERVAL_LEVEL
from service.batch.dataset_input import InputDataset, open_dataset
from service.batch.dataset_output import (
    REJECTS,
    SCORED,
    OutputDataset,
    claim_output,
    describe_parts,
    plan_output,
    publish,
)
from service.batch.hadoop_fs import HadoopFS, escape_glob, spark_file_key
from service.batch.publish import ReconciliationError, models_manifest
from service.batch.score import IDENTITY_SCHEMA, Explain, output_schema
from service.batch.spark_executor import (
    BLOCK,
    ERROR_ROW,
    FILE,
    KIND,
    REJECT_FIELDS,
    REJECT_LINE,
    ROW_INDEX,
    SCORED_ROW,
    ExecutorScoring,
    Shipment,
    ShippedModel,
    artifact_files,
)
from service.batch.spark_session import pandas_version_warning_ignored
from service.predictor import Predictor

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


@dataclass(frozen=True)
class DatasetRun:
    """A checked Spark run: its input parts and its output folder."""

    source: InputDataset
    output: OutputDataset


@dataclass(frozen=True)
class DatasetSummary:
    """Counts and manifest of a published Spark run."""

    output: OutputDataset
    manifest: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        """``read``, ``scored``, ``rejected`` (rows) and ``reject_lines``."""
        return self.manifest["counts"]


def plan_dataset_run(
    spark: SparkSession, input_location: str, output_location: str, *, partition_by: tuple[str, ...] = ()
) -> DatasetRun:
    """Check the input's parts and the output folder before any model is loaded or any file written."""
    fs = HadoopFS(spark)
    source = open_dataset(fs, input_location)
    return DatasetRun(source, plan_output(fs, output_location, source, partition_by))


def score_dataset(
    spark: SparkSession,
    predictor: Predictor,
    run: DatasetRun,
    *,
    explain: Explain = Explain.NONE,
    interval: bool = False,
    progress: Callable[[int], None] | None = None,
) -> DatasetSummary:
    """Score every row of ``run``'s input on the executors and publish the datasets and the manifest.

    ``progress`` is told the rows scored as the scoring tasks finish (Spark reports tasks, not rows: each
    finished task counts for an equal share of the rows).
    Raises :class:`FileFormatError` for a part that cannot be read (e.g. not UTF-8) and
    :class:`ReconciliationError` when the counts do not add up; either way nothing is published.
    """
    fs, source, output = HadoopFS(spark), run.source, run.output
    with claim_output(fs, output), pandas_version_warning_ignored(), _fixed_splits(spark), _job_errors():
        lines_before, rows_in_parts = _count_rows(spark, source)
        rows = _rows(spark, source)
        union = _union_struct(rows, source, explain, interval)
        shipment = spark.sparkContext.broadcast(
            Shipment(artifact_files(predictor), {p.file.path: p.name for p in source.parts}, lines_before)
        )
        scorer = ExecutorScoring(
            csv=source.format == ".csv",
            schema=source.schema,
            explain=explain,
            interval=interval,
            models=tuple(ShippedModel(o, m.name, m.version, m.digest) for o, m in predictor.models.items()),
            bands=predictor.bands,
            shipment=shipment,
            union=union.json(),
        )
        scored = rows.mapInArrow(scorer, union).persist()
        read = sum(rows_in_parts.values())
        try:
            counted = _write(scored, output, source, explain, interval, rows=read, progress=progress)
        finally:
            scored.unpersist()
            shipment.unpersist()
        _reconcile_parts(source, rows_in_parts, counted)
        counts = {
            key: sum(c[key] for c in counted.values()) for key in ("scored", "rejected", "reject_lines")
        }
        parts = {name: describe_parts(spark, output, name) for name in (SCORED, REJECTS)}
        written = {name: sum(part["rows"] for part in parts[name]) for name in parts}
        if read != counts["scored"] + counts["rejected"] or written != {
            SCORED: counts["scored"],
            REJECTS: counts["reject_lines"],
        }:
            raise ReconciliationError(
                f"rows in the parts {read}, scored {counts['scored']}, rejected {counts['rejected']}, "
                f"written {written[SCORED]} scored and {written[REJECTS]} reject lines: the counts do not "
                "reconcile, so nothing was published"
            )
        manifest = {
            "lenrisk_version": importlib.metadata.version("lenrisk"),
            "engine": "spark",
            "explain": explain.value,
            "interval": INTERVAL_LEVEL if interval else None,
            "input": {
                "root": source.root,
                "format": source.format[1:],
                "parts": [
                    {
                        "path": p.name,
                        "bytes": p.file.size,
                        "modified_ms": p.file.modified,
                        "rows": rows_in_parts[p.file.path],
                    }
                    for p in source.parts
                ],
            },
            "output": {"path": SCORED, "partition_by": list(output.partition_by), "parts": parts[SCORED]},
            "rejects": {"path": REJECTS, "parts": parts[REJECTS]},
            "counts": {"read": read, **counts},
            "models": models_manifest(predictor),
        }
        publish(fs, output, manifest)
    return DatasetSummary(output, manifest)


class SparkJobError(LenriskError):
    """A Spark job failed (an executor lost too often, a part Spark cannot read...); nothing was published."""


@contextmanager
def _job_errors() -> Iterator[None]:
    """Turn a failed Spark job into :class:`SparkJobError`, naming the exception's class only (a task's
    message may quote the data); the cause is in the Spark logs and on the exception's chain."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        yield
    except (Py4JJavaError, PySparkException) as err:
        raise SparkJobError(
            f"the Spark job failed ({type(err).__name__}); the cause is in the driver's and executors' logs"
        ) from err


@contextmanager
def _fixed_splits(spark: SparkSession) -> Iterator[None]:
    """Pin ``spark.sql.files.minPartitionNum`` for the run (unless set): Spark sizes input splits from the
    cores registered at each read, so two reads of the same CSV parts (the line count, then the scoring)
    could otherwise cut them into other blocks, and the rows would be numbered from the wrong counts."""
    key = "spark.sql.files.minPartitionNum"
    if spark.conf.get(key, None) is not None:
        yield
        return
    spark.conf.set(key, str(spark.sparkContext.defaultParallelism))
    try:
        yield
    finally:
        spark.conf.unset(key)


def _reconcile_parts(
    source: InputDataset, rows_in_parts: dict[str, int], counted: dict[str | None, dict[str, int]]
) -> None:
    """Every part's rows = its rows scored + rejected = its distinct row numbers (no row lost or doubled);
    :class:`ReconciliationError` otherwise."""
    names = {p.name for p in source.parts}
    unknown = set(counted) - names
    if unknown:
        raise ReconciliationError(f"rows from no listed part ({len(unknown)} names): nothing was published")
    for part in source.parts:
        got = counted.get(part.name, {"scored": 0, "rejected": 0, "identities": 0})
        rows = rows_in_parts[part.file.path]
        if not rows == got["scored"] + got["rejected"] == got["identities"]:
            raise ReconciliationError(
                f"{part.name}: rows in the part {rows}, scored {got['scored']}, rejected {got['rejected']}, "
                f"distinct row numbers {got['identities']}: the counts do not reconcile, so nothing was "
                "published"
            )


@contextmanager
def _task_progress(spark: SparkSession, rows: int, progress: Callable[[int], None] | None) -> Iterator[None]:
    """Report ``rows`` to ``progress`` in step with the finished tasks of the job run in the block (polled
    twice a second from Spark's status tracker), the rest when the block ends."""
    if progress is None:
        yield
        return
    context, group, told = spark.sparkContext, f"lenrisk-score-{uuid.uuid4().hex}", 0
    done = threading.Event()

    def tell(fraction: float) -> None:
        nonlocal told
        now = int(rows * fraction)
        if now > told:
            progress(now - told)
            told = now

    def poll() -> None:
        tracker = context.statusTracker()
        while not done.wait(0.5):
            stages = [
                stage
                for job in tracker.getJobIdsForGroup(group)
                if (info := tracker.getJobInfo(job)) is not None
                for stage in info.stageIds
            ]
            infos = [i for i in (tracker.getStageInfo(stage) for stage in stages) if i is not None]
            total = sum(i.numTasks for i in infos)
            if total:
                tell(sum(i.numCompletedTasks for i in infos) / total)

    context.setJobGroup(group, "lenrisk score")
    poller = threading.Thread(target=poll, name="lenrisk-spark-progress", daemon=True)
    poller.start()
    try:
        yield
        tell(1.0)
    finally:
        done.set()
        poller.join()
        context.setLocalProperty("spark.jobGroup.id", None)


def _count_rows(
    spark: SparkSession, source: InputDataset
) -> tuple[dict[tuple[str, int], int], dict[str, int]]:
    """CSV: the lines before each block of each part (keyed by ``_metadata.file_path`` and block start) and
    each part's rows (its lines but the header), from one Spark aggregate. Parquet: the footers' rows."""
    if source.format != ".csv":
        return {}, {p.file.path: p.rows or 0 for p in source.parts}
    from pyspark.sql import functions as sf

    blocks = (
        spark.read.text([escape_glob(p.file.path) for p in source.parts])
        .groupBy(
            sf.col("_metadata.file_path").alias("file"), sf.col("_metadata.file_block_start").alias("block")
        )
        .count()
        .collect()
    )
    lines_before, lines = {}, {p.file.path: 0 for p in source.parts}
    for block in sorted(blocks, key=lambda b: (b.file, b.block)):
        key = spark_file_key(block.file)
        lines_before[(block.file, block.block)] = lines[key]
        lines[key] += block["count"]
    return lines_before, {path: max(n - 1, 0) for path, n in lines.items()}


def _rows(spark: SparkSession, source: InputDataset) -> DataFrame:
    """The input as Spark rows: CSV lines (raw bytes) with their part and block, or Parquet rows with their
    part and index."""
    from pyspark.sql import functions as sf

    paths = [escape_glob(p.file.path) for p in source.parts]
    file = sf.col("_metadata.file_path").alias(FILE)
    if source.format == ".csv":
        return spark.read.text(paths).select(
            sf.col("value").cast("binary").alias("line"),
            file,
            sf.col("_metadata.file_block_start").alias(BLOCK),
        )
    columns = [sf.col(f"`{name}`") for name in source.schema.names]
    return spark.read.parquet(*paths).select(*columns, file, sf.col("_metadata.row_index").alias(ROW_INDEX))


def _union_struct(rows: DataFrame, source: InputDataset, explain: Explain, interval: bool) -> StructType:
    """What ``mapInArrow`` returns: the output's columns (the input's with Spark's types), the row identity,
    the kind, and the reject lines' columns."""
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    scores = output_schema(pa.schema([]), explain, interval=interval)
    inputs = [
        rows.schema[n] if source.format != ".csv" else StructField(n, StringType())
        for n in source.schema.names
    ]
    return StructType(
        [
            *inputs,
            *from_arrow_schema(scores).fields,
            *from_arrow_schema(IDENTITY_SCHEMA).fields,
            StructField(KIND, IntegerType()),
            *(StructField(name, StringType()) for name in REJECT_FIELDS.values()),
        ]
    )


def _write(
    scored: DataFrame,
    output: OutputDataset,
    source: InputDataset,
    explain: Explain,
    interval: bool,
    *,
    rows: int,
    progress: Callable[[int], None] | None,
) -> dict[str | None, dict[str, int]]:
    """Write the scored dataset (the job that scores; ``progress`` follows its tasks), count per part, then
    write the rejects (or raise a part's whole-file error); the counts by part name."""
    from pyspark.sql import functions as sf

    kind = sf.col(KIND)
    output_columns = [*output_schema(source.schema, explain, interval=interval).names, *IDENTITY_SCHEMA.names]
    with _task_progress(scored.sparkSession, rows, progress):
        (
            scored.where(kind == SCORED_ROW)
            .select(*(sf.col(f"`{name}`") for name in output_columns))
            .write.partitionBy(*output.partition_by)
            .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
            .parquet(output.staged(SCORED))
        )
    per_part = (
        scored.groupBy("input_file")
        .agg(
            sf.count(sf.when(kind == SCORED_ROW, 1)).alias("scored"),
            sf.count_distinct(sf.when(kind == REJECT_LINE, sf.col("row_number"))).alias("rejected"),
            sf.count(sf.when(kind == REJECT_LINE, 1)).alias("reject_lines"),
            sf.count_distinct(sf.when(kind != ERROR_ROW, sf.col("row_number"))).alias("identities"),
            sf.max(sf.when(kind == ERROR_ROW, sf.col(REJECT_FIELDS["reason"]))).alias("error"),
        )
        .collect()
    )
    errors = sorted(part.error for part in per_part if part.error is not None)
    if errors:
        raise FileFormatError(errors[0])
    (
        scored.where(kind == REJECT_LINE)
        .select(*IDENTITY_SCHEMA.names, *(sf.col(f).alias(n) for n, f in REJECT_FIELDS.items()))
        .write.option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .parquet(output.staged(REJECTS))
    )
    return {part.input_file: part.asDict() for part in per_part}
