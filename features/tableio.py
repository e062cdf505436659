"""Read and write record tables as CSV or Parquet, chosen by the file extension.

CSV cells are read as raw strings (empty cells stay ""), leaving typing to
:func:`features.validate.validate_table`. Anything that keeps a file from being read as a table raises
:class:`~features.errors.FileFormatError`.
"""

from __future__ import annotations

import csv
import os
import uuid
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import FileFormatError

FORMATS = (".csv", ".parquet")
_ENCODING = "utf-8-sig"  # tolerates a byte-order mark


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``.csv`` (every cell a string, "" when empty) or ``.parquet`` (typed) file into a DataFrame."""
    path = Path(path)
    suffix = _suffix(path)
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
    suffix = _suffix(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # same folder, so os.replace is atomic
    try:
        with tmp.open("xb") as f:
            if suffix == ".csv":
                df.to_csv(f, index=False, encoding="utf-8")
            else:
                df.to_parquet(f, index=False, engine="pyarrow")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FileFormatError(f"{path.name}: unsupported file type; expected one of {', '.join(FORMATS)}")
    return suffix


def _check_unique(names: list[str], path: Path) -> None:
    """Reject repeated column names before pandas silently renames them (``age``, ``age.1``)."""
    duplicated = [name for name, n in Counter(names).items() if n > 1]
    if duplicated:
        raise FileFormatError(f"{path.name}: duplicated column names: {', '.join(duplicated)}")
