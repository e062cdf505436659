"""The executors' side of the Spark engine: the ``mapInArrow`` function that scores input rows into the run's
union table (scored rows, reject lines, whole-part errors), and the models it loads from the broadcast
artifacts (:mod:`service.batch.spark` drives the run)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import FileFormatError, LenriskError
from features.model.riskmodel import RiskModel
from service.batch.hadoop_fs import spark_file_key
from service.batch.parallel import one_thread_per_kernel
from service.batch.read import Chunk, read_csv_lines
from service.batch.score import REJECT_SCHEMA, Explain, Scored, output_schema, score_chunk
from service.errors import ModelLoadError
from service.predictor import LoadedModel, Predictor, RiskBands

#: Columns the driver adds to the input rows: the part (``_metadata.file_path``), a CSV line's block, a
#: Parquet row's index; and the union table's kind and reject-line columns.
FILE, BLOCK, ROW_INDEX = "__lenrisk_file", "__lenrisk_block", "__lenrisk_row_index"
KIND = "__lenrisk_kind"
SCORED_ROW, REJECT_LINE, ERROR_ROW = 0, 1, 2
REJECT_FIELDS = {name: f"__lenrisk_{name}" for name in REJECT_SCHEMA.names[1:]}  # patient_id, column, reason
_PREDICTORS: dict[tuple[str, ...], Predictor] = {}  # executor-side cache, keyed by the models' digests


@dataclass(frozen=True)
class ShippedModel:
    outcome: str
    name: str
    version: str
    digest: str


@dataclass(frozen=True)
class Shipment:
    """What every executor gets once (a broadcast): the artifacts' files by digest, the parts' names by
    path, and the CSV lines before each block."""

    artifacts: dict[str, dict[str, bytes]]
    names: dict[str, str]
    lines_before: dict[tuple[str, int], int]


def artifact_files(predictor: Predictor) -> dict[str, dict[str, bytes]]:
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
class ExecutorScoring:
    """The ``mapInArrow`` function: input rows in, scored rows and reject lines (the union table) out."""

    csv: bool
    schema: pa.Schema  # the parts'
    explain: Explain
    interval: bool
    models: tuple[ShippedModel, ...]
    bands: dict[str, RiskBands]
    shipment: Any  # pyspark Broadcast[Shipment]
    union: str  # the union StructType, as JSON

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark.sql.pandas.types import to_arrow_schema
        from pyspark.sql.types import StructType

        target = to_arrow_schema(StructType.fromJson(json.loads(self.union)))
        shipment: Shipment = self.shipment.value
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
                {KIND: pa.array([ERROR_ROW], pa.int32()), REJECT_FIELDS["reason"]: pa.array([str(err)])},
                target,
                1,
            )

    def _csv_chunks(
        self, batches: Iterator[pa.RecordBatch], shipment: Shipment
    ) -> Iterator[tuple[str, Chunk]]:
        """Parse runs of lines as the local engine parses a file; rows numbered within their part."""
        seen: dict[tuple[str, int], int] = {}  # lines of each block already read by this task
        for batch in batches:
            for run in _runs(batch, (FILE, BLOCK)):
                key = (run.column(FILE)[0].as_py(), run.column(BLOCK)[0].as_py())
                name = shipment.names[spark_file_key(key[0])]
                if key not in shipment.lines_before:  # blocks other than those counted
                    raise FileFormatError(f"{name}: changed while it was scored")
                first = shipment.lines_before[key] + seen.get(key, 0)  # the part's line index; 0: its header
                seen[key] = seen.get(key, 0) + run.num_rows
                lines = run.column("line").to_pylist()
                header = 1 if first == 0 else 0
                yield name, read_csv_lines(lines[header:], self.schema, first=first + header, file_name=name)

    def _parquet_chunks(
        self, batches: Iterator[pa.RecordBatch], shipment: Shipment
    ) -> Iterator[tuple[str, Chunk]]:
        for batch in batches:
            for run in _runs(batch, (FILE,)):
                numbers = run.column(ROW_INDEX).to_numpy().astype(np.int64) + 1
                rows = run.select(self.schema.names).cast(self.schema)  # Spark's Arrow types -> the parts'
                yield shipment.names[spark_file_key(run.column(FILE)[0].as_py())], Chunk(rows, numbers)


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
        KIND: pa.repeat(pa.scalar(SCORED_ROW, pa.int32()), n),
    }
    return _table(columns, target, n)


def _reject_rows(rejects: pa.RecordBatch, name: str, target: pa.Schema) -> pa.RecordBatch:
    n = rejects.num_rows
    columns = {REJECT_FIELDS[f]: rejects.column(f) for f in REJECT_FIELDS}
    columns |= {
        "input_file": pa.repeat(pa.scalar(name), n),
        "row_number": rejects.column("row_number"),
        KIND: pa.repeat(pa.scalar(REJECT_LINE, pa.int32()), n),
    }
    return _table(columns, target, n)


def _table(columns: dict[str, pa.Array], target: pa.Schema, n: int) -> pa.RecordBatch:
    """A batch of ``target``'s schema: the given columns (cast to Spark's types), nulls elsewhere."""
    arrays = [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in target]
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def _executor_predictor(
    models: tuple[ShippedModel, ...], bands: dict[str, RiskBands], artifacts: dict[str, dict[str, bytes]]
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
