"""The Spark engine of ``lenrisk score``: datasets in, datasets out, scored by the executors in parallel.

The driver lists and checks the input's parts (:mod:`service.batch.dataset_input`) and the output folder
(:mod:`service.batch.dataset_output`) through the Hadoop file systems Spark uses, loads and verifies the
models as the local engine does, and broadcasts the verified artifacts' bytes: each executor Python process
writes them to a scratch folder, loads them once with their registry digests checked again
(:meth:`features.model.riskmodel.RiskModel.load`), and never contacts the registry. Executors score their
rows with :func:`service.batch.score.score_chunk`, the local engine's function, inside ``mapInArrow``:

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
driver publishes only when ``rows in the parts = rows scored + rows rejected`` and the written parts hold
exactly those rows. The driver handles names, counts and one row per block or part: its memory and CPU do
not grow with the rows (docs/performance.md).

Each output row carries its identity: ``input_file`` (the part's path relative to the input's root) and
``row_number`` (1-based, within the part, as the local engine numbers a file's rows).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import FileFormatError, LenriskError
from features.model.riskmodel import INTERVAL_LEVEL, RiskModel
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
from service.batch.parallel import one_thread_per_kernel
from service.batch.publish import ReconciliationError, models_manifest
from service.batch.read import BATCH_ROWS, Chunk, read_csv_lines
from service.batch.score import IDENTITY_SCHEMA, REJECT_SCHEMA, Explain, Scored, output_schema, score_chunk
from service.errors import ModelLoadError
from service.predictor import LoadedModel, Predictor, RiskBands

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

QUIET_LOG4J = "log4j2-quiet.properties"  # beside this module
_MASTER = re.compile(r"(?:--master|spark\.master)[=\s]+(\S+)")
_FILE, _BLOCK, _ROW_INDEX = "__lenrisk_file", "__lenrisk_block", "__lenrisk_row_index"
_KIND = "__lenrisk_kind"
_SCORED, _REJECT, _ERROR = 0, 1, 2
_REJECT_FIELDS = {name: f"__lenrisk_{name}" for name in REJECT_SCHEMA.names[1:]}  # patient_id, column, reason
_PREDICTORS: dict[tuple[str, ...], Predictor] = {}  # executor-side cache, keyed by the models' digests


@contextmanager
def spark_session(*, master: str | None = None, quiet: bool = False) -> Iterator[SparkSession]:
    """The active Spark session, or a new one (stopped at exit) configured by spark-submit or spark-defaults.

    ``master`` (e.g. ``spark://host:7077``) overrides the configured ``spark.master``. Without any, pyspark
    runs in local mode on every core; then ``SPARK_LOCAL_IP`` defaults
    to 127.0.0.1 (else Spark warns that the host name resolves to a loopback address and binds to another
    interface). ``quiet`` points log4j2 at an errors-only configuration before the JVM starts (its
    start-up warnings come before ``setLogLevel`` could act), unless ``LOG4J_CONFIGURATION_FILE`` names one.
    Executors run this Python interpreter unless ``PYSPARK_PYTHON`` (or ``spark.pyspark.python`` under
    spark-submit) says otherwise.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master.startswith("local") if master else _local_master():
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if quiet:
        os.environ.setdefault("LOG4J_CONFIGURATION_FILE", str(Path(__file__).with_name(QUIET_LOG4J)))
    builder = (
        SparkSession.builder.appName("lenrisk-score")
        .config("spark.ui.showConsoleProgress", "false")
        # the local engine's batch size: Spark's default 10,000-row Arrow batches score slower (docs/batch.md)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
    )
    if master:
        builder = builder.master(master)
    with _pandas_version_warning_ignored():
        spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def _local_master() -> bool:
    """Whether Spark will run in local mode: every ``spark.master`` given by ``PYSPARK_SUBMIT_ARGS`` or by
    ``spark-defaults.conf`` (in ``SPARK_CONF_DIR``, else ``$SPARK_HOME/conf``) is ``local...``, or none is."""
    import pyspark

    texts = [os.environ.get("PYSPARK_SUBMIT_ARGS", "")]
    home = os.environ.get("SPARK_HOME") or os.path.dirname(pyspark.__file__)
    defaults = Path(os.environ.get("SPARK_CONF_DIR") or Path(home) / "conf") / "spark-defaults.conf"
    if defaults.is_file():
        texts += [line for line in defaults.read_text().splitlines() if not line.lstrip().startswith("#")]
    return all(master.startswith("local") for text in texts for master in _MASTER.findall(text))


@contextmanager
def _pandas_version_warning_ignored() -> Iterator[None]:
    """Ignore pyspark's "does not yet fully support pandas >= 3.0.0" FutureWarning, which its own code emits
    when it starts a context (importing ``pyspark.testing``) and inside ``mapInArrow`` (through
    ``pandas_udf``). No pandas is involved here: ``mapInArrow`` hands Arrow batches over, and the tests check
    the results against the local engine's."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "PySpark does not yet fully support pandas", FutureWarning, r"pyspark\."
        )
        yield


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
    with claim_output(fs, output), _pandas_version_warning_ignored(), _fixed_splits(spark), _job_errors():
        lines_before, rows_in_parts = _count_rows(spark, source)
        rows = _rows(spark, source)
        union = _union_struct(rows, source, explain, interval)
        shipment = spark.sparkContext.broadcast(
            _Shipment(_artifacts(predictor), {p.file.path: p.name for p in source.parts}, lines_before)
        )
        scorer = _ExecutorScoring(
            csv=source.format == ".csv",
            schema=source.schema,
            explain=explain,
            interval=interval,
            models=tuple(_ShippedModel(o, m.name, m.version, m.digest) for o, m in predictor.models.items()),
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
    file = sf.col("_metadata.file_path").alias(_FILE)
    if source.format == ".csv":
        return spark.read.text(paths).select(
            sf.col("value").cast("binary").alias("line"),
            file,
            sf.col("_metadata.file_block_start").alias(_BLOCK),
        )
    columns = [sf.col(f"`{name}`") for name in source.schema.names]
    return spark.read.parquet(*paths).select(*columns, file, sf.col("_metadata.row_index").alias(_ROW_INDEX))


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
            StructField(_KIND, IntegerType()),
            *(StructField(name, StringType()) for name in _REJECT_FIELDS.values()),
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

    kind = sf.col(_KIND)
    output_columns = [*output_schema(source.schema, explain, interval=interval).names, *IDENTITY_SCHEMA.names]
    with _task_progress(scored.sparkSession, rows, progress):
        (
            scored.where(kind == _SCORED)
            .select(*(sf.col(f"`{name}`") for name in output_columns))
            .write.partitionBy(*output.partition_by)
            .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
            .parquet(output.staged(SCORED))
        )
    per_part = (
        scored.groupBy("input_file")
        .agg(
            sf.count(sf.when(kind == _SCORED, 1)).alias("scored"),
            sf.count_distinct(sf.when(kind == _REJECT, sf.col("row_number"))).alias("rejected"),
            sf.count(sf.when(kind == _REJECT, 1)).alias("reject_lines"),
            sf.count_distinct(sf.when(kind != _ERROR, sf.col("row_number"))).alias("identities"),
            sf.max(sf.when(kind == _ERROR, sf.col(_REJECT_FIELDS["reason"]))).alias("error"),
        )
        .collect()
    )
    errors = sorted(part.error for part in per_part if part.error is not None)
    if errors:
        raise FileFormatError(errors[0])
    (
        scored.where(kind == _REJECT)
        .select(*IDENTITY_SCHEMA.names, *(sf.col(f).alias(n) for n, f in _REJECT_FIELDS.items()))
        .write.option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .parquet(output.staged(REJECTS))
    )
    return {part.input_file: part.asDict() for part in per_part}


@dataclass(frozen=True)
class _ShippedModel:
    outcome: str
    name: str
    version: str
    digest: str


@dataclass(frozen=True)
class _Shipment:
    """What every executor gets once (a broadcast): the artifacts' files by digest, the parts' names by
    path, and the CSV lines before each block."""

    artifacts: dict[str, dict[str, bytes]]
    names: dict[str, str]
    lines_before: dict[tuple[str, int], int]


def _artifacts(predictor: Predictor) -> dict[str, dict[str, bytes]]:
    """Each verified model's artifact files (re-saved; the digest must equal the registry's), by digest."""
    artifacts = {}
    for loaded in predictor.models.values():
        with tempfile.TemporaryDirectory(prefix="lenrisk-model-") as folder:
            if loaded.model.save(Path(folder)) != loaded.digest:
                raise ModelLoadError(f"{loaded.name} version {loaded.version}: re-saved artifact differs")
            artifacts[loaded.digest] = {
                str(path.relative_to(folder)): path.read_bytes()
                for path in Path(folder).rglob("*")
                if path.is_file()
            }
    return artifacts


@dataclass(frozen=True)
class _ExecutorScoring:
    """The ``mapInArrow`` function: input rows in, scored rows and reject lines (the union table) out."""

    csv: bool
    schema: pa.Schema  # the parts'
    explain: Explain
    interval: bool
    models: tuple[_ShippedModel, ...]
    bands: dict[str, RiskBands]
    shipment: Any  # pyspark Broadcast[_Shipment]
    union: str  # the union StructType, as JSON

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark.sql.pandas.types import to_arrow_schema
        from pyspark.sql.types import StructType

        target = to_arrow_schema(StructType.fromJson(json.loads(self.union)))
        shipment: _Shipment = self.shipment.value
        predictor = _executor_predictor(self.models, self.bands, shipment.artifacts)
        schema = output_schema(self.schema, self.explain, interval=self.interval)
        chunks = self._csv_chunks(batches, shipment) if self.csv else self._parquet_chunks(batches, shipment)
        try:
            with one_thread_per_kernel():  # Spark runs one task per core
                for name, chunk in chunks:
                    scored = score_chunk(predictor, chunk, self.explain, schema, interval=self.interval)
                    yield _scored_rows(scored, name, target)
                    if scored.rejects.num_rows:
                        yield _reject_rows(scored.rejects, name, target)
        except LenriskError as err:  # a whole-part problem (e.g. not UTF-8): raised by the driver
            yield _table(
                {_KIND: pa.array([_ERROR], pa.int32()), _REJECT_FIELDS["reason"]: pa.array([str(err)])},
                target,
                1,
            )

    def _csv_chunks(
        self, batches: Iterator[pa.RecordBatch], shipment: _Shipment
    ) -> Iterator[tuple[str, Chunk]]:
        """Parse runs of lines as the local engine parses a file; rows numbered within their part."""
        seen: dict[tuple[str, int], int] = {}  # lines of each block already read by this task
        for batch in batches:
            for run in _runs(batch, (_FILE, _BLOCK)):
                key = (run.column(_FILE)[0].as_py(), run.column(_BLOCK)[0].as_py())
                name = shipment.names[spark_file_key(key[0])]
                if key not in shipment.lines_before:  # blocks other than those counted
                    raise FileFormatError(f"{name}: changed while it was scored")
                first = shipment.lines_before[key] + seen.get(key, 0)  # the part's line index; 0: its header
                seen[key] = seen.get(key, 0) + run.num_rows
                lines = run.column("line").to_pylist()
                header = 1 if first == 0 else 0
                yield name, read_csv_lines(lines[header:], self.schema, first=first + header, file_name=name)

    def _parquet_chunks(
        self, batches: Iterator[pa.RecordBatch], shipment: _Shipment
    ) -> Iterator[tuple[str, Chunk]]:
        for batch in batches:
            for run in _runs(batch, (_FILE,)):
                numbers = run.column(_ROW_INDEX).to_numpy().astype(np.int64) + 1
                rows = run.select(self.schema.names).cast(self.schema)  # Spark's Arrow types -> the parts'
                yield shipment.names[spark_file_key(run.column(_FILE)[0].as_py())], Chunk(rows, numbers)


def _runs(batch: pa.RecordBatch, keys: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    """Slices of ``batch`` over which the ``keys`` columns do not change (a task may read several parts)."""
    n = batch.num_rows
    if n == 0:
        return
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        column = batch.column(key)
        change[1:] |= ~pc.equal(column.slice(1), column.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(change)
    for start, end in zip(starts, [*starts[1:], n], strict=True):
        yield batch.slice(start, end - start)


def _scored_rows(scored: Scored, name: str, target: pa.Schema) -> pa.RecordBatch:
    n = scored.output.num_rows
    columns = dict(zip(scored.output.schema.names, scored.output.columns, strict=True))
    columns |= {
        "input_file": pa.repeat(pa.scalar(name), n),
        "row_number": pa.array(scored.row_numbers, pa.int64()),
        _KIND: pa.repeat(pa.scalar(_SCORED, pa.int32()), n),
    }
    return _table(columns, target, n)


def _reject_rows(rejects: pa.RecordBatch, name: str, target: pa.Schema) -> pa.RecordBatch:
    n = rejects.num_rows
    columns = {_REJECT_FIELDS[f]: rejects.column(f) for f in _REJECT_FIELDS}
    columns |= {
        "input_file": pa.repeat(pa.scalar(name), n),
        "row_number": rejects.column("row_number"),
        _KIND: pa.repeat(pa.scalar(_REJECT, pa.int32()), n),
    }
    return _table(columns, target, n)


def _table(columns: dict[str, pa.Array], target: pa.Schema, n: int) -> pa.RecordBatch:
    """A batch of ``target``'s schema: the given columns (cast to Spark's types), nulls elsewhere."""
    arrays = [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in target]
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def _executor_predictor(
    models: tuple[_ShippedModel, ...], bands: dict[str, RiskBands], artifacts: dict[str, dict[str, bytes]]
) -> Predictor:
    """The predictor of ``models`` in this Python process, loaded once from the broadcast artifacts."""
    key = tuple(m.digest for m in models)
    if key not in _PREDICTORS:
        loaded = {}
        for m in models:
            with tempfile.TemporaryDirectory(prefix="lenrisk-model-") as folder:
                for name, data in artifacts[m.digest].items():
                    path = Path(folder, name)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                model = RiskModel.load(Path(folder), expected_digest=m.digest)
            loaded[m.outcome] = LoadedModel(name=m.name, version=m.version, model=model, digest=m.digest)
        _PREDICTORS[key] = Predictor(loaded, bands)
    return _PREDICTORS[key]
