"""Row numbers of a CSV parse, the rows the parser cannot split included.

Row numbers are 1-based data rows (the header excluded): rows as the CSV parser splits them, which is the
line number minus one unless a quoted cell spans lines.
"""

from __future__ import annotations

import csv
import re
from array import array

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from features.schema import PATIENT_ID_PATTERN
from service.batch.score import REJECT_SCHEMA

_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)


class RowNumbering:
    """Numbers the rows of one CSV parse ``first``, ``first + 1``, ... including rows the parser cannot split.

    pyarrow hands such rows (too few or too many fields) to :meth:`on_invalid` with their number, in file
    order and ahead of the batch they would have been in; :meth:`take` numbers the next ``n`` parsed rows
    around them and returns the rejects up to there. ``skipped`` is how many lines the parser skipped before
    the first row (and counts in its numbers): 1 when it skips the header. Pending rejects are kept as flat
    arrays (row number, fields found, patient id), a few dozen bytes each, until :meth:`take` turns them into
    a :data:`~service.batch.score.REJECT_SCHEMA` batch.
    """

    def __init__(self, names: list[str], *, first: int = 1, skipped: int = 0) -> None:
        self._patient = names.index("patient_id")
        self._expected = len(names)
        self._offset = first - 1 - skipped  # parser's number -> row number
        self._numbers = array("q")  # pending unsplit rows, in file order
        self._fields = array("q")
        self._patients: list[str | None] = []
        self._next = first
        self.last = first - 1

    def on_invalid(self, row: pv.InvalidRow) -> str:
        """Record a row with the wrong number of fields as a reject; tell the parser to skip it."""
        if row.number is None:  # only a multi-threaded parse omits it; every parse here is serial
            raise RuntimeError("the CSV parser did not report the row number")
        self._numbers.append(row.number + self._offset)
        self._fields.append(row.actual_columns)
        self._patients.append(self._patient_id(row.text))
        return "skip"

    def _patient_id(self, text: str) -> str | None:
        fields = next(csv.reader([text]), [])
        value = fields[self._patient].strip() if self._patient < len(fields) else ""
        return value if _PATIENT_ID.fullmatch(value) else None

    def take(self, n: int) -> tuple[np.ndarray, pa.RecordBatch]:
        """Row numbers of the next ``n`` parsed rows, and the unsplit rows among, before or right after them.

        The unsplit rows right after them (up to the next parsed row) are taken too, so a run of them leaves
        with the batch it follows, or with the empty batches pyarrow yields for blocks holding no parsed row,
        instead of piling up until the next parsed row.
        """
        pending = np.array(self._numbers, dtype=np.int64)
        # the k-th pending row is taken if it comes before the end of the rows taken so far: <= next + n + k
        count = int(np.searchsorted(pending - np.arange(len(pending)), self._next + n, side="right"))
        end = self._next + n + count
        numbers = np.arange(self._next, end, dtype=np.int64)
        if count:
            numbers = np.setdiff1d(numbers, pending[:count], assume_unique=True)
        self._next = end
        self.last = max(self.last, end - 1)
        return numbers, self._rejects(count)

    def rest(self) -> pa.RecordBatch:
        """The unsplit rows after the last parsed row."""
        if self._numbers:
            self.last = max(self.last, self._numbers[-1])
        return self._rejects(len(self._numbers))

    def _rejects(self, count: int) -> pa.RecordBatch:
        """The first ``count`` pending rows as reject lines (no column; the reason names the field counts)."""
        fields = pa.array(np.array(self._fields[:count], dtype=np.int64)).cast(pa.string())
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(np.array(self._numbers[:count], dtype=np.int64)),
                pa.array(self._patients[:count], pa.string()),
                pa.repeat(pa.scalar("", pa.string()), count),
                pc.binary_join_element_wise("row has ", fields, f" fields, expected {self._expected}", ""),
            ],
            schema=REJECT_SCHEMA,
        )
        del self._numbers[:count], self._fields[:count], self._patients[:count]
        return batch
