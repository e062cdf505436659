"""Predictions joined to the outcomes that arrived later: what outcome monitoring reads.

Two ways in: a file scored by ``lenrisk score`` (``risk_<outcome>`` columns, extra columns carried through)
with the outcome columns added, or a scored file plus a separate outcomes file joined on key columns
(a pseudonymous key, unique per row in both files). Per outcome, a row is *used* (risk in [0, 1] and label
0 or 1), *unlabelled* (empty label: not yet known; no row in the outcomes file) or *rejected* with its
reasons, one :class:`~features.errors.RowError` per broken rule as in batch scoring; the three always add up
to the rows read. Row numbers are 1-based data rows of the predictions file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import FileFormatError, RowError
from features.schema import OUTCOMES
from features.tableio import read_table

RISK_PREFIX = "risk_"
LABEL_VALUES = "0 or 1, or empty (not yet known)"
REASONS = {
    "risk": "risk is not a probability from 0 to 1",
    "label": f"outcome is not {LABEL_VALUES}",
    "order": "order value is empty or neither a number nor an ISO 8601 date",
    "key_empty": "key is empty",
    "key_predictions": "key is repeated in the predictions file",
    "key_labels": "key is repeated in the outcomes file",
}


@dataclass(frozen=True)
class OutcomeRows:
    """One outcome's usable rows in monitoring order: predicted risk ``p``, outcome ``y`` (0/1), the row
    number in the predictions file and the order value (``None`` without ``--order-by``)."""

    outcome: str
    p: np.ndarray
    y: np.ndarray
    row_numbers: np.ndarray
    order: np.ndarray | None
    read: int
    unlabelled: int
    rejected: int

    @property
    def used(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Labelled:
    """Every monitored outcome's rows, the reject lines and, for a join, what did not match."""

    outcomes: dict[str, OutcomeRows]
    rejects: list[RowError]
    join: dict[str, int] | None = None  # rows_without_outcomes, outcome_rows_unmatched, outcome_rows_repeated
    reasons: dict[str, int] = field(default_factory=dict)  # reject lines per reason


def load_labelled(
    predictions: Path,
    labels: Path | None = None,
    *,
    key: Sequence[str] = ("patient_id",),
    order_by: str | None = None,
) -> Labelled:
    """Read a scored file with outcomes (``labels`` None) or join a scored file to an outcomes file on
    ``key``, and split each outcome's rows into used, unlabelled and rejected.

    With a join, the outcome columns of the outcomes file replace any in the predictions file; rows whose key
    is empty or repeated (in either file) are rejected; predictions without an outcome row are unlabelled;
    outcome rows matching no prediction are counted. ``order_by`` sorts the rows (stably) by a column of
    numbers or ISO 8601 dates, from the predictions file or else the outcomes file.

    Raises :class:`FileFormatError` for a file that is not a scored file, or lacks the key, order or outcome
    columns.
    """
    frame = read_table(predictions)
    missing = [f"{RISK_PREFIX}{o}" for o in OUTCOMES if f"{RISK_PREFIX}{o}" not in frame.columns]
    if missing:
        raise FileFormatError(
            f"{predictions.name}: missing {', '.join(missing)}; expected a file written by lenrisk score"
        )
    n = len(frame)
    bad: dict[str, np.ndarray] = {}  # reason key -> rows breaking it, for every outcome
    join = None
    if labels is not None:
        frame, bad, join = _join(frame, read_table(labels), list(key), predictions.name, labels.name)
    order = None
    if order_by is not None:
        if order_by not in frame.columns:
            raise FileFormatError(f"no column {order_by!r} to order the rows by")
        order, bad["order"] = _order_values(frame[order_by])
    monitored = [o for o, column in OUTCOMES.items() if column in frame.columns]
    if not monitored:
        where = labels.name if labels is not None else predictions.name
        raise FileFormatError(f"{where}: no outcome column; expected {' and/or '.join(OUTCOMES.values())}")
    sequence = np.arange(n) if order is None else _stable_order(order, bad["order"])
    row_numbers = np.arange(1, n + 1)
    patient_ids = _patient_ids(frame)
    key_bad = np.logical_or.reduce([bad[k] for k in bad if k.startswith("key")] or [np.zeros(n, bool)])
    rejects: list[RowError] = []
    outcomes = {}
    for outcome in monitored:
        risk_column, label_column = f"{RISK_PREFIX}{outcome}", OUTCOMES[outcome]
        risk, risk_empty = _numbers(frame[risk_column])
        label, label_empty = _numbers(frame[label_column])
        broken = {
            **bad,
            "risk": risk_empty | ~np.isfinite(risk) | (risk < 0) | (risk > 1),
            "label": ~label_empty & ~np.isin(label, (0, 1)),
        }
        unlabelled = label_empty & ~key_bad  # a bad key hides the outcome: rejected, not unknown
        rejected = np.logical_or.reduce(list(broken.values())) & ~unlabelled
        columns = {"risk": risk_column, "label": label_column, "order": order_by}
        for reason, mask in broken.items():
            rejects += [
                RowError(int(i) + 1, columns.get(reason) or "+".join(key), REASONS[reason], patient_ids[i])
                for i in np.flatnonzero(mask & rejected)
            ]
        used = sequence[~(unlabelled | rejected)[sequence]]
        outcomes[outcome] = OutcomeRows(
            outcome=outcome,
            p=risk[used],
            y=label[used].astype(np.int8),
            row_numbers=row_numbers[used],
            order=None if order is None else order[used],
            read=n,
            unlabelled=int(unlabelled.sum()),
            rejected=int(rejected.sum()),
        )
    rejects = sorted(set(rejects), key=lambda e: (e.row_number, e.column))  # a key or order line once
    reasons = dict(Counter(e.reason for e in rejects))
    return Labelled(outcomes=outcomes, rejects=rejects, join=join, reasons=reasons)


def _join(
    frame: pd.DataFrame, outcomes: pd.DataFrame, key: list[str], left: str, right: str
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, int]]:
    """The predictions with the outcome columns of the matching outcome row, the rows to reject per reason,
    and the join's counts."""
    for name, table in ((left, frame), (right, outcomes)):
        absent = [k for k in key if k not in table.columns]
        if absent:
            raise FileFormatError(f"{name}: no key column {', '.join(absent)}")
    label_columns = [c for c in OUTCOMES.values() if c in outcomes.columns]
    if not label_columns:
        raise FileFormatError(f"{right}: no outcome column; expected {' and/or '.join(OUTCOMES.values())}")
    extra = [c for c in outcomes.columns if c not in (*frame.columns, *key, *label_columns)]  # e.g. a date
    left_key, left_empty = _keys(frame, key)
    right_key, right_empty = _keys(outcomes, key)
    right_repeated = right_key.duplicated(keep=False).to_numpy() & ~right_empty
    usable = outcomes.loc[~right_empty & ~right_repeated, label_columns + extra]
    usable.index = right_key[~right_empty & ~right_repeated].to_numpy()
    repeated_keys = set(right_key[right_repeated])
    bad = {
        "key_empty": left_empty,
        "key_predictions": left_key.duplicated(keep=False).to_numpy() & ~left_empty,
        "key_labels": left_key.isin(repeated_keys).to_numpy() & ~left_empty,
    }
    matched = left_key.isin(usable.index).to_numpy() & ~left_empty
    joined = usable.reindex(left_key.to_numpy())
    joined.index = frame.index
    merged = pd.concat(
        [frame.drop(columns=[c for c in OUTCOMES.values() if c in frame.columns]), joined], axis=1
    )
    counts = {
        "rows_without_outcomes": int((~matched & ~np.logical_or.reduce(list(bad.values()))).sum()),
        "outcome_rows_unmatched": int(
            (~right_empty & ~right_repeated & ~right_key.isin(set(left_key))).sum()
        ),
        "outcome_rows_repeated_key": int(right_repeated.sum()),
        "outcome_rows_empty_key": int(right_empty.sum()),
    }
    return merged, bad, counts


def _keys(table: pd.DataFrame, key: list[str]) -> tuple[pd.Series, np.ndarray]:
    """One string per row joining the key cells (stripped), and which rows have an empty key cell."""
    cells = [table[k].astype("string").str.strip() for k in key]
    empty = np.logical_or.reduce([(c.isna() | (c == "")).to_numpy() for c in cells])
    joined = cells[0].fillna("")
    for c in cells[1:]:
        joined = joined + "\x1f" + c.fillna("")
    return joined.astype(object), empty


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """float64 values of a column (NaN where not a number) and which cells are empty."""
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.isnan(values)
    text = column.astype("string").str.strip()
    empty = (text.isna() | (text == "")).to_numpy()
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan), empty


def _order_values(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Sortable order values (numbers, else ISO 8601 dates) and which rows have none."""
    numbers, empty = _numbers(column)
    if not np.isnan(numbers[~empty]).any():
        return numbers, empty
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        dates = column
    else:
        dates = pd.to_datetime(column.astype("string").str.strip(), format="ISO8601", errors="coerce")
    dates = pd.Series(dates).to_numpy(dtype="datetime64[ns]")
    return dates, np.isnat(dates)


def _stable_order(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Row positions sorted by value, ties in file order; rows without a value last (they are rejected)."""
    positions = np.arange(len(values))
    valid = positions[~invalid]
    return np.concatenate([valid[np.argsort(values[valid], kind="stable")], positions[invalid]])


def _patient_ids(frame: pd.DataFrame) -> list[str | None]:
    if "patient_id" not in frame.columns:
        return [None] * len(frame)
    return [None if pd.isna(v) else str(v) for v in frame["patient_id"].to_numpy(dtype=object)]
