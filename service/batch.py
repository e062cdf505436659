"""Batch scoring of record files with the service's predictor: stream, validate, score, write, reconcile.

A run reads the input (``.csv`` or ``.parquet``) in record batches, so memory stays bounded whatever the file
size. CSV cells are read as raw strings, so the contract validator (:func:`features.validate.validate_table`)
sees exactly what the file holds; rows the CSV parser cannot split into the header's fields are rejected
with their row number, never skipped. Valid rows are scored by :class:`service.predictor.Predictor`, the
object behind ``/v1/predict``: same encoding, calibration, applicability flags and explanations.

Every input row ends up either in the output (input columns unchanged, then the scores) or in the rejects
file (one line per broken rule). Output, rejects and the manifest are written to temporary files beside
their destinations and renamed into place, manifest last, only when
``rows in the file == rows scored + rows rejected``; any failure leaves nothing under the final names.

Row numbers are 1-based data rows (the header excluded): for CSV, rows as the CSV parser splits them
(the line number minus one unless a quoted cell spans lines), for Parquet the position in the file.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import os
import queue
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from features.errors import FileFormatError, LenriskError, RowError
from features.schema import OUTCOME_COLUMNS, OUTCOMES, PATIENT_ID_PATTERN, RECORD_NAMES
from features.tableio import FORMATS
from features.validate import check_table_columns, validate_table
from service.predictor import FIELDS, Predictor

BATCH_ROWS = 65_536  # Parquet rows per batch; CSV blocks hold about as many rows of ~128 bytes
WORKERS = 2  # chunks scored at once
TOP_K = 3
MANIFEST_SUFFIX = ".manifest.json"
REJECT_SCHEMA = pa.schema(
    [
        ("row_number", pa.int64()),
        ("patient_id", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
    ]
)
_HEADER_LIMIT = 1 << 20  # bytes; a first line longer than this is not a header
_LINE_END = re.compile(rb"\r\n|\r|\n")
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)
_VALIDATED = (*RECORD_NAMES, *(c.name for c in OUTCOME_COLUMNS))  # outcomes are checked when present


class Explain(StrEnum):
    """Explanation columns written per outcome."""

    NONE = "none"  # probabilities only (the fast path)
    TOP3 = "top3"  # the three fields with the largest |log-odds contribution|
    ALL = "all"  # every field's contribution and the base value


class BatchPathError(LenriskError):
    """Output paths that cannot be used: over the input, output equal to rejects, or in a missing folder."""


class ReconciliationError(LenriskError):
    """Rows read differ from rows scored plus rows rejected; nothing is published."""


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads and writes; rejects default to ``<output stem>.rejects.csv`` beside the output."""

    input: Path
    output: Path
    rejects: Path
    manifest: Path


def plan_paths(input_path: Path, output_path: Path, rejects_path: Path | None = None) -> RunPaths:
    """Resolve and check the paths of a run; raises :class:`BatchPathError` or :class:`FileFormatError`."""
    source = Path(input_path).resolve()
    output = Path(output_path).resolve()
    rejects = Path(rejects_path).resolve() if rejects_path else output.with_name(f"{output.stem}.rejects.csv")
    manifest = output.with_name(output.name + MANIFEST_SUFFIX)
    for path in (source, output, rejects):
        table_format(path)
    if not source.is_file():
        raise FileFormatError(f"{source.name}: no such file")
    for path in (output, rejects):
        if not path.parent.is_dir():
            raise BatchPathError(f"{path.name}: the folder {path.parent} does not exist")
    written = (output, rejects, manifest)
    if source in written or any(p.exists() and p.samefile(source) for p in written):
        raise BatchPathError(f"{source.name}: the output, rejects and manifest must not overwrite the input")
    if len(set(written)) < len(written):
        raise BatchPathError(f"{output.name}: output and rejects must be different files")
    return RunPaths(source, output, rejects, manifest)


def table_format(path: Path) -> str:
    """``.csv`` or ``.parquet`` from the file extension; :class:`FileFormatError` otherwise."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FileFormatError(f"{path.name}: unsupported file type; expected one of {', '.join(FORMATS)}")
    return suffix


# --- reading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """Rows read together: the parsed rows with their row numbers, and the rows that could not be split."""

    batch: pa.RecordBatch
    row_numbers: np.ndarray  # int64, 1-based data row of each row of ``batch``
    unsplit: list[RowError] = field(default_factory=list)


class InputTable:
    """An input file whose header passed the table checks; :meth:`chunks` streams its rows."""

    def __init__(self, path: Path, schema: pa.Schema, rows: int | None, batch_rows: int) -> None:
        self.path = path
        self.format = table_format(path)
        self.schema = schema
        self.rows = rows  # known up front for Parquet
        self.batch_rows = batch_rows
        self.rows_in_file = 0  # set once :meth:`chunks` is exhausted

    def chunks(self) -> Iterator[Chunk]:
        """Record batches of the file, in order, with 1-based row numbers."""
        return self._csv_chunks() if self.format == ".csv" else self._parquet_chunks()

    def _csv_chunks(self) -> Iterator[Chunk]:
        numbering = RowNumbering(self.schema.names, skipped=1)
        block_size = max(1 << 10, self.batch_rows * 128)
        with arrow_errors(self.path, "CSV"):
            options = csv_options(self.schema.names, numbering, skip_rows=1, block_size=block_size)
            for batch in pv.open_csv(self.path, **options):
                numbers, unsplit = numbering.take(batch.num_rows)
                yield Chunk(batch, numbers, unsplit)
        tail = numbering.rest()
        if tail:
            yield Chunk(empty_batch(self.schema), np.empty(0, np.int64), tail)
        self.rows_in_file = numbering.last

    def _parquet_chunks(self) -> Iterator[Chunk]:
        start = 0
        with arrow_errors(self.path, "Parquet"):
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows):
                yield Chunk(batch, np.arange(start + 1, start + batch.num_rows + 1, dtype=np.int64))
                start += batch.num_rows
        self.rows_in_file = start


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of no rows."""
    return pa.RecordBatch.from_pylist([], schema=schema)


def open_input(path: Path, *, batch_rows: int = BATCH_ROWS) -> InputTable:
    """Open ``path`` and check its header: every contract column present once, no lenrisk output column.

    Raises :class:`FileFormatError` for an unreadable file, a missing header or missing/duplicated columns.
    """
    path = Path(path)
    suffix = table_format(path)
    try:
        if suffix == ".csv":
            with path.open("rb") as f:
                head = f.read(_HEADER_LIMIT)
            names = parse_header(head, path.name)
            schema, rows = pa.schema([(name, pa.string()) for name in names]), None
        else:
            with arrow_errors(path, "Parquet"):
                metadata = pq.read_metadata(path)
                schema, rows = metadata.schema.to_arrow_schema().remove_metadata(), metadata.num_rows
    except FileNotFoundError as err:
        raise FileFormatError(f"{path.name}: no such file") from err
    except OSError as err:
        raise FileFormatError(f"{path.name}: cannot be read ({type(err).__name__})") from err
    check_table_columns(schema.names)
    written = {name for mode in Explain for name in score_schema(mode).names}
    clashing = [name for name in schema.names if name in written]
    if clashing:
        raise FileFormatError(f"{path.name}: already has columns that scoring writes: {', '.join(clashing)}")
    return InputTable(path, schema, rows, batch_rows)


def parse_header(head: bytes, name: str) -> list[str]:
    """Column names from the first line of a CSV file (a UTF-8 byte-order mark is tolerated)."""
    match = _LINE_END.search(head)
    if match is None and len(head) >= _HEADER_LIMIT:
        raise FileFormatError(f"{name}: no header line within the first {_HEADER_LIMIT} bytes")
    line = head[: match.start()] if match else head
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{name}: not UTF-8 text") from err
    names = next(csv.reader([text]), None)
    if not names:
        raise FileFormatError(f"{name}: no header row on the first line")
    return names


class RowNumbering:
    """Numbers the rows of one CSV parse ``first``, ``first + 1``, ... including rows the parser cannot split.

    pyarrow hands such rows (too few or too many fields) to :meth:`on_invalid` with their number, in file
    order and ahead of the batch they would have been in; :meth:`take` numbers the next ``n`` parsed rows
    around them and returns the rejects up to there. ``skipped`` is how many lines the parser skipped before
    the first row (and counts in its numbers): 1 when it skips the header.
    """

    def __init__(self, names: list[str], *, first: int = 1, skipped: int = 0) -> None:
        self._patient = names.index("patient_id")
        self._offset = first - 1 - skipped  # parser's number -> row number
        self._pending: deque[RowError] = deque()
        self._next = first
        self.last = first - 1

    def on_invalid(self, row: pv.InvalidRow) -> str:
        """Record a row with the wrong number of fields as a reject; tell the parser to skip it."""
        if row.number is None:  # only a multi-threaded parse omits it; every parse here is serial
            raise RuntimeError("the CSV parser did not report the row number")
        reason = f"row has {row.actual_columns} fields, expected {row.expected_columns}"
        self._pending.append(RowError(row.number + self._offset, "", reason, self._patient_id(row.text)))
        return "skip"

    def _patient_id(self, text: str) -> str | None:
        fields = next(csv.reader([text]), [])
        value = fields[self._patient].strip() if self._patient < len(fields) else ""
        return value if _PATIENT_ID.fullmatch(value) else None

    def take(self, n: int) -> tuple[np.ndarray, list[RowError]]:
        """Row numbers of the next ``n`` parsed rows, and the unsplit rows among or before them."""
        end = self._next + n
        unsplit = []
        while self._pending and self._pending[0].row_number < end:
            unsplit.append(self._pending.popleft())
            end += 1
        numbers = np.arange(self._next, end, dtype=np.int64)
        if unsplit:
            numbers = np.setdiff1d(numbers, [e.row_number for e in unsplit], assume_unique=True)
        self._next = end
        self.last = max(self.last, end - 1)
        return numbers, unsplit

    def rest(self) -> list[RowError]:
        """The unsplit rows after the last parsed row."""
        tail = list(self._pending)
        self._pending.clear()
        if tail:
            self.last = max(self.last, tail[-1].row_number)
        return tail


def csv_options(
    names: list[str], numbering: RowNumbering, *, skip_rows: int, block_size: int
) -> dict[str, Any]:
    """Reader options: every column a string ("" when empty), unsplittable rows handed to ``numbering``.

    Parsing is serial (``use_threads=False``), the only mode in which pyarrow reports invalid rows' numbers.
    Empty lines are rows (of empty cells, rejected by the validator), so row numbers follow the lines.
    """
    return {
        "read_options": pv.ReadOptions(
            column_names=names, skip_rows=skip_rows, use_threads=False, block_size=block_size
        ),
        "parse_options": pv.ParseOptions(invalid_row_handler=numbering.on_invalid, ignore_empty_lines=False),
        "convert_options": pv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    }


@contextmanager
def arrow_errors(path: Path, kind: str) -> Iterator[None]:
    """Turn pyarrow read errors into :class:`FileFormatError` without their text (it may quote data)."""
    try:
        yield
    except (pa.ArrowException, OSError) as err:
        detail = "not UTF-8 text" if "UTF8" in str(err) else f"malformed {kind}"
        raise FileFormatError(f"{path.name}: cannot be read as {kind} ({detail})") from None


# --- scoring ----------------------------------------------------------------------------------------------


def score_schema(explain: Explain) -> pa.Schema:
    """The columns scoring appends to the input's, in order."""
    fields = [(f"risk_{o}", pa.float64()) for o in OUTCOMES]
    fields += [(f"model_version_{o}", pa.string()) for o in OUTCOMES]
    fields.append(("applicability", pa.string()))
    for o in OUTCOMES:
        if explain is Explain.TOP3:
            for k in range(1, TOP_K + 1):
                fields += [(f"{o}_top{k}_feature", pa.string()), (f"{o}_top{k}_contribution", pa.float64())]
        elif explain is Explain.ALL:
            fields += [(f"shap_{o}_base", pa.float64())] + [(f"shap_{o}_{f}", pa.float64()) for f in FIELDS]
    return pa.schema(fields)


def output_schema(input_schema: pa.Schema, explain: Explain) -> pa.Schema:
    """Input columns unchanged, then the score columns."""
    return pa.schema([*input_schema, *score_schema(explain)])


@dataclass(frozen=True)
class Scored:
    """One chunk scored: output rows (input columns, then scores), reject lines, and its row counts."""

    output: pa.RecordBatch
    rejects: pa.RecordBatch
    rows: int  # rows of the chunk, scored or rejected
    rejected: int  # rows rejected (a row breaking three rules has three reject lines)


def score_chunk(predictor: Predictor, chunk: Chunk, explain: Explain, schema: pa.Schema) -> Scored:
    """Validate a chunk against the contract, score its valid rows, and collect a reject line per broken rule.

    ``schema`` is :func:`output_schema` of the input. Reject lines are ordered by row, then contract column.
    """
    batch = chunk.batch
    frame = batch.select([name for name in _VALIDATED if name in batch.schema.names]).to_pandas(
        split_blocks=True  # one array per column: no copy into 2-D blocks
    )
    validation = validate_table(frame)
    errors = [replace(e, row_number=int(chunk.row_numbers[e.row_number - 1])) for e in validation.errors]
    if validation.rejected.size:
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[validation.rejected] = False
        batch = batch.filter(pa.array(keep))
    scores = score_columns(predictor, validation.clean, explain)
    lines = sorted([*errors, *chunk.unsplit], key=lambda e: e.row_number)  # stable: keeps column order
    return Scored(
        output=pa.RecordBatch.from_arrays([*batch.columns, *scores], schema=schema),
        rejects=reject_batch(lines),
        rows=chunk.batch.num_rows + len(chunk.unsplit),
        rejected=int(validation.rejected.size) + len(chunk.unsplit),
    )


def score_columns(predictor: Predictor, clean: pd.DataFrame, explain: Explain) -> list[pa.Array]:
    """The :func:`score_schema` columns for validated rows, from the same predictor calls as the API."""
    n = len(clean)
    if n == 0:
        return [pa.array([], type=f.type) for f in score_schema(explain)]
    if explain is Explain.NONE:
        risks, explained = predictor.probabilities(clean), {}
    else:
        explained = predictor.explain_columns(clean)
        risks = {o: explanation.probability for o, (explanation, _) in explained.items()}
    arrays = [pa.array(risks[o], pa.float64()) for o in OUTCOMES]
    arrays += [pa.repeat(pa.scalar(predictor.models[o].version, pa.string()), n) for o in OUTCOMES]
    arrays.append(predictor.applicability_flags(clean))
    names = pa.array(FIELDS, pa.string())
    for o in OUTCOMES if explained else ():
        explanation, grouped = explained[o]
        if explain is Explain.TOP3:
            order = np.argsort(-np.abs(grouped), axis=1, kind="stable")[:, :TOP_K]  # as the API orders them
            top = np.take_along_axis(grouped, order, axis=1)
            for k in range(TOP_K):
                arrays += [names.take(pa.array(order[:, k])), pa.array(top[:, k])]
        else:
            arrays.append(pa.array(np.full(n, explanation.base)))
            arrays += [pa.array(column) for column in np.ascontiguousarray(grouped.T)]
    return arrays


def reject_batch(errors: list[RowError]) -> pa.RecordBatch:
    """Reject lines as a :data:`REJECT_SCHEMA` batch."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array([e.row_number for e in errors], pa.int64()),
            pa.array([e.patient_id for e in errors], pa.string()),
            pa.array([e.column for e in errors], pa.string()),
            pa.array([e.reason for e in errors], pa.string()),
        ],
        schema=REJECT_SCHEMA,
    )


# --- writing ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """Counts and manifest of a published run."""

    paths: RunPaths
    manifest: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        """``read``, ``scored``, ``rejected`` (rows) and ``reject_lines``."""
        return self.manifest["counts"]


class _StagedTable:
    """A table written batch by batch to a hidden temporary file beside ``path``."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.tmp = _temporary(path)
        self.rows = 0
        self._open = True
        if table_format(path) == ".parquet":
            self._writer = pq.ParquetWriter(self.tmp, schema, use_dictionary=_dictionary_columns(schema))
        else:
            self._writer = pv.CSVWriter(self.tmp, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> str:
        """Finish the file, flush it to disk and return its SHA-256."""
        self._close()
        return sha256_file(self.tmp, sync=True)

    def discard(self) -> None:
        """Close and delete the temporary file."""
        try:
            self._close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth Parquet dictionary encoding: not floats and not ``patient_id``, whose values rarely
    repeat (trying a dictionary and falling back costs a quarter of the write time)."""
    return [f.name for f in schema if not pa.types.is_floating(f.type) and f.name != "patient_id"]


def write_run(
    paths: RunPaths,
    source: InputTable,
    results: Iterable[Scored],
    *,
    predictor: Predictor,
    explain: Explain,
    engine: str,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Write scored chunks and rejects, reconcile the counts, then publish output, rejects and manifest.

    ``results`` must exhaust ``source`` (which then knows its ``rows_in_file``). Writing runs in a background
    thread, one chunk behind scoring. Nothing appears under the final names unless
    ``rows in the file == rows read == rows scored + rows rejected``; otherwise :class:`ReconciliationError`.
    Any error removes the temporary files.
    """
    staged: list[_StagedTable] = []
    writing: Future[None] | None = None
    with ThreadPoolExecutor(2) as pool:  # the input's SHA-256, and writing
        input_sha256 = pool.submit(sha256_file, paths.input)
        try:
            staged.append(_StagedTable(paths.output, output_schema(source.schema, explain)))
            staged.append(_StagedTable(paths.rejects, REJECT_SCHEMA))
            output, rejects = staged
            read = rejected = 0
            for scored in results:
                if writing is not None:
                    writing.result()
                writing = pool.submit(_write, output, rejects, scored)
                read += scored.rows
                rejected += scored.rejected
                if progress:
                    progress(scored.rows)
            if writing is not None:
                writing.result()
            hashes = output.close(), rejects.close()
            expected = {source.rows_in_file, read} | ({source.rows} if source.rows is not None else set())
            if len(expected) != 1 or read != output.rows + rejected:
                raise ReconciliationError(
                    f"rows in the file {source.rows_in_file}, read {read}, scored {output.rows}, rejected "
                    f"{rejected}: the counts do not reconcile, so nothing was published"
                )
            counts = {"read": read, "scored": output.rows, "rejected": rejected, "reject_lines": rejects.rows}
            manifest = _manifest(
                paths, source, input_sha256.result(), hashes, counts, predictor, explain, engine
            )
            _publish(paths, staged, manifest)
        except BaseException:
            if writing is not None:
                wait([writing])
            for table in staged:
                table.discard()
            raise
    return RunSummary(paths, manifest)


def _write(output: _StagedTable, rejects: _StagedTable, scored: Scored) -> None:
    output.write(scored.output)
    rejects.write(scored.rejects)


def _manifest(
    paths: RunPaths,
    source: InputTable,
    input_sha256: str,
    hashes: tuple[str, str],
    counts: dict[str, int],
    predictor: Predictor,
    explain: Explain,
    engine: str,
) -> dict[str, Any]:
    beside = paths.manifest.parent
    return {
        "lenrisk_version": importlib.metadata.version("lenrisk"),
        "engine": engine,
        "explain": explain.value,
        "input": {"path": str(paths.input), "format": source.format[1:], "sha256": input_sha256},
        "output": {"path": os.path.relpath(paths.output, beside), "sha256": hashes[0]},
        "rejects": {"path": os.path.relpath(paths.rejects, beside), "sha256": hashes[1]},
        "counts": counts,
        "models": {
            outcome: {
                "name": m.name,
                "version": m.version,
                "sha256": m.digest,
                "family": m.model.family,
            }
            for outcome, m in predictor.models.items()
        },
    }


def _publish(paths: RunPaths, staged: list[_StagedTable], manifest: dict[str, Any]) -> None:
    """Rename the staged tables into place, then write the manifest the same way (last)."""
    paths.manifest.unlink(missing_ok=True)  # a stale manifest must never vouch for the new files
    for table in staged:
        os.replace(table.tmp, table.path)
    tmp = _temporary(paths.manifest)
    try:
        with tmp.open("x", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, paths.manifest)
    finally:
        tmp.unlink(missing_ok=True)
    for folder in {paths.output.parent, paths.rejects.parent}:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # make the renames durable
        finally:
            os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def sha256_file(path: Path, *, sync: bool = False) -> str:
    """SHA-256 of a file's bytes (after flushing it to disk when ``sync``)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if sync:
            os.fsync(f.fileno())
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --- the local engine -------------------------------------------------------------------------------------


def prepare_run(
    input_path: Path, output_path: Path, rejects_path: Path | None = None, *, batch_rows: int = BATCH_ROWS
) -> tuple[RunPaths, InputTable]:
    """Check paths and the input's header before any model is loaded or any file is written."""
    paths = plan_paths(input_path, output_path, rejects_path)
    return paths, open_input(paths.input, batch_rows=batch_rows)


def score_file(
    predictor: Predictor,
    paths: RunPaths,
    source: InputTable,
    *,
    explain: Explain = Explain.NONE,
    progress: Callable[[int], None] | None = None,
    workers: int = WORKERS,
) -> RunSummary:
    """Score ``source`` in this process and publish the run (see :func:`write_run`).

    A background thread reads ahead; ``workers`` threads score consecutive chunks at once (numpy, pandas and
    pyarrow release the GIL in their kernels), each kernel on one thread; results are written in input order.
    """
    schema = output_schema(source.schema, explain)
    with one_thread_per_kernel():
        results = in_order(
            lambda chunk: score_chunk(predictor, chunk, explain, schema), prefetched(source.chunks()), workers
        )
        return write_run(
            paths, source, results, predictor=predictor, explain=explain, engine="local", progress=progress
        )


def one_thread_per_kernel() -> threadpool_limits:
    """Single-threaded BLAS (a process-wide setting) and OpenMP (the calling thread's) while chunks are scored
    in parallel: BLAS's own threads would only compete for the same cores (OpenBLAS's spin-waiting doubled
    the CPU time of a run)."""
    return threadpool_limits(limits=1)


def in_order[T, R](function: Callable[[T], R], items: Iterator[T], workers: int) -> Iterator[R]:
    """``map(function, items)`` on ``workers`` threads, in order, with at most ``workers`` items in flight."""
    with ThreadPoolExecutor(workers, thread_name_prefix="lenrisk-score") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def prefetched[T](items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced by a background thread at most ``depth`` ahead (pyarrow parsing releases the GIL).

    An error in the producer is raised here; closing this iterator stops the producer.
    """
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> None:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in items:
                put((False, item))
                if stop.is_set():
                    return
            put((True, None))
        except BaseException as err:  # handed to the consumer
            put((True, err))

    thread = threading.Thread(target=produce, name="lenrisk-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            done, value = slots.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()
