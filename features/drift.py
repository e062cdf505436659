"""Input drift against the development data: a profile made at training, and per contract field a statistic
whose threshold is set for a batch of the size observed.

**Profile** (``profile.json`` in the model artifact, no patient rows): per predictor its development counts
on fixed bins, plus the number of development lines. Numbers are binned at their development deciles
(distinct cut points only, so a few-valued input such as ECOG gets one bin per value) with an open bin at
each end and a bin for unknown; categories and 0/1 flags count each allowed value, zero counts included.

**Statistic**: the Jensen–Shannon distance (base 2, 0 = same distribution, 1 = disjoint) between the
development and the batch distributions over those bins, as Evidently and NannyML report it
(``shared/reference/clinical-methods.md`` §5). Unlike PSI it stays finite when a bin is empty.

**Threshold**: no fixed cut-off (PSI 0.1, JS 0.1) is right at every batch size: with 100 lines and 10 bins
sampling noise alone exceeds PSI 0.1 most of the time (§5). The threshold of a field is the ``1 - alpha/k``
quantile of the statistic's distribution when nothing changed, for a batch of *this* size: a parametric
bootstrap (Efron & Tibshirani 1993, ch. 16) draws a development sample of the development size and a batch
of the batch size, both multinomial from the development proportions, :data:`NULL_DRAWS` times. ``k`` is the
number of fields (Bonferroni, as Alibi Detect corrects its per-feature tests), so a batch where nothing
changed flags any field with probability at most ``alpha`` (:data:`ALPHA`, 5%). Lines of one patient are
alike (same sex, comorbidities, similar age), so a batch of ``n`` lines varies like fewer independent ones:
both sizes are divided by the field's design effect, measured on the development data's patients
(:func:`_design_effect`; 1.0-1.3 on the generator), assuming the batches are clustered alike.
"""

from __future__ import annotations

import json
import zlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from features.encoding import FeatureEncoder
from features.errors import ArtifactError
from features.schema import PREDICTORS, Kind

FILE = "profile.json"
_FORMAT = "lenrisk.drift-profile"
_VERSION = 1
#: Batch-level false alarm rate: the chance that a batch drawn from the development distribution flags any
#: field (before Bonferroni's division by the number of fields).
ALPHA = 0.05
#: Quantiles of the development values that cut a number's bins (deciles).
CUT_QUANTILES = np.linspace(0.1, 0.9, 9)
#: Bootstrap draws behind each threshold: at alpha/k = 0.05/15 about 67 draws lie above the quantile.
NULL_DRAWS = 20_000
STATISTIC = "jensen_shannon_distance"
UNKNOWN = "unknown"


class ProfileMissingError(ArtifactError):
    """A model registered without a development profile (before drift monitoring existed)."""


@dataclass(frozen=True)
class FieldProfile:
    """One field's development counts over its bins; ``cuts``: a number's interior cut points (bin ``i`` is
    ``[cuts[i-1], cuts[i])``, the last bin is :data:`UNKNOWN`); ``labels``: a category's values."""

    name: str
    labels: tuple[str, ...]
    counts: np.ndarray
    cuts: tuple[float, ...] | None = None
    design_effect: float = 1.0  # variance inflation by several lines per patient (:func:`_design_effect`)

    @property
    def numeric(self) -> bool:
        return self.cuts is not None

    @property
    def proportions(self) -> np.ndarray:
        return self.counts / self.counts.sum()

    def bin_of(self, value: Any) -> int:
        """The bin of one value (the service's per-request path: no numpy)."""
        if self.cuts is None:
            return self._index[value]
        if value is None or value != value:  # None or NaN: unknown
            return len(self.cuts) + 1
        return bisect_right(self.cuts, value)

    def bins(self, values: Sequence[Any] | pd.Series) -> np.ndarray:
        """The bins of many values."""
        if self.cuts is None:
            return pd.Series(values).map(self._index).to_numpy(dtype=np.int64)
        x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
        return np.where(np.isnan(x), len(self.cuts) + 1, np.searchsorted(self.cuts, x, side="right"))

    @cached_property
    def _index(self) -> dict[Any, int]:
        return _value_index(self.labels)

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "labels": list(self.labels),
            "counts": self.counts.tolist(),
            "design_effect": self.design_effect,
        }
        if self.cuts is not None:
            state["cuts"] = list(self.cuts)
        return state

    @classmethod
    def from_dict(cls, name: str, state: Mapping[str, Any]) -> FieldProfile:
        cuts = state.get("cuts")
        return cls(
            name,
            tuple(state["labels"]),
            np.asarray(state["counts"], dtype=np.int64),
            None if cuts is None else tuple(float(c) for c in cuts),
            float(state.get("design_effect", 1.0)),
        )


def _value_index(labels: tuple[str, ...]) -> dict[Any, int]:
    """Bin of each category value; a 0/1 flag's labels ``"0"``/``"1"`` also match the numbers 0 and 1."""
    index: dict[Any, int] = {label: i for i, label in enumerate(labels)}
    if labels == ("0", "1"):
        index |= {0: 0, 1: 1}
    return index


def _numeric_profile(name: str, values: pd.Series, *, integer: bool) -> FieldProfile:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    known = x[~np.isnan(x)]
    cuts = tuple(float(c) for c in np.unique(np.quantile(known, CUT_QUANTILES))) if known.size else ()
    profile = FieldProfile(
        name, (*_bin_labels(cuts, integer), UNKNOWN), np.zeros(len(cuts) + 2, np.int64), cuts
    )
    counts = np.bincount(profile.bins(values), minlength=len(cuts) + 2)
    return FieldProfile(name, profile.labels, counts, cuts)


def _bin_labels(cuts: tuple[float, ...], integer: bool) -> list[str]:
    """Readable bins: ``[a, b)`` as ``a–b``; for whole numbers ``a``, or ``a–(b-1)``."""
    if not cuts:
        return ["any"]
    if not integer:
        inner = [f"{a:g}–{b:g}" for a, b in pairwise(cuts)]
        return [f"< {cuts[0]:g}", *inner, f"≥ {cuts[-1]:g}"]
    inner = [f"{a:g}" if b - a == 1 else f"{a:g}–{b - 1:g}" for a, b in pairwise(cuts)]
    return [f"< {cuts[0]:g}", *inner, f"≥ {cuts[-1]:g}"]


@dataclass(frozen=True)
class DriftProfile:
    """The development data's distribution per predictor (:data:`features.schema.PREDICTORS`), and ``n``."""

    n: int
    fields: dict[str, FieldProfile]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> DriftProfile:
        """The profile of validated development rows (their ``patient_id`` gives the design effects)."""
        fields: dict[str, FieldProfile] = {}
        for column in PREDICTORS:
            values = frame[column.name]
            if column.kind in (Kind.NUMBER, Kind.INTEGER):
                fields[column.name] = _numeric_profile(
                    column.name, values, integer=column.kind is Kind.INTEGER
                )
            else:
                labels = column.allowed if column.kind is Kind.CATEGORY else ("0", "1")
                empty = FieldProfile(column.name, labels, np.zeros(len(labels), dtype=np.int64))
                counts = np.bincount(empty.bins(values), minlength=len(labels))
                fields[column.name] = FieldProfile(column.name, labels, counts)
        patients = pd.factorize(frame["patient_id"])[0]
        for name, f in fields.items():
            fields[name] = replace(
                f, design_effect=_design_effect(patients, f.bins(frame[name]), len(f.labels))
            )
        return cls(len(frame), fields)

    def save(self, directory: Path) -> list[str]:
        """Write ``profile.json``; return the file names written."""
        state = {
            "format": _FORMAT,
            "version": _VERSION,
            "n": self.n,
            "fields": {name: f.to_dict() for name, f in self.fields.items()},
        }
        (directory / FILE).write_text(json.dumps(state, indent=1))
        return [FILE]

    @classmethod
    def load(cls, directory: Path) -> DriftProfile:
        """Read ``profile.json`` (its digest is checked by the artifact's loader)."""
        state = json.loads((directory / FILE).read_text())
        if state.get("format") != _FORMAT or state.get("version") != _VERSION:
            raise ArtifactError(f"not a {_FORMAT} v{_VERSION} profile")
        fields = {name: FieldProfile.from_dict(name, f) for name, f in state["fields"].items()}
        if list(fields) != [c.name for c in PREDICTORS]:
            raise ArtifactError("the saved drift profile's fields differ from this version of lenrisk's")
        return cls(int(state["n"]), fields)

    def threshold(self, name: str, n: int, alpha: float = ALPHA) -> float:
        """The Bonferroni-corrected ``1 - alpha/k`` null quantile of ``name``'s statistic for a batch of
        ``n`` lines (cached per field and size)."""
        f = self.fields[name]
        level = 1 - alpha / len(self.fields)
        return _null_quantile(tuple(f.counts.tolist()), self.n, n, level, name, f.design_effect)

    def field_drift(
        self,
        name: str,
        counts: np.ndarray,
        *,
        out_of_range: int | None = None,
        unseen: Mapping[str, int] | None = None,
        alpha: float = ALPHA,
    ) -> FieldDrift:
        """One field's statistic, threshold and verdict for a batch with these bin ``counts``."""
        f, n = self.fields[name], int(counts.sum())
        value = _js(f.proportions, counts / n) if n else float("nan")
        threshold = self.threshold(name, n, alpha) if n else float("nan")
        return FieldDrift(
            field=name,
            value=value,
            threshold=threshold,
            drifted=bool(n and value > threshold),
            labels=f.labels,
            development=f.proportions.tolist(),
            batch=(counts / n).tolist() if n else [0.0] * len(f.labels),
            out_of_range_share=None if out_of_range is None else (out_of_range / n if n else 0.0),
            unseen_categories=None if unseen is None else dict(unseen),
        )


def _js(p: np.ndarray, q: np.ndarray) -> float:
    return float(jensenshannon(p, q, base=2))


def _design_effect(patients: np.ndarray, bins: np.ndarray, width: int) -> float:
    """How much several lines of one patient inflate the variance of a field's bin shares: the ratio of
    their between-patient (ratio-estimator) variance to the variance of as many independent lines, summed
    over bins (Kish's design effect; its mean divides chi-square tests of clustered counts in Rao & Scott,
    J Am Stat Assoc 1981;76:221-30). 1 when every patient has one line; never taken below 1."""
    k = int(patients.max()) + 1
    lines = np.bincount(patients, minlength=k).astype(float)
    per_patient = np.bincount(patients * width + bins, minlength=k * width).reshape(k, width).astype(float)
    total = lines.sum()
    share = per_patient.sum(axis=0) / total
    between = ((per_patient - np.outer(lines, share)) ** 2).sum(axis=0) * k / max(k - 1, 1) / total**2
    independent = share * (1 - share) / total
    return max(1.0, float(between.sum() / independent.sum())) if independent.sum() > 0 else 1.0


@lru_cache(maxsize=512)
def _null_quantile(
    counts: tuple[int, ...], n_dev: int, n: int, level: float, name: str, design_effect: float
) -> float:
    """The ``level`` quantile of the JS distance between a development sample of ``n_dev`` lines and a batch
    of ``n``, both drawn from the development proportions as that many independent lines divided by the
    ``design_effect`` (the effective sample sizes); seeded by field and size, so it is reproducible."""
    p = np.asarray(counts, dtype=float)
    p /= p.sum()
    n_dev, n = (max(1, round(size / design_effect)) for size in (n_dev, n))
    rng = np.random.default_rng([zlib.crc32(name.encode()), n_dev, n])
    dev = rng.multinomial(n_dev, p, size=NULL_DRAWS) / n_dev
    batch = rng.multinomial(n, p, size=NULL_DRAWS) / n
    null = jensenshannon(dev, batch, base=2, axis=1)
    return float(np.quantile(null, level, method="higher"))


@dataclass(frozen=True)
class FieldDrift:
    """One field's drift in one batch (its JSON is :meth:`to_dict`)."""

    field: str
    value: float
    threshold: float
    drifted: bool
    labels: tuple[str, ...]
    development: list[float]
    batch: list[float]
    out_of_range_share: float | None = None  # numbers: outside the training min-max (encoder applicability)
    unseen_categories: dict[str, int] | None = None  # categories: value -> rows, no training line had it

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": STATISTIC,
            "value": self.value,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "out_of_range_share": self.out_of_range_share,
            "unseen_categories": self.unseen_categories,
            "bins": self.labels,
            "development": self.development,
            "batch": self.batch,
        }


@dataclass(frozen=True)
class DriftReport:
    """Every field's drift in one batch of ``n`` lines, at batch-level false alarm rate ``alpha``."""

    n: int
    alpha: float
    development_n: int
    fields: list[FieldDrift]

    @property
    def drifted_fields(self) -> list[str]:
        return [f.field for f in self.fields if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "alpha": self.alpha,
            "alpha_per_field": self.alpha / len(self.fields),
            "development_n": self.development_n,
            "statistic": STATISTIC,
            "drifted_fields": self.drifted_fields,
            "fields": {f.field: f.to_dict() for f in self.fields},
        }


def compare(
    profile: DriftProfile, encoder: FeatureEncoder, rows: pd.DataFrame, *, alpha: float = ALPHA
) -> DriftReport:
    """The drift of validated contract ``rows`` against the development ``profile``; out-of-range shares
    and unseen categories are the ``encoder``'s applicability checks (the service's warnings)."""
    out_of_range: dict[str, int] = {}
    unseen: dict[str, dict[str, int]] = {}
    for name, kind, mask in encoder.applicability(rows):
        if kind == "outside_training_range":
            out_of_range[name] = int(mask.sum())
        elif kind == "not_seen_in_training":
            unseen[name] = {str(v): int(c) for v, c in rows[name][mask].value_counts().items()}
    fields = []
    for name, f in profile.fields.items():
        counts = np.bincount(f.bins(rows[name]), minlength=len(f.labels))
        fields.append(
            profile.field_drift(
                name, counts, out_of_range=out_of_range.get(name), unseen=unseen.get(name), alpha=alpha
            )
        )
    return DriftReport(n=len(rows), alpha=alpha, development_n=profile.n, fields=fields)
