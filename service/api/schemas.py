"""Request and response models of the HTTP API (the request record itself is ``features.record``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from features.model.riskmodel import INTERVAL_LEVEL
from features.record import PatientRecord
from features.schema import outcome_statement
from service.predictor import LoadedModel, OutcomePrediction, Prediction, RiskBands

Value = str | float | int | list[str] | None


class Contribution(BaseModel):
    """One contract field's SHAP contribution on the calibrated log-odds scale."""

    feature: str = Field(description="contract field (renal_function = crcl_ml_min and dialysis)")
    value: Value = Field(description="the input value(s) the contribution is about")
    contribution: float = Field(description="log-odds; positive raises the risk")


class ModelRef(BaseModel):
    """The registered model version that produced an answer."""

    name: str
    version: str


class BandCutPoints(BaseModel):
    """Risk band cut points of this outcome: low < intermediate_from <= intermediate < high_from <= high.

    Each outcome has its own. By default intermediate starts at about the development data's average risk
    (rounded up to 5%) and high at twice that; a deployment may set its own.
    """

    intermediate_from: float
    high_from: float


class Interval(BaseModel):
    """Bounds of an uncertainty interval of a risk (calibrated probabilities): lower <= risk <= upper."""

    lower: float = Field(ge=0, le=1, description="lower bound of the risk")
    upper: float = Field(ge=0, le=1, description="upper bound of the risk")
    level: float = Field(gt=0, lt=1, description=f"nominal coverage ({INTERVAL_LEVEL:g} for every model)")


#: What the interval of a risk is, and is not (the OpenAPI description of ``OutcomeOut.interval``).
INTERVAL_DESCRIPTION = (
    f"the {INTERVAL_LEVEL:.0%} interval of the model's estimation uncertainty only: how much this risk would "
    "move had the model been developed on another sample of the same size (bootstrap refits of the model on "
    "resamples of the development data). It is not the patient's own uncertainty about the outcome. Null "
    "(no interval) when the record is outside the training data (an outside_training_range or "
    "not_seen_in_training warning says which input: there the risk is extrapolated and a narrow interval "
    "would mislead) or the model has none (a model version registered before intervals)"
)


class OutcomeOut(BaseModel):
    """One outcome's calibrated risk and explanation: base_value + sum(contributions) = logit(probability)."""

    probability: float = Field(
        ge=0,
        le=1,
        description="calibrated probability of the outcome during the treatment line (no fixed time "
        "window; see the outcome's description)",
    )
    risk_band: Literal["low", "intermediate", "high"]
    risk_band_cut_points: BandCutPoints
    base_value: float = Field(
        description="where the explanation starts (SHAP base value): the average log-odds of the patients "
        "the model was developed on; the contributions move it to this patient's log-odds. Its risk is not "
        "their average risk, which average_risk gives"
    )
    average_risk: float | None = Field(
        default=None, description="mean predicted risk of the patients in the development data"
    )
    interval: Interval | None = Field(description=INTERVAL_DESCRIPTION)
    contributions: list[Contribution] = Field(description="largest absolute contribution first")
    scale: Literal["log-odds"] = "log-odds"
    model: ModelRef


class ApplicabilityWarning(BaseModel):
    """An input that is unknown or outside what the models were trained on (scored, not clipped)."""

    field: str
    value: Value
    kind: Literal["unknown", "outside_training_range", "not_seen_in_training", "small_development_sample"]
    message: str
    range: list[float] | None = None


class PredictionOut(BaseModel):
    """Both risks for one record."""

    discontinuation: OutcomeOut = Field(description=outcome_statement("discontinuation"))
    dose_reduction: OutcomeOut = Field(description=outcome_statement("dose_reduction"))
    warnings: list[ApplicabilityWarning]


class PredictResponse(PredictionOut):
    """Answer to ``POST /v1/predict``."""

    request_id: str


class BatchResponse(BaseModel):
    """Answer to ``POST /v1/predict/batch``: one result per record, in order."""

    request_id: str
    results: list[PredictionOut]


class ModelOut(BaseModel):
    """A loaded model version, and the registry's aliases as they are now."""

    outcome: str
    name: str
    version: str = Field(description="the version serving")
    aliases: list[str] | None = Field(description="the aliases on the serving version now (null: unknown)")
    alias: str = Field(description="the alias this service serves")
    alias_version: str | None = Field(
        description="the version that alias names now; differs from `version` until a reload succeeds "
        "(null: unknown, or the alias is not set)"
    )
    family: str
    artifact_sha256: str
    metrics: dict[str, float]
    model_card: str
    small_development_sample: bool = Field(
        description="developed on fewer lines than the minimum sample size (allowed explicitly); never the "
        "champion by itself"
    )


class ModelsResponse(BaseModel):
    """Answer to ``GET /v1/models``."""

    models: list[ModelOut]
    registry: Literal["ok", "unavailable"] = Field(
        description="whether the registry answered for the aliases (if not, they are null)"
    )


class Readiness(BaseModel):
    """Answer to ``GET /readyz``: a state for everyone; the versions and the last error for admin keys."""

    status: Literal[
        "loading", "ready", "degraded", "registry_unavailable", "registry_not_found", "load_failed"
    ] = Field(description="degraded: a reload failed and the versions loaded before keep serving")
    versions: dict[str, str] | None = Field(default=None, description="the versions serving (admin only)")
    detail: str | None = Field(default=None, description="the last load failure (admin only)")


class ReloadResponse(BaseModel):
    """Answer to ``POST /v1/admin/reload``."""

    reloaded: bool
    versions: dict[str, str]
    previous_versions: dict[str, str]


class ErrorItem(BaseModel):
    """One broken rule: where (field path), what rule, and a message without the submitted value."""

    loc: list[str | int]
    type: str
    msg: str


class ErrorResponse(BaseModel):
    """Error body."""

    model_config = ConfigDict(extra="allow")
    detail: str | list[ErrorItem]


def batch_request_model(max_records: int) -> type[BaseModel]:
    """``{"records": [...]}`` with the configured maximum, documented in the OpenAPI schema."""
    return create_model(
        "BatchRequest",
        __config__=ConfigDict(extra="forbid", strict=True),
        records=(list[PatientRecord], Field(min_length=1, max_length=max_records)),
    )


def _interval_out(interval: tuple[float, float, float] | None) -> Interval | None:
    """Response model of a predictor's (lower, upper, level), None for no interval."""
    if interval is None:
        return None
    lower, upper, level = interval
    return Interval(lower=lower, upper=upper, level=level)


def outcome_out(prediction: OutcomePrediction, bands: RiskBands) -> OutcomeOut:
    """Response model of one outcome's prediction."""
    return OutcomeOut(
        probability=prediction.probability,
        risk_band=prediction.risk_band,
        risk_band_cut_points=BandCutPoints(intermediate_from=bands.intermediate, high_from=bands.high),
        base_value=prediction.base_value,
        average_risk=prediction.model.average_risk,
        interval=_interval_out(prediction.interval),
        contributions=[
            Contribution(feature=f, value=v, contribution=c) for f, v, c in prediction.contributions
        ],
        model=ModelRef(name=prediction.model.name, version=prediction.model.version),
    )


def prediction_out(prediction: Prediction, bands: dict[str, RiskBands]) -> dict[str, Any]:
    """Fields of a :class:`PredictionOut` for one record."""
    return {
        "discontinuation": outcome_out(prediction.outcomes["discontinuation"], bands["discontinuation"]),
        "dose_reduction": outcome_out(prediction.outcomes["dose_reduction"], bands["dose_reduction"]),
        "warnings": [ApplicabilityWarning(**w) for w in prediction.warnings],
    }


def model_out(outcome: str, loaded: LoadedModel, alias: str, registered: dict[str, str] | None) -> ModelOut:
    """Response model of a loaded model version; ``registered`` maps its registered model's aliases to the
    versions they name now (None: unknown)."""
    known = registered is not None
    return ModelOut(
        outcome=outcome,
        name=loaded.name,
        version=loaded.version,
        aliases=sorted(a for a, v in registered.items() if v == loaded.version) if known else None,
        alias=alias,
        alias_version=registered.get(alias) if known else None,
        family=loaded.model.family,
        artifact_sha256=loaded.digest,
        metrics=dict(loaded.metrics),
        model_card=loaded.card,
        small_development_sample=loaded.small_sample,
    )
