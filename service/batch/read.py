"""Reading an input file for batch scoring: the header checked up front, then rows streamed in chunks.

The input (``.csv`` or ``.parquet``) is read in record batches, so memory stays bounded whatever the file
size. CSV cells are read as raw strings, so the contract validator (:func:`features.validate.validate_table`)
sees exactly what the file holds; rows the CSV parser cannot split into the header's fields are kept, with
their row number, as rejects (:mod:`service.batch.numbering`), never skipped. Parquet rows are numbered by
their position in the file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from features.errors import FileFormatError
from features.tableio import table_format
from features.validate import check_table_columns
from service.batch.numbering import RowNumbering
from service.batch.score import IDENTITY_SCHEMA, REJECT_SCHEMA, Explain, score_schema

BATCH_ROWS = 65_536  # Parquet rows per batch; CSV blocks hold about as many rows of ~128 bytes
_HEADER_LIMIT = 1 << 20  # bytes; a first line longer than this is not a header
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Chunk:
    """Rows read together: the parsed rows with their row numbers, and the rows that could not be split (as
    reject lines, one per row)."""

    batch: pa.RecordBatch
    row_numbers: np.ndarray  # int64, 1-based data row of each row of ``batch``
    unsplit: pa.RecordBatch = field(default_factory=lambda: _empty_batch(REJECT_SCHEMA))


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
            options = _csv_options(self.schema.names, numbering, skip_rows=1, block_size=block_size)
            for batch in pv.open_csv(self.path, **options):
                numbers, unsplit = numbering.take(batch.num_rows)
                yield Chunk(batch, numbers, unsplit)
        tail = numbering.rest()
        if tail.num_rows:
            yield Chunk(_empty_batch(self.schema), np.empty(0, np.int64), tail)
        self.rows_in_file = numbering.last

    def _parquet_chunks(self) -> Iterator[Chunk]:
        start = 0
        with arrow_errors(self.path, "Parquet"):
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows):
                yield Chunk(batch, np.arange(start + 1, start + batch.num_rows + 1, dtype=np.int64))
                start += batch.num_rows
        self.rows_in_file = start


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
    check_input_columns(schema, path.name)
    return InputTable(path, schema, rows, batch_rows)


def check_input_columns(schema: pa.Schema, name: str, *, dataset: bool = False) -> None:
    """Every contract column present once, and none of the columns scoring writes (with ``dataset``, the row
    identity columns of a dataset's output too); raises :class:`FileFormatError` naming the file ``name``."""
    check_table_columns(schema.names)
    written = {name for mode in Explain for name in score_schema(mode, interval=True).names}
    written |= set(IDENTITY_SCHEMA.names) if dataset else set()
    clashing = [column for column in schema.names if column in written]
    if clashing:
        raise FileFormatError(f"{name}: already has columns that scoring writes: {', '.join(clashing)}")


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


def read_csv_lines(lines: list[bytes], schema: pa.Schema, *, first: int, file_name: str) -> Chunk:
    """Parse lines of a CSV file (no header among them) as :meth:`InputTable.chunks` parses the file.

    ``first`` is the row number of the first line; the lines come from one contiguous part of the file (a
    Spark task's share). Unsplittable lines become rejects, numbered like the others.
    """
    names = schema.names
    numbering = RowNumbering(names, first=first)
    data = b"".join(line + b"\n" for line in lines)
    table = schema.empty_table()
    if data:
        with arrow_errors(Path(file_name), "CSV"):
            options = _csv_options(names, numbering, skip_rows=0, block_size=max(len(data), 1 << 14))
            table = pv.read_csv(io.BytesIO(data), **options)
    numbers, unsplit = numbering.take(table.num_rows)
    parsed = table.combine_chunks().to_batches()[0] if table.num_rows else _empty_batch(schema)
    return Chunk(parsed, numbers, pa.concat_batches([unsplit, numbering.rest()]))


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _csv_options(
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
