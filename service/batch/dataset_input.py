"""The input of a Spark run: a file, a folder or a glob of CSV or Parquet parts, on any Hadoop file system.

The driver lists the parts and checks them before any model is loaded or any task runs: one format, every
part's header (CSV: its first line; Parquet: its footer's schema) equal to the first's and passing the
contract's table checks (:func:`service.batch.read.check_input_columns`). Only headers and footers are read
here. Each part is named by its path relative to the input's root (the folder, the glob's fixed folder, or
the file's folder): that name and the row's number in the part are the row's identity in every output.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import FileFormatError
from service.batch.hadoop_fs import FileInfo, HadoopFS, is_hidden
from service.batch.read import check_input_columns, parse_header

FORMATS = (".csv", ".parquet")
_HEAD = 1 << 16  # bytes read first for a CSV header; up to _HEADER_LIMIT when the line is longer
_HEADER_LIMIT = 1 << 20
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class InputPart:
    """One file of the input: where it is, its name in the outputs, and its rows when known up front."""

    file: FileInfo
    name: str  # relative to the input's root
    rows: int | None  # Parquet: from the footer; CSV: counted on the cluster


@dataclass(frozen=True)
class InputDataset:
    """The checked input of a Spark run."""

    root: str
    folder: bool  # the input named a folder (read whole), not a file or a glob
    format: str  # ".csv" or ".parquet"
    schema: pa.Schema  # the parts' (CSV: every column a string)
    parts: tuple[InputPart, ...]


def open_dataset(fs: HadoopFS, location: str) -> InputDataset:
    """List and check the parts at ``location`` (a path or URI: a file, a folder, or a Hadoop glob).

    Raises :class:`FileFormatError` when nothing matches, when parts mix formats or have another format, or
    when a part's header is unreadable, breaks the table checks, or differs from the first part's.
    """
    root, folder, files = _list(fs, location)
    if not files:
        raise FileFormatError(f"{location}: no .csv or .parquet file there")
    formats = {posixpath.splitext(f.path)[1].lower() for f in files}
    if len(formats) > 1 or not formats <= set(FORMATS):
        raise FileFormatError(
            f"{location}: the parts must all be .csv or all .parquet (found {', '.join(sorted(formats))})"
        )
    (suffix,) = formats
    parts, schema = [], None
    for file in files:
        name = file.path[len(root) + 1 :]
        if suffix == ".csv":
            part_schema, rows = pa.schema([(c, pa.string()) for c in _csv_header(fs, file, name)]), None
        else:
            metadata = _parquet_footer(fs, file, name)
            part_schema, rows = metadata.schema.to_arrow_schema().remove_metadata(), metadata.num_rows
        if schema is None:
            check_input_columns(part_schema, name, dataset=True)
            schema = part_schema
        elif not part_schema.equals(schema):
            raise FileFormatError(f"{name}: its columns differ from those of {parts[0].name}")
        parts.append(InputPart(file, name, rows))
    assert schema is not None
    return InputDataset(root, folder, suffix, schema, tuple(parts))


def _list(fs: HadoopFS, location: str) -> tuple[str, bool, list[FileInfo]]:
    """The input's root, whether it is a folder, and its visible files, sorted by path."""
    qualified = fs.qualify(location)
    if fs.is_dir(qualified):
        return qualified.rstrip("/"), True, sorted(fs.files_under(qualified), key=lambda f: f.path)
    matches = fs.glob(qualified)
    if not matches:
        raise FileFormatError(f"{location}: no such file or folder")
    glob_at = min((qualified.find(c) for c in "*?[{" if c in qualified), default=len(qualified))
    root = qualified[: qualified.rfind("/", 0, glob_at)]
    files: dict[str, FileInfo] = {}
    for match in matches:
        if any(is_hidden(part) for part in match[len(root) + 1 :].split("/")):
            continue  # a glob's * matches _temporary/ and .staging names too: Spark skips them, so do we
        for file in fs.files_under(match) if fs.is_dir(match) else [fs.info(match)]:
            files[file.path] = file  # overlapping globs list a part once
    return root, False, sorted(files.values(), key=lambda f: f.path)


def _csv_header(fs: HadoopFS, file: FileInfo, name: str) -> list[str]:
    head = fs.read(file.path, 0, min(file.size, _HEAD))
    if b"\n" not in head and b"\r" not in head and file.size > _HEAD:
        head = fs.read(file.path, 0, min(file.size, _HEADER_LIMIT))
    return parse_header(head, name)


def _parquet_footer(fs: HadoopFS, file: FileInfo, name: str) -> pq.FileMetaData:
    """The footer of a Parquet part, read from its last bytes only."""
    error = FileFormatError(f"{name}: cannot be read as Parquet (malformed Parquet)")
    if file.size < 12:
        raise error
    tail = fs.read(file.path, file.size - 8, 8)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != _PARQUET_MAGIC or length + 12 > file.size:
        raise error
    footer = fs.read(file.path, file.size - 8 - length, length + 8)
    try:
        return pq.read_metadata(pa.BufferReader(_PARQUET_MAGIC + footer))
    except (pa.ArrowException, OSError):
        raise error from None
