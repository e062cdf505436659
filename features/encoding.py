"""The one encoding of a contract record into model features, as a fitted transformer with JSON state.

Training, the API, batch scoring and Spark all call :meth:`FeatureEncoder.transform`; the fitted state
(imputation values, spline knots, training ranges, category counts) is plain JSON that travels inside the
registered model, so training and serving cannot disagree.

No encoded column is a function of the others or of the intercept, so every coefficient of a linear model
is identified and every field's contribution is its own:

- **age** and **creatinine clearance** as restricted cubic splines with 4 knots at Harrell's quantiles
  (:mod:`features.splines`): the value and two nonlinear terms each. Unknown CrCl is imputed with the
  training median and flagged in ``crcl_unknown``; dialysis is its own flag.
- **regimen** by its composition (``features.schema.REGIMEN_AGENTS``): ``triplet`` (three agents; seed 000:
  OR 4.84 for stopping), ``single_agent`` (lenalidomide alone) and the triplet's partner class, the
  proteasome inhibitor being the reference (RVd, the commonest triplet); Rd is the reference regimen.
- **setting** as indicators with newly diagnosed as the reference.
- **ECOG** as a number with an unknown flag; **comorbidities** as their six flags (no count beside them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import ContractError, LenriskError
from features.schema import (
    AGENT_CLASSES,
    COMORBIDITY_COLUMNS,
    REGIMEN_AGENTS,
    REGIMENS,
    SETTINGS,
    SEXES,
)
from features.splines import harrell_knots, rcs_basis

#: The regimen indicators of each contract regimen code, derived from ``features.schema.REGIMEN_AGENTS``.
REGIMEN_COMPONENTS: dict[str, dict[str, int]] = {
    regimen: {
        "single_agent": int(len(agents) == 1),
        "triplet": int(len(agents) >= 3),
        "partner_alkylator": int(any(AGENT_CLASSES[a] == "alkylator" for a in agents)),
        "partner_antibody": int(any(AGENT_CLASSES[a] == "antibody" for a in agents)),
    }
    for regimen, agents in REGIMEN_AGENTS.items()
}
_REFERENCE_SETTING = SETTINGS[0]  # newly diagnosed
#: Continuous inputs entered as restricted cubic splines, and their knot count.
SPLINES = {"age": 4, "crcl_ml_min": 4}

#: Encoded feature names, in column order, each with the contract field (group) it explains.
FEATURE_GROUPS: dict[str, str] = {
    "age": "age",
    "age_rcs1": "age",
    "age_rcs2": "age",
    "male": "sex",
    **dict.fromkeys(REGIMEN_COMPONENTS["R"], "regimen"),
    **{f"setting_{s}": "setting" for s in SETTINGS if s != _REFERENCE_SETTING},
    "start_dose_mg": "start_dose_mg",
    "crcl_ml_min": "renal_function",
    "crcl_rcs1": "renal_function",
    "crcl_rcs2": "renal_function",
    "crcl_unknown": "renal_function",
    "dialysis": "renal_function",
    "ecog": "ecog",
    "ecog_unknown": "ecog",
    "prior_lines": "prior_lines",
    **{c: "comorbidities" for c in COMORBIDITY_COLUMNS},
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_GROUPS)

#: Contract fields summarised for applicability checks (numeric: range; categorical: counts).
NUMERIC_INPUTS = ("age", "start_dose_mg", "crcl_ml_min", "ecog", "prior_lines")
CATEGORICAL_INPUTS = {"sex": SEXES, "regimen": REGIMENS, "setting": SETTINGS}
BINARY_INPUTS = ("dialysis", *COMORBIDITY_COLUMNS)

_FORMAT = "lenrisk.feature-encoder"
_VERSION = 2
_SMALL = 64  # below this many rows a dict lookup beats pandas' hashing


class EncoderStateError(LenriskError):
    """Serialised encoder state that this code cannot use (wrong format, version or features)."""


@dataclass
class FeatureEncoder:
    """Fitted encoding of contract records into :data:`FEATURE_NAMES`.

    Attributes (fitted, ending in ``_``): ``impute_`` (training medians of ``crcl_ml_min`` and ``ecog``),
    ``knots_`` (spline knots per :data:`SPLINES` input; none with fewer than 5 distinct values, and the input
    then enters linearly), ``ranges_`` (per numeric input: min, max, 0.5th
    and 99.5th percentiles, share missing), ``categories_`` (per categorical input: training count of each
    value), ``prevalence_`` (per binary input), ``n_`` (training rows).

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame([{"age": 50.0 + 3 * i, "sex": "male", "regimen": "RCd", "setting": "maintenance",
    ...     "start_dose_mg": 10.0, "crcl_ml_min": 30.0 + 7 * i, "dialysis": 0, "ecog": 1.0, "prior_lines": 0,
    ...     **{c: 0 for c in COMORBIDITY_COLUMNS}} for i in range(10)])
    >>> X = FeatureEncoder().fit(rows).transform(rows.head(1))
    >>> [float(X[0, FEATURE_NAMES.index(f)]) for f in ("triplet", "partner_alkylator", "setting_maintenance")]
    [1.0, 1.0, 1.0]
    """

    impute_: dict[str, float] = field(default_factory=dict)
    knots_: dict[str, list[float]] = field(default_factory=dict)
    ranges_: dict[str, dict[str, float]] = field(default_factory=dict)
    categories_: dict[str, dict[str, int]] = field(default_factory=dict)
    prevalence_: dict[str, float] = field(default_factory=dict)
    n_: int = 0

    feature_names = FEATURE_NAMES
    feature_groups = FEATURE_GROUPS

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        """Learn imputation values, spline knots, training ranges and category counts from validated rows."""
        if len(frame) == 0:
            raise ContractError("cannot fit the feature encoding on an empty table")
        self.n_ = len(frame)
        self.ranges_ = {}
        for name in NUMERIC_INPUTS:
            values = pd.to_numeric(frame[name], errors="raise").to_numpy(dtype=float)
            known = values[~np.isnan(values)]
            if known.size == 0:
                raise ContractError(f"cannot fit the feature encoding: {name} is unknown in every row")
            lo, hi = np.percentile(known, [0.5, 99.5])
            self.ranges_[name] = {
                "min": float(known.min()),
                "max": float(known.max()),
                "p005": float(lo),
                "p995": float(hi),
                "missing_share": float(1 - known.size / values.size),
            }
        self.impute_ = {
            name: float(np.median(frame[name].dropna().to_numpy(dtype=float)))
            for name in ("crcl_ml_min", "ecog")
        }
        self.knots_ = {name: _knots(frame[name], count) for name, count in SPLINES.items()}
        self.categories_ = {
            name: {v: int((frame[name] == v).sum()) for v in allowed}
            for name, allowed in CATEGORICAL_INPUTS.items()
        }
        self.prevalence_ = {name: float(frame[name].astype(float).mean()) for name in BINARY_INPUTS}
        return self

    def transform(self, rows: Mapping[str, Any]) -> np.ndarray:
        """Encode validated rows (a DataFrame or a mapping of column -> sequence) to a float64 matrix.

        Unknown ``crcl_ml_min``/``ecog`` may be NaN or None. Categories outside the contract raise
        :class:`ContractError` (validated input never has them).
        """
        if not self.n_:
            raise EncoderStateError("the feature encoder is not fitted")
        age = _floats(rows["age"])
        n = age.size
        # Filled feature by feature (contiguous writes), returned row-major as every consumer expects.
        X = np.empty((len(FEATURE_NAMES), n), dtype=np.float64)
        col = {name: i for i, name in enumerate(FEATURE_NAMES)}

        X[col["age"]] = age
        X[col["age_rcs1"] : col["age_rcs2"] + 1] = self._spline("age", age)
        X[col["male"]] = _codes(rows["sex"], SEXES, "sex") == SEXES.index("male")
        regimen = _codes(rows["regimen"], REGIMENS, "regimen")
        for j, name in enumerate(REGIMEN_COMPONENTS["R"]):
            X[col[name]] = _REGIMEN_TABLE[regimen, j]
        setting = _codes(rows["setting"], SETTINGS, "setting")
        for k, name in enumerate(SETTINGS):
            if name != _REFERENCE_SETTING:
                X[col[f"setting_{name}"]] = setting == k
        X[col["start_dose_mg"]] = _floats(rows["start_dose_mg"])

        crcl = _floats(rows["crcl_ml_min"])
        crcl_unknown = np.isnan(crcl)
        crcl = np.where(crcl_unknown, self.impute_["crcl_ml_min"], crcl)
        X[col["crcl_ml_min"]] = crcl
        X[col["crcl_rcs1"] : col["crcl_rcs2"] + 1] = self._spline("crcl_ml_min", crcl)
        X[col["crcl_unknown"]] = crcl_unknown
        X[col["dialysis"]] = _floats(rows["dialysis"])

        ecog = _floats(rows["ecog"])
        ecog_unknown = np.isnan(ecog)
        X[col["ecog"]] = np.where(ecog_unknown, self.impute_["ecog"], ecog)
        X[col["ecog_unknown"]] = ecog_unknown
        X[col["prior_lines"]] = _floats(rows["prior_lines"])
        first_cm = col[COMORBIDITY_COLUMNS[0]]
        for j, name in enumerate(COMORBIDITY_COLUMNS):
            X[first_cm + j] = _floats(rows[name])
        return X.T.copy()  # C order with standard strides, also for one row (BLAS paths depend on them)

    def applicability(self, rows: Mapping[str, Any]) -> list[tuple[str, str, np.ndarray]]:
        """(field, kind, per-row mask) of every check of rows against the training data: ``unknown`` (imputed
        as in training), ``outside_training_range`` (a number beyond the training min/max) and
        ``not_seen_in_training`` (a category no training line had). The service's warnings and the
        kernel's refusal of an interval both read these."""
        checks = []
        for name in NUMERIC_INPUTS:
            values = np.atleast_1d(np.asarray(rows[name], dtype=np.float64))
            unknown = np.isnan(values)
            lo, hi = self.ranges_[name]["min"], self.ranges_[name]["max"]
            checks.append((name, "unknown", unknown))
            checks.append((name, "outside_training_range", ~unknown & ((values < lo) | (values > hi))))
        for name, counts in self.categories_.items():
            unseen = {value for value, count in counts.items() if count == 0}
            values = rows[name]
            if not unseen:  # the usual case: training saw every category
                mask = np.zeros(len(values), dtype=bool)
            else:
                mask = np.fromiter((v in unseen for v in values), dtype=bool, count=len(values))
            checks.append((name, "not_seen_in_training", mask))
        return checks

    def _spline(self, name: str, values: np.ndarray) -> np.ndarray | float:
        """The nonlinear spline terms of ``values`` (features x rows); 0 without knots (linear only)."""
        knots = self.knots_[name]
        return rcs_basis(values, np.array(knots)).T if knots else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-serialisable data (no pickle)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "feature_names": list(FEATURE_NAMES),
            "feature_groups": FEATURE_GROUPS,
            "regimen_components": REGIMEN_COMPONENTS,
            "impute": self.impute_,
            "knots": self.knots_,
            "ranges": self.ranges_,
            "categories": self.categories_,
            "prevalence": self.prevalence_,
            "n": self.n_,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> FeatureEncoder:
        """Rebuild a fitted encoder, refusing state written for another feature definition."""
        if state.get("format") != _FORMAT or state.get("version") != _VERSION:
            raise EncoderStateError(f"not a {_FORMAT} v{_VERSION} state")
        if tuple(state.get("feature_names", ())) != FEATURE_NAMES:
            raise EncoderStateError("the saved encoder's features differ from this version of lenrisk's")
        if state.get("regimen_components") != REGIMEN_COMPONENTS:
            raise EncoderStateError(
                "the saved encoder's regimen table differs from this version of lenrisk's"
            )
        return cls(
            impute_=dict(state["impute"]),
            knots_={k: list(v) for k, v in state["knots"].items()},
            ranges_={k: dict(v) for k, v in state["ranges"].items()},
            categories_={k: dict(v) for k, v in state["categories"].items()},
            prevalence_=dict(state["prevalence"]),
            n_=int(state["n"]),
        )


_REGIMEN_TABLE = np.array([list(REGIMEN_COMPONENTS[r].values()) for r in REGIMENS], dtype=np.float64)


def _knots(values: pd.Series, count: int) -> list[float]:
    """Harrell's knots of the known values; none (the input enters linearly) with too few distinct values."""
    try:
        return harrell_knots(values.to_numpy(dtype=float), count).tolist()
    except ValueError:
        return []


def _floats(values: Any) -> np.ndarray:
    """A float64 array with None/NA as NaN."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.atleast_1d(np.asarray(values, dtype=np.float64))  # numpy reads None as NaN


def _codes(values: Any, categories: Sequence[str], name: str) -> np.ndarray:
    """Integer codes of ``values`` in ``categories``; a value outside them raises ContractError."""
    if isinstance(values, str):
        values = [values]
    if len(values) <= _SMALL:
        index = {c: i for i, c in enumerate(categories)}
        codes = np.array([index.get(v, -1) for v in values], dtype=np.int64)
    else:  # Arrow's hash lookup; pandas' str columns are Arrow arrays already
        try:
            text = pa.array(values, type=pa.large_string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not text (validated input always is)
            raise ContractError(f"{name}: not text; expected one of {', '.join(categories)}") from None
        found = pc.index_in(text, value_set=pa.array(categories))
        codes = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    if (codes < 0).any():
        raise ContractError(f"{name}: unknown value; expected one of {', '.join(categories)}")
    return codes
