"""Input drift over the last served records: a ring of their bin numbers, never their values.

The service records every scored contract row here (``/v1/predict``, its batch route, CDS Hooks calls):
per field its bin in the development profile (:mod:`features.drift`) and whether the predictor's
applicability check flagged it (outside the training range, or a category no training line had). Memory is
fixed: two small integers per field for each of the last ``size`` records, and the running bin counts.
Recording costs O(fields) per record; statistics and thresholds are computed when asked for
(:meth:`DriftWindow.report`, at a metrics scrape), thresholds cached per window size.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from features.drift import ALPHA, DriftProfile, DriftReport
from features.encoding import CATEGORICAL_INPUTS

#: The applicability warnings (:meth:`features.encoding.FeatureEncoder.applicability`) the window counts.
OUT_OF_RANGE, UNSEEN = "outside_training_range", "not_seen_in_training"


class DriftWindow:
    """The bins of the last ``size`` records against one development ``profile``."""

    def __init__(self, profile: DriftProfile, size: int) -> None:
        self.profile, self.size = profile, size
        self._fields = list(profile.fields.values())
        self._column = {f.name: j for j, f in enumerate(self._fields)}
        widths = [len(f.labels) for f in self._fields]
        self._offset = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        self._counts = np.zeros(sum(widths), dtype=np.int64)  # running counts, fields' bins side by side
        self._flagged_counts = np.zeros(sum(widths), dtype=np.int64)  # the same, of flagged values only
        self._bins = np.zeros((size, len(self._fields)), dtype=np.int16)  # ring: flat bin of each field
        self._flagged = np.zeros((size, len(self._fields)), dtype=np.bool_)
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
        rows, warnings = rows[-self.size :], warnings[-self.size :]
        bins = np.array([[f.bin_of(row.get(f.name)) for f in self._fields] for row in rows], dtype=np.int64)
        flat = bins + self._offset
        flagged = np.zeros(bins.shape, dtype=np.bool_)
        for i, found in enumerate(warnings):
            for w in found:
                if w["kind"] in (OUT_OF_RANGE, UNSEEN):
                    flagged[i, self._column[w["field"]]] = True
        with self._lock:
            slots = (self._next + np.arange(len(rows))) % self.size
            evicted = slots[slots < self._filled]  # the ring fills from slot 0: these hold records
            if evicted.size:
                old, was = self._bins[evicted], self._flagged[evicted]
                self._counts -= np.bincount(old.ravel(), minlength=self._counts.size)
                self._flagged_counts -= np.bincount(old[was], minlength=self._counts.size)
            self._counts += np.bincount(flat.ravel(), minlength=self._counts.size)
            self._flagged_counts += np.bincount(flat[flagged], minlength=self._counts.size)
            self._bins[slots], self._flagged[slots] = flat, flagged
            self._next = int((self._next + len(rows)) % self.size)
            self._filled = min(self.size, self._filled + len(rows))

    def report(self, alpha: float = ALPHA) -> DriftReport:
        """Every field's drift over the window (no field is drifted in an empty window)."""
        with self._lock:
            counts, flagged, n = self._counts.copy(), self._flagged_counts.copy(), self._filled
        fields = []
        for j, f in enumerate(self._fields):
            own = slice(self._offset[j], self._offset[j] + len(f.labels))
            checks: dict[str, Any] = {}
            if f.numeric:
                checks["out_of_range"] = int(flagged[own].sum())
            elif f.name in CATEGORICAL_INPUTS:
                checks["unseen"] = {v: int(c) for v, c in zip(f.labels, flagged[own], strict=True) if c}
            fields.append(self.profile.field_drift(f.name, counts[own], alpha=alpha, **checks))
        return DriftReport(n=n, alpha=alpha, development_n=self.profile.n, fields=fields)
