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

from features.model.registry import DIGEST_TAG, MLFLOW_ENV_DEFAULTS, MODEL_CARD_ARTIFACT
from features.model.riskmodel import RiskModel
from features.schema import COMORBIDITY_COLUMNS
from service.errors import ModelLoadError
from service.predictor import LoadedModel, Predictor
from service.settings import ServiceSettings

#: Training-run metrics shown by ``GET /v1/models``.
KEY_METRICS = (
    "cv_log_loss",
    "cv_brier",
    "cv_roc_auc",
    "test_roc_auc",
    "test_roc_auc_ci_lower",
    "test_roc_auc_ci_upper",
    "test_brier",
    "test_scaled_brier",
    "test_calibration_intercept",
    "test_calibration_slope",
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
    import mlflow

    client = _client(settings)
    versions = versions or resolve_versions(settings)
    loaded = {}
    for outcome, name in settings.model_names.items():
        version = versions[outcome]
        try:
            mv = client.get_model_version(name, version)
            digest = mv.tags.get(DIGEST_TAG)
            if not digest:
                raise ModelLoadError(f"{name} version {version} has no {DIGEST_TAG} tag; refusing to load it")
            with tempfile.TemporaryDirectory() as tmp:
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=client.get_model_version_download_uri(name, version),
                    dst_path=tmp,
                    tracking_uri=settings.tracking_uri,
                )
                model = RiskModel.load(Path(path) / "artifacts" / "risk_model", expected_digest=digest)
                card = _model_card(client, mv, tmp)
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        except ModelLoadError:
            raise
        except Exception as err:
            raise ModelLoadError(f"cannot load {name} version {version}: {err}") from err
        loaded[outcome] = LoadedModel(
            name=name,
            version=version,
            model=model,
            aliases=tuple(sorted(mv.aliases)),
            digest=digest,
            metrics={k: float(metrics[k]) for k in KEY_METRICS if k in metrics},
            card=card,
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
