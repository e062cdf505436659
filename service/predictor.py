"""The one predictor: both outcome models, encode -> margin -> calibrate -> explain, with applicability.

The HTTP routes, batch scoring and Spark all call :meth:`Predictor.predict_rows` on validated contract
rows, so a record gets the same probability and explanation on every path. The served probability is the
calibrated one, and each outcome's ``base_value + sum(contributions) == logit(probability)`` on the
calibrated log-odds scale (contributions are SHAP values summed per contract field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.special import expit

from features.bands import RiskBands
from features.bands import default_bands as default_bands  # re-exported for service.settings
from features.encoding import CATEGORICAL_INPUTS, FEATURE_GROUPS, FEATURE_NAMES, NUMERIC_INPUTS
from features.model.riskmodel import INTERVAL_LEVEL, Explanation, RiskModel
from features.schema import COMORBIDITIES, COMORBIDITY_COLUMNS, OUTCOMES, PREDICTOR_NAMES

#: Contract fields in the order their contributions are reported (the encoder's groups).
FIELDS: tuple[str, ...] = tuple(dict.fromkeys(FEATURE_GROUPS.values()))
# Each field's encoded features are contiguous, so per-field sums are a reduceat: exact and independent of
# how many rows are explained together (a matrix product's rounding is not).
_GROUP_STARTS = np.array([list(FEATURE_GROUPS.values()).index(g) for g in FIELDS])
if [FEATURE_GROUPS[f] for f in FEATURE_NAMES] != sorted(FEATURE_GROUPS.values(), key=FIELDS.index):
    raise RuntimeError("features of one field must be contiguous in features.encoding.FEATURE_NAMES")


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version as served: name, version, digest, metrics, card and whether it was
    developed on fewer lines than its sample-size minimum (explicitly allowed)."""

    name: str
    version: str
    model: RiskModel
    digest: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    card: str = ""
    small_sample: bool = False

    @property
    def average_risk(self) -> float | None:
        """The mean predicted risk of the development data (None for a model trained without it)."""
        return self.model.info.get("average_risk")


#: The development data's average risk per outcome, which the default bands are anchored on: the default
#: synthetic development cohort (``scripts/up``: 10,000 lines, seed 2026) has about 28% and 37%: its
#: generator's targets weighted by the setting mix (the key study, seed 000: 34 and 33 of 107
#: relapsed/refractory lines; the other settings' rates from seeds 001-004 and Larocca 2021).
DEVELOPMENT_AVERAGE_RISK: dict[str, float] = {"discontinuation": 0.284, "dose_reduction": 0.371}

#: How the default cut points are set, in words (the calculator page states it beside the average risk).
BAND_RULE = (
    "For each outcome, low is below about the average risk of the patients in the development data (that "
    "average rounded up to the next 5%) and high is from twice that: a band says how a patient compares "
    "with the average, not a clinically validated threshold. The defaults use the averages of the default "
    "synthetic development cohort, whose rates come from published studies (in the key study, 34 of 107 "
    "lines were stopped for toxicity and 33 of 107 had a dose reduction)."
)


@dataclass(frozen=True)
class OutcomePrediction:
    """One outcome's answer for one record."""

    probability: float
    risk_band: str
    base_value: float
    contributions: list[tuple[str, Any, float]]  # (field, value shown, log-odds contribution), largest first
    model: LoadedModel
    #: (lower, upper, level) of the uncertainty interval (``RiskModel.interval``: estimation uncertainty
    #: only); None for a model registered without one, or a record outside the training data (its
    #: applicability warnings say which input).
    interval: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Prediction:
    """Both outcomes' answers and the applicability warnings for one record."""

    outcomes: dict[str, OutcomePrediction]
    warnings: list[dict[str, Any]]


class Predictor:
    """Owns the loaded models of both outcomes and answers for validated contract rows."""

    def __init__(self, models: Mapping[str, LoadedModel], bands: Mapping[str, RiskBands]) -> None:
        missing = set(OUTCOMES) - set(models)
        if missing:
            raise ValueError(
                f"a predictor needs a model for every outcome; missing {', '.join(sorted(missing))}"
            )
        self.models = dict(models)
        self.bands = dict(bands)
        self._model_warnings = [
            {
                "field": outcome,
                "value": None,
                "kind": "small_development_sample",
                "message": f"the {outcome.replace('_', ' ')} model was developed on fewer lines than the "
                "minimum sample size for a reliable model; treat its risk as a rough indication",
            }
            for outcome, m in self.models.items()
            if m.small_sample
        ]
        first = next(iter(self.models.values())).model.encoder
        self._encoder = first  # training ranges for applicability: the first outcome's
        self._encoders = {
            o: first if m.model.encoder.to_dict() == first.to_dict() else m.model.encoder
            for o, m in self.models.items()
        }

    def versions(self) -> dict[str, str]:
        """Model version per outcome."""
        return {outcome: m.version for outcome, m in self.models.items()}

    def encode(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Encoded rows per outcome; both models of one training share their encoder, so encode once."""
        encoded: dict[int, np.ndarray] = {}
        for encoder in self._encoders.values():
            if id(encoder) not in encoded:
                encoded[id(encoder)] = encoder.transform(columns)
        return {outcome: encoded[id(encoder)] for outcome, encoder in self._encoders.items()}

    def explain_columns(
        self, columns: Mapping[str, Any], *, encoded: dict[str, np.ndarray] | None = None
    ) -> dict[str, tuple[Explanation, np.ndarray]]:
        """Per outcome: the SHAP explanation (calibrated logit scale) and its sums per contract field.

        ``columns`` maps each predictor name to a sequence of validated values (a DataFrame works);
        ``encoded``: :meth:`encode` of them, if the caller has it.
        """
        return self._explain(self.encode(columns) if encoded is None else encoded)

    def _explain(self, encoded: dict[str, np.ndarray]) -> dict[str, tuple[Explanation, np.ndarray]]:
        out = {}
        for outcome, loaded in self.models.items():
            explanation = loaded.model.explain_encoded(encoded[outcome])
            out[outcome] = (explanation, np.add.reduceat(explanation.values, _GROUP_STARTS, axis=1))
        return out

    def logits(
        self, columns: Mapping[str, Any], *, encoded: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Per outcome: the calibrated log-odds, without explanations (the batch fast path; the risks are
        their ``expit``, and :meth:`intervals` takes them to centre the interval without recomputing them).

        Equal to the explained path within float64 rounding (the same terms summed in another order).
        ``encoded``: :meth:`encode` of ``columns``, if the caller has it.
        """
        encoded = self.encode(columns) if encoded is None else encoded
        return {o: m.model.bulk_logit(encoded[o]) for o, m in self.models.items()}

    def intervals(
        self,
        columns: Mapping[str, Any],
        *,
        encoded: dict[str, np.ndarray] | None = None,
        logits: dict[str, np.ndarray] | None = None,
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per outcome: lower and upper bounds of the uncertainty interval (:meth:`RiskModel.interval`, the
        bounds ``/v1/predict`` returns), NaN where there is none (outside the training data, or a model
        without one). ``encoded``: :meth:`encode` of ``columns``; ``logits``: per outcome the calibrated
        log-odds the risks were served from (an explanation's ``logit``, or :meth:`logits`), so the interval
        is centred on exactly that risk without computing it again; each if the caller has it."""
        encoded = self.encode(columns) if encoded is None else encoded
        bounds = {}
        for outcome, m in self.models.items():
            logit = None if logits is None else logits[outcome]
            if m.model.has_interval:
                bounds[outcome] = m.model.interval(columns, encoded=encoded[outcome], logit=logit)
            else:  # no applicability check to pay for
                bounds[outcome] = m.model.interval_encoded(encoded[outcome], logit=logit)
        return bounds

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """Predict and explain both outcomes for validated contract rows (dicts with ``cm_*`` flags)."""
        columns = {name: [row.get(name) for row in rows] for name in PREDICTOR_NAMES}
        encoded = self.encode(columns)
        per_outcome = self._explain(encoded)
        logits = {o: explanation.logit for o, (explanation, _) in per_outcome.items()}
        bounds = self.intervals(columns, encoded=encoded, logits=logits)
        results = []
        for i, row in enumerate(rows):
            outcomes = {}
            for outcome, loaded in self.models.items():
                explanation, grouped = per_outcome[outcome]
                probability = float(expit(explanation.logit[i]))
                order = np.argsort(-np.abs(grouped[i]), kind="stable")
                outcomes[outcome] = OutcomePrediction(
                    probability=probability,
                    risk_band=self.bands[outcome].band(probability),
                    base_value=float(explanation.base),
                    contributions=[
                        (FIELDS[j], shown_value(FIELDS[j], row), float(grouped[i, j])) for j in order
                    ],
                    model=loaded,
                    interval=_interval(*bounds[outcome], i),
                )
            results.append(
                Prediction(outcomes=outcomes, warnings=self._model_warnings + self.applicability(row))
            )
        return results

    def applicability(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Inputs valid under the contract but unknown or outside what the models were trained on."""
        warnings = []
        for name, kind, mask in self._encoder.applicability(
            {k: [row.get(k)] for k in (*NUMERIC_INPUTS, *CATEGORICAL_INPUTS)}
        ):
            if mask[0]:
                warnings.append(self._warning(name, kind, row.get(name)))
        return warnings

    def applicability_flags(self, columns: Mapping[str, Any]) -> pa.Array:
        """Per row, its warnings as ``field:kind`` joined by ``;`` (empty string: none); for batch output.

        Rows are grouped by which checks they fail (a bit mask), so each distinct text is built once.
        """
        checks = self._encoder.applicability(columns)
        failed = np.zeros(len(checks[0][2]), dtype=np.int64)
        for bit, (_, _, mask) in enumerate(checks):
            failed |= mask.astype(np.int64) << bit
        masks = np.flatnonzero(np.bincount(failed))  # the combinations present
        which = np.zeros(int(failed.max(initial=0)) + 1, dtype=np.int64)
        which[masks] = np.arange(masks.size)
        texts = [
            ";".join(f"{name}:{kind}" for bit, (name, kind, _) in enumerate(checks) if m >> bit & 1)
            for m in masks.tolist()
        ]
        return pa.array(texts, pa.string()).take(which[failed])

    def _warning(self, name: str, kind: str, value: Any) -> dict[str, Any]:
        encoder = self._encoder
        if kind == "unknown":
            median = encoder.impute_[name]
            message = (
                f"{name} is unknown; the models used the training median {median:g} and flag it as unknown"
            )
            return {"field": name, "value": None, "kind": kind, "message": message}
        if kind == "outside_training_range":
            lo, hi = encoder.ranges_[name]["min"], encoder.ranges_[name]["max"]
            message = (
                f"{name} {value:g} is outside the training range {lo:g}–{hi:g}; the risk is extrapolated"
            )
            return {"field": name, "value": value, "kind": kind, "range": [lo, hi], "message": message}
        message = f"no training line had {name} {value}; the risk is extrapolated"
        return {"field": name, "value": value, "kind": kind, "message": message}


def _interval(lower: np.ndarray, upper: np.ndarray, i: int) -> tuple[float, float, float] | None:
    """Row ``i``'s (lower, upper, level), None where the kernel gives no interval (NaN)."""
    if np.isnan(lower[i]):
        return None
    return float(lower[i]), float(upper[i]), INTERVAL_LEVEL


def shown_value(name: str, row: Mapping[str, Any]) -> Any:
    """The input value(s) a contribution is about, as a clinician would read them."""
    if name == "renal_function":
        crcl = row.get("crcl_ml_min")
        crcl_text = "CrCl unknown" if crcl is None else f"CrCl {crcl:g} mL/min"
        return f"{crcl_text}{', on dialysis' if row.get('dialysis') == 1 else ''}"
    if name == "comorbidities":
        return [c for c, col in zip(COMORBIDITIES, COMORBIDITY_COLUMNS, strict=True) if row.get(col) == 1]
    return row.get(name)
