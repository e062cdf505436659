"""Row numbers of a CSV parse, the rows the parser cannot split into the header's fields included.

Row numbers are 1-based data rows (the header excluded): rows as the CSV parser splits them, which is the
line number minus one unless a quoted cell spans lines.
"""

from __future__ import annotations

import csv
import re
from collections import deque

import numpy as np
import pyarrow.csv as pv

from features.errors import RowError
from features.schema import PATIENT_ID_PATTERN

_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)


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
        """Row numbers of the next ``n`` parsed rows, and the unsplit rows among, before or right after them.

        The unsplit rows right after them (up to the next parsed row) are taken too, so a run of them leaves
        with the batch it follows, or with the empty batches pyarrow yields for blocks holding no parsed row,
        instead of piling up until the next parsed row.
        """
        end = self._next + n
        unsplit = []
        while self._pending and self._pending[0].row_number <= end:
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
