"""Loading registered models for serving: resolve alias -> download -> verify digest -> warm.

A version is served only if its artifact's SHA-256 matches the digest tagged on the model version at
registration (``features.model.registry.DIGEST_TAG``) and it answers a warm-up record with finite, in-range
probabilities. Whoever can move an alias decides what runs here, so nothing else is loaded: the artifact is
JSON and XGBoost UBJSON (``features.model.riskmodel``), never a pickle.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from features.model.registry import (
    DIGEST_TAG,
    MLFLOW_ENV_DEFAULTS,
    MODEL_CARD_ARTIFACT,
    SMALL_SAMPLE_TAG,
    load_registered,
)
from features.schema import COMORBIDITY_COLUMNS
from service.errors import ModelLoadError
from service.predictor import LoadedModel, Predictor
from service.settings import ServiceSettings

#: Training-run metrics shown by ``GET /v1/models``: the optimism-corrected (bootstrap-validated)
#: performance with its 95% intervals, and the sample size behind it.
KEY_METRICS = (
    *(
        f"validated_{m}{suffix}"
        for m in ("roc_auc", "calibration_intercept", "calibration_slope", "brier", "log_loss")
        for suffix in ("", "_ci_lower", "_ci_upper")
    ),
    "null_validated_log_loss",
    "average_risk",
    "riley_min_n",
    "effective_n",
    "n_parameters",
    "events_per_parameter",
    "applied_shrinkage",
)

WARM_UP_ROW = {
    "age": 70.0,
    "sex": "male",
    "regimen": "Rd",
    "setting": "relapsed_refractory",
    "start_dose_mg": 25.0,
    "crcl_ml_min": 70.0,
    "dialysis": 0,
    "ecog": 1,
    "prior_lines": 1,
    **dict.fromkeys(COMORBIDITY_COLUMNS, 0),
}


def _client(settings: ServiceSettings):
    for name, value in {**MLFLOW_ENV_DEFAULTS, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
        os.environ.setdefault(name, value)  # fail fast when the registry is unreachable; quiet downloads
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri)


def resolve_versions(settings: ServiceSettings) -> dict[str, str]:
    """The version each outcome's alias points at now."""
    client = _client(settings)
    try:
        return {
            outcome: str(client.get_model_version_by_alias(name, settings.model_alias).version)
            for outcome, name in settings.model_names.items()
        }
    except Exception as err:  # MLflow raises several types for an unreachable or empty registry
        raise ModelLoadError(f"cannot resolve alias {settings.model_alias!r}: {type(err).__name__}") from err


def load_predictor(settings: ServiceSettings, versions: dict[str, str] | None = None) -> Predictor:
    """Load, verify and warm the given versions (default: the configured alias) of both models."""
    client = _client(settings)
    versions = versions or resolve_versions(settings)
    loaded = {}
    for outcome, name in settings.model_names.items():
        version = versions[outcome]
        try:
            mv = client.get_model_version(name, version)
            with tempfile.TemporaryDirectory() as tmp:
                model = load_registered(client, name, version, tmp)
                card = _model_card(client, mv, tmp)
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        except Exception as err:
            raise ModelLoadError(f"cannot load {name} version {version}: {err}") from err
        loaded[outcome] = LoadedModel(
            name=name,
            version=version,
            model=model,
            aliases=tuple(sorted(mv.aliases)),
            digest=mv.tags[DIGEST_TAG],
            metrics={k: float(metrics[k]) for k in KEY_METRICS if k in metrics},
            card=card,
            small_sample=mv.tags.get(SMALL_SAMPLE_TAG) == "true",
        )
    predictor = Predictor(loaded, settings.bands)
    try:
        warm(predictor)
    except ModelLoadError:
        raise
    except Exception as err:
        raise ModelLoadError(
            f"the loaded models failed their warm-up prediction: {type(err).__name__}"
        ) from err
    return predictor


def _model_card(client, version, folder: str) -> str:
    """The model card logged with the version's training run; its registry description if there is none."""
    from mlflow.exceptions import MlflowException

    if version.run_id:
        try:
            return Path(client.download_artifacts(version.run_id, MODEL_CARD_ARTIFACT, folder)).read_text()
        except (MlflowException, OSError):  # not logged (a version registered by other means)
            pass
    return version.description or ""


def warm(predictor: Predictor) -> None:
    """Score a warm-up record; a model giving a non-finite or out-of-range answer is refused."""
    prediction = predictor.predict_rows([WARM_UP_ROW])[0]
    for outcome, answer in prediction.outcomes.items():
        if not (math.isfinite(answer.probability) and 0 < answer.probability < 1):
            raise ModelLoadError(f"{answer.model.name} gave an invalid warm-up answer for {outcome}")
