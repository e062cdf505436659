"""The one encoding of a contract record into model features, as a fitted transformer with JSON state.

Training, the API, batch scoring and Spark all call :meth:`FeatureEncoder.transform`; the fitted state
(imputation values, training ranges, category counts) is plain JSON that travels inside the registered
model, so training and serving cannot disagree.

Derived features
----------------
- ``n_agents`` and partner classes from the regimen code (``features.schema.REGIMEN_AGENTS``), e.g.
  ``RCd`` = 3 agents with an alkylator. The key study (seed 000) found triple combinations raise the odds
  of stopping for toxicity (OR 4.84).
- ``renal_category``: 0 = CrCl >= 60, 1 = 30–59, 2 = < 30, 3 = on dialysis (KDIGO-style bands; the
  starting-dose rule of seed 002 changes at 50 and at < 30 with dialysis, so the continuous value is kept
  too). Unknown CrCl is imputed with the training median and flagged in ``crcl_unknown``.
- ``cm_count``: number of comorbidities present.
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
    PARTNER_CLASSES,
    REGIMEN_AGENTS,
    REGIMENS,
    SETTINGS,
    SEXES,
)

#: Number of agents and partner classes of each contract regimen code (``features.schema.REGIMEN_AGENTS``).
REGIMEN_COMPONENTS: dict[str, dict[str, int]] = {
    regimen: {
        "n_agents": len(agents),
        **{c: int(any(AGENT_CLASSES[a] == c for a in agents)) for c in PARTNER_CLASSES},
    }
    for regimen, agents in REGIMEN_AGENTS.items()
}
#: Encoded feature names, in column order, each with the contract field (group) it explains.
FEATURE_GROUPS: dict[str, str] = {
    "age": "age",
    "male": "sex",
    "n_agents": "regimen",
    **{f"partner_{p}": "regimen" for p in PARTNER_CLASSES},
    **{f"setting_{s}": "setting" for s in SETTINGS},
    "start_dose_mg": "start_dose_mg",
    "crcl_ml_min": "renal_function",
    "crcl_unknown": "renal_function",
    "renal_category": "renal_function",
    "dialysis": "renal_function",
    "ecog": "ecog",
    "ecog_unknown": "ecog",
    "prior_lines": "prior_lines",
    **{c: "comorbidities" for c in COMORBIDITY_COLUMNS},
    "cm_count": "comorbidities",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_GROUPS)

#: Contract fields summarised for applicability checks (numeric: range; categorical: counts).
NUMERIC_INPUTS = ("age", "start_dose_mg", "crcl_ml_min", "ecog", "prior_lines")
CATEGORICAL_INPUTS = {"sex": SEXES, "regimen": REGIMENS, "setting": SETTINGS}
BINARY_INPUTS = ("dialysis", *COMORBIDITY_COLUMNS)

_FORMAT = "lenrisk.feature-encoder"
_VERSION = 1
_SMALL = 64  # below this many rows a dict lookup beats pandas' hashing


class EncoderStateError(LenriskError):
    """Serialised encoder state that this code cannot use (wrong format, version or features)."""


@dataclass
class FeatureEncoder:
    """Fitted encoding of contract records into :data:`FEATURE_NAMES`.

    Attributes (fitted, ending in ``_``): ``impute_`` (training medians of ``crcl_ml_min`` and ``ecog``),
    ``ranges_`` (per numeric input: min, max, 0.5th and 99.5th percentiles, share missing),
    ``categories_`` (per categorical input: training count of each value), ``prevalence_`` (per binary
    input), ``n_`` (training rows).

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame([{"age": 70.0, "sex": "male", "regimen": "RCd", "setting": "maintenance",
    ...     "start_dose_mg": 10.0, "crcl_ml_min": 45.0, "dialysis": 0, "ecog": 1.0, "prior_lines": 0,
    ...     **{c: 0 for c in COMORBIDITY_COLUMNS}}])
    >>> X = FeatureEncoder().fit(rows).transform(rows)
    >>> float(X[0, FEATURE_NAMES.index("n_agents")]), float(X[0, FEATURE_NAMES.index("renal_category")])
    (3.0, 1.0)
    """

    impute_: dict[str, float] = field(default_factory=dict)
    ranges_: dict[str, dict[str, float]] = field(default_factory=dict)
    categories_: dict[str, dict[str, int]] = field(default_factory=dict)
    prevalence_: dict[str, float] = field(default_factory=dict)
    n_: int = 0

    feature_names = FEATURE_NAMES
    feature_groups = FEATURE_GROUPS

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        """Learn imputation values, training ranges and category counts from validated rows."""
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
        X[col["male"]] = _codes(rows["sex"], SEXES, "sex") == SEXES.index("male")
        regimen = _codes(rows["regimen"], REGIMENS, "regimen")
        X[col["n_agents"]] = _REGIMEN_TABLE[regimen, 0]
        for j, partner in enumerate(PARTNER_CLASSES, start=1):
            X[col[f"partner_{partner}"]] = _REGIMEN_TABLE[regimen, j]
        setting = _codes(rows["setting"], SETTINGS, "setting")
        for k, name in enumerate(SETTINGS):
            X[col[f"setting_{name}"]] = setting == k
        X[col["start_dose_mg"]] = _floats(rows["start_dose_mg"])

        crcl = _floats(rows["crcl_ml_min"])
        crcl_unknown = np.isnan(crcl)
        crcl = np.where(crcl_unknown, self.impute_["crcl_ml_min"], crcl)
        dialysis = _floats(rows["dialysis"])
        X[col["crcl_ml_min"]] = crcl
        X[col["crcl_unknown"]] = crcl_unknown
        X[col["renal_category"]] = np.where(dialysis == 1, 3, np.select([crcl >= 60, crcl >= 30], [0, 1], 2))
        X[col["dialysis"]] = dialysis

        ecog = _floats(rows["ecog"])
        ecog_unknown = np.isnan(ecog)
        X[col["ecog"]] = np.where(ecog_unknown, self.impute_["ecog"], ecog)
        X[col["ecog_unknown"]] = ecog_unknown
        X[col["prior_lines"]] = _floats(rows["prior_lines"])
        first_cm = col[COMORBIDITY_COLUMNS[0]]
        for j, name in enumerate(COMORBIDITY_COLUMNS):
            X[first_cm + j] = _floats(rows[name])
        X[col["cm_count"]] = X[first_cm : first_cm + len(COMORBIDITY_COLUMNS)].sum(axis=0)
        return X.T.copy()  # C order with standard strides, also for one row (BLAS paths depend on them)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-serialisable data (no pickle)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "feature_names": list(FEATURE_NAMES),
            "feature_groups": FEATURE_GROUPS,
            "regimen_components": REGIMEN_COMPONENTS,
            "impute": self.impute_,
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
            ranges_={k: dict(v) for k, v in state["ranges"].items()},
            categories_={k: dict(v) for k, v in state["categories"].items()},
            prevalence_=dict(state["prevalence"]),
            n_=int(state["n"]),
        )


_REGIMEN_TABLE = np.array(
    [
        [REGIMEN_COMPONENTS[r]["n_agents"], *(REGIMEN_COMPONENTS[r][p] for p in PARTNER_CLASSES)]
        for r in REGIMENS
    ],
    dtype=np.float64,
)


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
