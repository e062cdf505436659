"""The Spark engine of ``lenrisk score``: the local engine's per-chunk scoring, run on Spark executors.

The driver checks the input's header and loads and verifies the models exactly as the local engine does
(:func:`service.batch.local.prepare_run`, :func:`service.model_store.load_predictor`), then ships the
verified model artifacts to the executors with ``SparkContext.addFile``. Each executor Python process loads
them once (a module-level cache keyed by the artifacts' SHA-256 digests, verified again on load) and scores
its rows with :func:`service.batch.score.score_chunk`, the function the local engine calls, inside
``mapInArrow`` (``mapInPandas`` without the pandas round trip, so input columns reach the output with their
Arrow types). CSV lines are parsed by :func:`service.batch.read.read_csv_lines`, as the local engine parses
the file. Executors write each scored chunk as Arrow IPC files into a hidden staging folder beside the
output and return one small row per chunk; the driver reads the parts back in file order, one at a time,
and writes, reconciles and publishes the run with :func:`service.batch.publish.write_run`: the same files,
row numbers, guarantees and manifest as the local engine. The staging folder is removed at the end.

Row numbers: CSV is read with Spark's text source, one line per row, numbered within each file block; the
driver adds the count of lines in the blocks before it. Parquet rows carry their position in the file
(``_metadata.row_index``). The input must be one file readable at the same path by the driver and every
executor, and the output folder must be writable by both (local disk in local mode, a shared mount on a
cluster).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import FileFormatError, LenriskError
from features.model.riskmodel import RiskModel
from features.tableio import atomic_path
from service.batch.parallel import one_thread_per_kernel
from service.batch.publish import RunPaths, RunSummary, claim_outputs, write_run
from service.batch.read import BATCH_ROWS, Chunk, InputTable, read_csv_lines
from service.batch.score import Explain, Scored, output_schema, score_chunk
from service.errors import ModelLoadError
from service.predictor import LoadedModel, Predictor, RiskBands

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

#: One row per scored batch, returned by the executors (the batch itself is in the staging folder).
QUIET_LOG4J = "log4j2-quiet.properties"  # beside this module
_MASTER = re.compile(r"(?:--master|spark\.master)[=\s]+(\S+)")
PART_SCHEMA = "block long, first long, lines long, rows long, rejected long, name string, error string"
_ROW_INDEX = "__lenrisk_row_index"
_SHIPPED: dict[tuple[str, str], str] = {}  # (Spark application id, digest) -> shipped artifact name
_PREDICTORS: dict[tuple[str, ...], Predictor] = {}  # executor-side cache, keyed by the models' digests


@contextmanager
def spark_session(*, quiet: bool = False) -> Iterator[SparkSession]:
    """The active Spark session, or a new one (stopped at exit) configured by spark-submit or spark-defaults.

    Without any ``spark.master``, pyspark runs in local mode on every core; then ``SPARK_LOCAL_IP`` defaults
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
    if _local_master():
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if quiet:
        os.environ.setdefault("LOG4J_CONFIGURATION_FILE", str(Path(__file__).with_name(QUIET_LOG4J)))
    builder = (
        SparkSession.builder.appName("lenrisk-score")
        .config("spark.ui.showConsoleProgress", "false")
        # the local engine's batch size: Spark's default 10,000-row Arrow batches score slower (docs/batch.md)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
    )
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


def score_file_spark(
    spark: SparkSession,
    predictor: Predictor,
    paths: RunPaths,
    source: InputTable,
    *,
    explain: Explain = Explain.NONE,
    interval: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Score ``source`` on Spark and publish the run as :func:`service.batch.local.score_file` does."""
    with claim_outputs(paths):
        staging = paths.output.with_name(f".{paths.output.name}.{uuid.uuid4().hex}.parts")
        staging.mkdir()
        try:
            scorer = _ExecutorScoring(
                csv=source.format == ".csv",
                schema=source.schema,
                explain=explain,
                interval=interval,
                models=_ship_models(spark, predictor),
                bands=predictor.bands,
                file_name=source.path.name,
                staging=str(staging),
            )
            with _pandas_version_warning_ignored():
                scored = _rows(spark, source).mapInArrow(scorer, PART_SCHEMA)
            parts = scored.collect()
            failed = [part.error for part in parts if part.error is not None]
            if failed:
                raise FileFormatError(failed[0])
            results = _in_file_order(parts, staging, source)
            return write_run(
                paths,
                source,
                results,
                predictor=predictor,
                explain=explain,
                interval=interval,
                engine="spark",
                progress=progress,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class _ShippedModel:
    outcome: str
    name: str
    version: str
    digest: str
    file: str  # name given to SparkContext.addFile


def _ship_models(spark: SparkSession, predictor: Predictor) -> tuple[_ShippedModel, ...]:
    """Save each verified model's artifact and add it to the Spark context (once per application)."""
    context = spark.sparkContext
    shipped = []
    for outcome, loaded in predictor.models.items():
        key = (context.applicationId, loaded.digest)
        if key not in _SHIPPED:
            folder = Path(tempfile.mkdtemp(prefix="lenrisk-spark-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            name = f"lenrisk-model-{loaded.digest[:16]}"
            if loaded.model.save(folder / name) != loaded.digest:
                raise ModelLoadError(f"{loaded.name} version {loaded.version}: re-saved artifact differs")
            context.addFile(str(folder / name), recursive=True)
            _SHIPPED[key] = name
        shipped.append(_ShippedModel(outcome, loaded.name, loaded.version, loaded.digest, _SHIPPED[key]))
    return tuple(shipped)


def _rows(spark: SparkSession, source: InputTable) -> DataFrame:
    """The input as Spark rows: CSV lines (raw bytes) with their block, or Parquet rows with their index."""
    from pyspark.sql import functions as sf

    uri = source.path.as_uri()
    if source.format == ".csv":
        return spark.read.text(uri).select(
            sf.col("value").cast("binary").alias("line"), sf.col("_metadata.file_block_start").alias("block")
        )
    columns = [sf.col(f"`{name}`") for name in source.schema.names]
    return spark.read.parquet(uri).select(*columns, sf.col("_metadata.row_index").alias(_ROW_INDEX))


def _in_file_order(parts: list[Row], staging: Path, source: InputTable) -> Iterator[Scored]:
    """The scored parts in file order, CSV row numbers made global; sets ``source.rows_in_file``."""
    parts = sorted(parts, key=lambda part: (part.block, part.first))
    lines_before, lines = {}, 0
    for part in parts:
        lines_before.setdefault(part.block, lines)
        lines += part.lines
    for part in parts:
        output, rejects = (_read_ipc(staging / f"{part.name}.{kind}") for kind in ("out", "rej"))
        if source.format == ".csv":
            offset = lines_before[part.block]
            rejects = rejects.set_column(0, "row_number", pc.add(rejects.column(0), offset))
        yield Scored(output, rejects, part.rows, part.rejected)
    source.rows_in_file = max(lines - 1, 0) if source.format == ".csv" else lines


@dataclass(frozen=True)
class _ExecutorScoring:
    """The ``mapInArrow`` function: input rows in; scored batches to staged files, one row each out."""

    csv: bool
    schema: pa.Schema
    explain: Explain
    interval: bool
    models: tuple[_ShippedModel, ...]
    bands: dict[str, RiskBands]
    file_name: str
    staging: str

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        predictor = _executor_predictor(self.models, self.bands)
        schema = output_schema(self.schema, self.explain, interval=self.interval)
        chunks = self._csv_chunks(batches) if self.csv else self._parquet_chunks(batches)
        try:
            with one_thread_per_kernel():  # Spark runs one task per core
                for block, first, lines, chunk in chunks:
                    scored = score_chunk(predictor, chunk, self.explain, schema, interval=self.interval)
                    name = f"{block:020d}-{first:020d}"
                    _write_ipc(Path(self.staging) / f"{name}.out", scored.output)
                    _write_ipc(Path(self.staging) / f"{name}.rej", scored.rejects)
                    part = {"block": block, "first": first, "lines": lines, "name": name}
                    yield pa.RecordBatch.from_pylist(
                        [{**part, "rows": scored.rows, "rejected": scored.rejected}], schema=_PART_ARROW
                    )
        except LenriskError as err:  # a whole-file problem (e.g. not UTF-8): reported by the driver
            yield pa.RecordBatch.from_pylist([{"error": str(err)}], schema=_PART_ARROW)

    def _csv_chunks(self, batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[int, int, int, Chunk]]:
        """Parse batches of lines as the local engine parses the file; rows numbered within the block."""
        block, local = -1, 0  # local: index of the batch's first line within its block of the file
        for batch in batches:
            bounds = pc.min_max(batch.column("block"))
            if bounds["min"] != bounds["max"]:
                raise RuntimeError("a batch of lines spans two blocks of the input file")
            if bounds["min"].as_py() != block:
                block, local = bounds["min"].as_py(), 0
            lines = batch.column("line").to_pylist()
            header = 1 if block == 0 and local == 0 else 0  # the file's first line
            chunk = read_csv_lines(
                lines[header:], self.schema, first=local + header, file_name=self.file_name
            )
            yield block, local, len(lines), chunk
            local += len(lines)

    def _parquet_chunks(self, batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[int, int, int, Chunk]]:
        for batch in batches:
            numbers = batch.column(_ROW_INDEX).to_numpy().astype(np.int64) + 1
            rows = batch.select(self.schema.names).cast(self.schema)  # Spark's Arrow types -> the file's
            yield 0, int(numbers[0]) if len(numbers) else 0, batch.num_rows, Chunk(rows, numbers)


_PART_ARROW = pa.schema(
    [
        ("block", pa.int64()),
        ("first", pa.int64()),
        ("lines", pa.int64()),
        ("rows", pa.int64()),
        ("rejected", pa.int64()),
        ("name", pa.string()),
        ("error", pa.string()),
    ]
)


def _executor_predictor(models: tuple[_ShippedModel, ...], bands: dict[str, RiskBands]) -> Predictor:
    """The predictor of ``models`` in this Python process, loaded from the shipped artifacts once."""
    from pyspark import SparkFiles

    key = tuple(m.digest for m in models)
    if key not in _PREDICTORS:
        loaded = {
            m.outcome: LoadedModel(
                name=m.name,
                version=m.version,
                model=RiskModel.load(Path(SparkFiles.get(m.file)), expected_digest=m.digest),
                digest=m.digest,
            )
            for m in models
        }
        _PREDICTORS[key] = Predictor(loaded, bands)
    return _PREDICTORS[key]


def _write_ipc(path: Path, batch: pa.RecordBatch) -> None:
    """Write one batch as an Arrow IPC file, atomically (a retried task rewrites the same name); a scratch
    file, so without fsyncs."""
    with (
        atomic_path(path, durable=False) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, batch.schema) as writer,
    ):
        writer.write_batch(batch)


def _read_ipc(path: Path) -> pa.RecordBatch:
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).get_batch(0)
