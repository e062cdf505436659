"""Input drift over the last served records: a ring of their bin numbers, never their values.

The service records every scored contract row here (``/v1/predict``, its batch route, CDS Hooks calls):
per field its bin in the development profile (:mod:`features.drift`) and whether the predictor's
applicability check flagged it (outside the training range, or a category no training line had). Memory is
fixed: one 16-bit code per field for each of the last ``size`` records, and the running bin counts.
Recording costs O(fields) per record; statistics and thresholds are computed when asked for
(:meth:`DriftWindow.report`, at a metrics scrape), thresholds cached per window size.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from features.drift import ALPHA, DriftProfile, DriftReport
from features.encoding import CATEGORICAL_INPUTS

#: The applicability warnings (:meth:`features.encoding.FeatureEncoder.applicability`) the window counts.
OUT_OF_RANGE, UNSEEN = "outside_training_range", "not_seen_in_training"
_FLAG, _BIN = 1 << 15, (1 << 15) - 1  # a ring code: the flat bin, top bit set when flagged


class DriftWindow:
    """The bins of the last ``size`` records against one development ``profile``.

    Plain Python on the request path (a single row is the common case, where numpy's per-call overhead
    would dominate): each record is one code per field in an ``array('H')`` ring, its flat bin with the top
    bit set when the applicability check flagged it; running counts are lists of ints.
    """

    def __init__(self, profile: DriftProfile, size: int) -> None:
        self.profile, self.size = profile, size
        self._fields = list(profile.fields.values())
        self._column = {f.name: j for j, f in enumerate(self._fields)}
        widths = [len(f.labels) for f in self._fields]
        self._offsets = [sum(widths[:j]) for j in range(len(widths))]
        self._counts = [0] * sum(widths)  # running counts, the fields' bins side by side
        self._flagged_counts = [0] * sum(widths)  # the same, of flagged values only
        self._ring = array("H", bytes(2 * size * len(self._fields)))
        self._next, self._filled = 0, 0
        self._lock = threading.Lock()

    @property
    def n(self) -> int:
        """Records in the window now."""
        return self._filled

    def observe(
        self, rows: Sequence[Mapping[str, Any]], warnings: Sequence[Sequence[Mapping[str, Any]]]
    ) -> None:
        """Add validated contract rows and each row's applicability warnings (``{"field", "kind"}``)."""
        fields = list(zip(self._fields, self._offsets, strict=True))
        entries = []
        for row, found in zip(rows[-self.size :], warnings[-self.size :], strict=True):
            flagged = {self._column[w["field"]] for w in found if w["kind"] in (OUT_OF_RANGE, UNSEEN)}
            entries.append(
                array(
                    "H",
                    [
                        (offset + f.bin_of(row.get(f.name))) | (_FLAG if j in flagged else 0)
                        for j, (f, offset) in enumerate(fields)
                    ],
                )
            )
        width, counts, flagged_counts = len(fields), self._counts, self._flagged_counts
        with self._lock:
            for entry in entries:
                start = self._next * width
                if self._filled == self.size:  # full: the record in this slot leaves the window
                    for code in self._ring[start : start + width]:
                        counts[code & _BIN] -= 1
                        if code & _FLAG:
                            flagged_counts[code & _BIN] -= 1
                for code in entry:
                    counts[code & _BIN] += 1
                    if code & _FLAG:
                        flagged_counts[code & _BIN] += 1
                self._ring[start : start + width] = entry
                self._next = (self._next + 1) % self.size
                self._filled = min(self.size, self._filled + 1)

    def report(self, alpha: float = ALPHA) -> DriftReport:
        """Every field's drift over the window (no field is drifted in an empty window)."""
        with self._lock:
            counts, flagged, n = np.array(self._counts), np.array(self._flagged_counts), self._filled
        fields = []
        for f, offset in zip(self._fields, self._offsets, strict=True):
            own = slice(offset, offset + len(f.labels))
            checks: dict[str, Any] = {}
            if f.numeric:
                checks["out_of_range"] = int(flagged[own].sum())
            elif f.name in CATEGORICAL_INPUTS:
                checks["unseen"] = {v: int(c) for v, c in zip(f.labels, flagged[own], strict=True) if c}
            fields.append(self.profile.field_drift(f.name, counts[own], alpha=alpha, **checks))
        return DriftReport(n=n, alpha=alpha, development_n=self.profile.n, fields=fields)
