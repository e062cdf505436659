"""Read and write record tables as CSV or Parquet, chosen by the file extension; write any file atomically.

CSV cells are read as raw strings (empty cells stay ""), leaving typing to
:func:`features.validate.validate_table`. Anything that keeps a file from being read as a table raises
:class:`~features.errors.FileFormatError`.
"""

from __future__ import annotations

import csv
import glob
import os
import re
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import FileFormatError

FORMATS = (".csv", ".parquet")
_ENCODING = "utf-8-sig"  # tolerates a byte-order mark


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``.csv`` (every cell a string, "" when empty) or ``.parquet`` (typed) file into a DataFrame."""
    path = Path(path)
    suffix = table_format(path)
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding=_ENCODING) as f:
                header = next(csv.reader(f), None)
            if not header:
                raise FileFormatError(f"{path.name}: no header row on the first line")
            _check_unique(header, path)
            with warnings.catch_warnings():  # rows longer than the header: an error, not silent data loss
                warnings.simplefilter("error", pd.errors.ParserWarning)
                return pd.read_csv(
                    path, dtype=str, keep_default_na=False, encoding=_ENCODING, index_col=False
                )
        _check_unique(pq.read_schema(path).names, path)
        return pd.read_parquet(path, engine="pyarrow")
    except FileNotFoundError as exc:
        raise FileFormatError(f"{path.name}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path.name}: not UTF-8 text") from exc
    except (OSError, csv.Error, pa.ArrowException, pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise FileFormatError(f"{path.name}: cannot be read as {suffix[1:]} ({exc})") from exc


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``df`` (without its index) as CSV or Parquet, atomically: readers see the old or the new file."""
    path = Path(path)
    suffix = table_format(path)
    with atomic_write(path) as f:
        if suffix == ".csv":
            df.to_csv(f, index=False, encoding="utf-8")
        else:
            df.to_parquet(f, index=False, engine="pyarrow")


def table_format(path: Path) -> str:
    """``.csv`` or ``.parquet`` from the file extension; :class:`FileFormatError` otherwise."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FileFormatError(f"{path.name}: unsupported file type; expected one of {', '.join(FORMATS)}")
    return suffix


class StagedFile:
    """A file written under a hidden temporary name beside ``path`` (same folder, so the rename is atomic),
    renamed into place by :meth:`publish` or removed by :meth:`discard`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")

    @staticmethod
    def temporaries(path: Path, suffix: str = ".tmp") -> list[Path]:
        """Files beside ``path`` named as its staged files are (``.{name}.{32 hex digits}{suffix}``): a killed
        process's leftovers, or another process's files in the making."""
        name = re.compile(re.escape(f".{path.name}.") + "[0-9a-f]{32}" + re.escape(suffix))
        return [p for p in path.parent.glob(f".{glob.escape(path.name)}.*") if name.fullmatch(p.name)]

    def publish(self, *, durable: bool = True) -> None:
        """Rename the temporary file over ``path``; when ``durable``, its bytes and the rename reach disk."""
        if durable:
            with self.tmp.open("rb") as f:
                os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        if durable:
            sync_folder(self.path.parent)

    def discard(self) -> None:
        """Remove the temporary file, if any."""
        self.tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path to write ``path`` through: published when the block ends, removed if it raises.

    Readers see the old file or the new one, never a part; ``durable`` adds the fsyncs that keep it so across
    a crash (scratch files skip them).
    """
    staged = StagedFile(path)
    try:
        yield staged.tmp
        staged.publish(durable=durable)
    except BaseException:
        staged.discard()
        raise


@contextmanager
def atomic_write(path: Path, mode: str = "xb", *, durable: bool = True) -> Iterator[IO[Any]]:
    """:func:`atomic_path` as an open file (text modes write UTF-8)."""
    encoding = {} if "b" in mode else {"encoding": "utf-8"}
    with atomic_path(path, durable=durable) as tmp, tmp.open(mode, **encoding) as f:
        yield f


def sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_unique(names: list[str], path: Path) -> None:
    """Reject repeated column names before pandas silently renames them (``age``, ``age.1``)."""
    duplicated = [name for name, n in Counter(names).items() if n > 1]
    if duplicated:
        raise FileFormatError(f"{path.name}: duplicated column names: {', '.join(duplicated)}")
