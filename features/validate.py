"""Validate a table of records against the record contract (``shared/contract.md``, :mod:`features.schema`).

:func:`validate_table` is the gate for training data, batch scoring and the cohort generator's output. It
checks every cell of every row, vectorised per column, and returns the valid rows typed plus one
:class:`~features.errors.RowError` per broken rule. Error reasons name the column and the rule only, never
the offending value (it may be patient data).
"""

from __future__ import annotations

import numbers
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import ContractError, FileFormatError, RowError
from features.schema import OUTCOME_COLUMNS, PATIENT_ID_CHARACTER, RECORD_COLUMNS, Column, Kind

EMPTY = "required value is empty"
_CONTRACT_NAMES = tuple(c.name for c in (*RECORD_COLUMNS, *OUTCOME_COLUMNS))
_MANGLED = re.compile(r"(.+)\.\d+")  # pandas renames a repeated column "age" to "age.1", "age.2", ...
_PRINTABLE = PATIENT_ID_CHARACTER + "*"  # the same rule as the API model's pattern
_DECIMAL = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"


@dataclass(frozen=True, eq=False)
class Validation:
    """The outcome of :func:`validate_table`.

    ``clean`` holds the valid rows with the original index of the input (so callers can align) and the
    original column order; ``errors`` every broken rule, ordered by row then contract column; ``rejected`` the
    sorted 0-based positions of the rejected rows within the input.
    """

    clean: pd.DataFrame
    errors: list[RowError]
    rejected: np.ndarray
    n_rows: int

    @property
    def ok(self) -> bool:
        """True when no row broke a rule."""
        return not self.errors

    def raise_on_errors(self) -> pd.DataFrame:
        """``clean`` if every row is valid, else :class:`ContractError` carrying every row error."""
        if self.errors:
            raise ContractError(
                f"{len(self.rejected)} of {self.n_rows} rows break the record contract", self.errors
            )
        return self.clean


def check_table_columns(columns: Sequence[Hashable], *, require_outcomes: bool = False) -> None:
    """Raise :class:`FileFormatError` for table-level problems of a header.

    Duplicated names (also as pandas mangles them: ``age.1``), no contract column at all, or missing required
    columns: every record column including ``patient_id``, and the outcome columns if ``require_outcomes``.
    """
    counts = Counter(columns)
    duplicated = [str(name) for name, n in counts.items() if n > 1]
    duplicated += [
        m[1]
        for name in counts
        if isinstance(name, str)
        and (m := _MANGLED.fullmatch(name))
        and m[1] in _CONTRACT_NAMES
        and m[1] in counts
    ]
    if duplicated:
        raise FileFormatError(f"duplicated column names: {', '.join(dict.fromkeys(duplicated))}")
    required = [c.name for c in RECORD_COLUMNS] + (
        [c.name for c in OUTCOME_COLUMNS] if require_outcomes else []
    )
    if not any(name in counts for name in _CONTRACT_NAMES):
        raise FileFormatError(f"no record contract columns found; expected columns: {', '.join(required)}")
    missing = [name for name in required if name not in counts]
    if missing:
        raise FileFormatError(f"missing required columns: {', '.join(missing)}")


def validate_table(df: pd.DataFrame, *, require_outcomes: bool = False, row_offset: int = 0) -> Validation:
    """Check every cell of ``df`` against the record contract; never stops at the first bad row.

    Cells may be raw strings (CSV read with ``dtype=str``; surrounding whitespace is stripped) or typed
    (Parquet, API). NaN, None, NA, "" and whitespace-only cells are empty: an error except in the nullable
    columns (``crcl_ml_min``, ``ecog``), where they mean unknown. Outcome columns are checked as 0/1 whenever
    present (empty is an error there too) and must be present if ``require_outcomes``. Row numbers in errors
    are 1-based data rows plus ``row_offset`` (the offset of a streamed batch).

    Dtypes of ``clean``: ``patient_id`` (whitespace stripped), ``sex``, ``regimen`` and ``setting`` pandas'
    default ``str``; ``age``, ``start_dose_mg``, ``crcl_ml_min`` and ``ecog`` float64, NaN for unknown;
    ``dialysis``, ``cm_*``, ``prior_lines`` and the outcomes int64. Extra columns are carried through
    untouched (same values, dtype and position).

    Raises :class:`FileFormatError` for table-level problems (see :func:`check_table_columns`).
    """
    check_table_columns(list(df.columns), require_outcomes=require_outcomes)
    columns = [*RECORD_COLUMNS, *(c for c in OUTCOME_COLUMNS if c.name in df.columns)]
    n = len(df)
    typed = {}
    found: list[tuple[np.ndarray, int, str]] = []  # (positions, column index, reason) per broken rule
    for j, column in enumerate(columns):
        typed[column.name], broken = _check_column(column, df[column.name])
        found += [(np.flatnonzero(mask), j, reason) for mask, reason in broken]
    none = [np.empty(0, dtype=np.int64)]
    position = np.concatenate(none + [where for where, _, _ in found])
    column_id = np.concatenate(none + [np.full(where.size, j) for where, j, _ in found])
    reason_id = np.concatenate(none + [np.full(where.size, k) for k, (where, _, _) in enumerate(found)])
    order = np.lexsort((column_id, position))
    rejected = np.unique(position)

    keep = np.ones(n, dtype=bool)
    keep[rejected] = False
    position, column_id, reason_id = position[order], column_id[order], reason_id[order]
    patient_ids = typed["patient_id"][position].to_numpy(dtype=object, na_value=None)  # None if invalid
    errors = [
        RowError(int(p) + 1 + row_offset, columns[c].name, found[r][2], pid)
        for p, c, r, pid in zip(position, column_id, reason_id, patient_ids, strict=True)
    ]
    return Validation(clean=_clean(df, typed, keep), errors=errors, rejected=rejected, n_rows=n)


def _clean(df: pd.DataFrame, typed: dict[str, Any], keep: np.ndarray) -> pd.DataFrame:
    """The kept rows: typed contract columns, other columns untouched, in ``df``'s column order."""
    rows = None if keep.all() else np.flatnonzero(keep)  # the usual batch: nothing to drop
    columns = {}
    for name in df.columns:
        if name in typed:
            columns[name] = typed[name] if rows is None else typed[name].take(rows)
        else:  # a Series keeps pandas' copy-on-write between ``df`` and ``clean``; a taken array is a copy
            columns[name] = df[name] if rows is None else df[name].array.take(rows)
    index = df.index if rows is None else df.index.take(rows)
    return pd.DataFrame(columns, index=index, copy=False)


def _check_column(column: Column, s: pd.Series) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """Typed values of one column and, per broken rule, the mask of cells breaking it and the reason."""
    text, number, empty, boolean = _cells(s)
    expected = f"expected {column.rule()}"
    broken = [(empty, EMPTY)] if not column.nullable else []
    filled = ~empty
    if column.kind in (Kind.STRING, Kind.CATEGORY):
        text = text if text is not None else pd.Series(np.nan, index=s.index, dtype="str")
        is_text = text.notna().to_numpy()
        if column.kind is Kind.CATEGORY:
            broken.append((filled & ~text.isin(column.allowed).to_numpy(), f"unknown value; {expected}"))
        else:
            too_long = text.str.len().to_numpy(dtype=np.float64, na_value=0) > (column.maximum or np.inf)
            printable = text.str.fullmatch(_PRINTABLE).to_numpy(dtype=bool, na_value=False)
            broken += [
                (filled & ~is_text, f"not text; {expected}"),
                (is_text & too_long, f"too long; {expected}"),
                (is_text & ~too_long & ~printable, f"contains non-printable characters; {expected}"),
            ]
        values = text
    else:
        if text is not None:
            parsed = _parse_numbers(text)
            number = np.where(np.isnan(parsed), number, parsed)
        if column.kind is Kind.BINARY:
            broken.append((filled & (number != 0) & (number != 1), f"invalid value; {expected}"))
        else:
            not_number = filled & (~np.isfinite(number) | boolean)
            if column.kind is Kind.NUMBER:
                broken.append((not_number, f"not a number; {expected}"))
            else:
                not_number |= filled & (number != np.trunc(number))
                broken.append((not_number, f"not a whole number; {expected}"))
            outside = (number < column.minimum) | (number > column.maximum)
            broken.append((filled & ~not_number & outside, f"out of range; {expected}"))
        values = number
    bad = np.logical_or.reduce([mask for mask, _ in broken])
    return _typed(column, values, bad), broken


def _typed(
    column: Column, values: np.ndarray | pd.Series, bad: np.ndarray
) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """The clean dtype of a column; cells of rejected rows are placeholders (NA, NaN or 0)."""
    if column.kind in (Kind.STRING, Kind.CATEGORY):
        return values.where(~bad).array
    if column.kind is Kind.NUMBER or column.nullable:
        return np.where(bad, np.nan, values)
    return np.where(bad, 0, values).astype(np.int64)


def _cells(s: pd.Series) -> tuple[pd.Series | None, np.ndarray, np.ndarray, np.ndarray]:
    """Split one column of any dtype into ``(text, number, empty, boolean)``.

    ``text``: stripped string cells, NA elsewhere (None if the column holds no strings); ``number``: float64
    of numeric cells, NaN elsewhere; ``empty``: NaN, None, NA, "" or whitespace-only; ``boolean``: True/False.
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    n = len(s)
    if pd.api.types.is_numeric_dtype(s.dtype):  # includes bool
        number = s.to_numpy(dtype=np.float64, na_value=np.nan)
        empty = s.isna().to_numpy()
        is_bool = pd.api.types.is_bool_dtype(s.dtype)
        return None, number, empty, (~empty if is_bool else np.zeros(n, dtype=bool))
    if pd.api.types.is_string_dtype(s.dtype) and (
        s.dtype != object or pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")
    ):
        text = s.astype("str").str.strip()
        empty = (text.isna() | (text == "")).to_numpy()
        return text.where(~empty), np.full(n, np.nan), empty, np.zeros(n, dtype=bool)
    return _mixed_cells(s)


def _mixed_cells(s: pd.Series) -> tuple[pd.Series | None, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_cells` for object columns mixing strings, numbers, booleans and other objects (one by one)."""
    n = len(s)
    text = np.full(n, None, dtype=object)
    number = np.full(n, np.nan)
    empty = np.zeros(n, dtype=bool)
    boolean = np.zeros(n, dtype=bool)
    for i, v in enumerate(s.to_numpy(dtype=object)):
        if isinstance(v, str):
            text[i] = v.strip() or None
            empty[i] = text[i] is None
        elif isinstance(v, bool | np.bool_):
            number[i], boolean[i] = float(v), True
        elif isinstance(v, numbers.Real):
            number[i] = _float(v)
            empty[i] = np.isnan(number[i])
        else:
            empty[i] = v is None or v is pd.NA or v is pd.NaT
    return pd.Series(text, index=s.index, dtype="str"), number, empty, boolean


def _float(v: numbers.Real) -> float:
    try:
        return float(v)
    except OverflowError:  # a Python int beyond the float range
        return np.inf


def _parse_numbers(text: pd.Series) -> np.ndarray:
    """float64 of stripped text cells; NaN where not text or not a decimal number; "1e400" gives inf."""
    try:  # fast path: pyarrow parses the whole column but fails on any bad cell
        return pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        decimal = text.str.fullmatch(_DECIMAL).to_numpy(dtype=bool, na_value=False)
        return pc.cast(pa.array(text.where(decimal)), pa.float64()).to_numpy(zero_copy_only=False)
