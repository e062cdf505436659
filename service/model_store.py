"""Loading registered models for serving: resolve alias -> download -> verify digest -> warm.

The registry is checked before MLflow sees it (:func:`check_registry`): MLflow would create a missing
database registry, and retries an unreachable one for about 100 s.

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
from urllib.parse import urlparse

from features.model.registry import (
    DIGEST_TAG,
    MLFLOW_ENV_DEFAULTS,
    MODEL_CARD_ARTIFACT,
    SMALL_SAMPLE_TAG,
    load_registered,
)
from features.schema import COMORBIDITY_COLUMNS
from service.errors import ModelLoadError, RegistryNotFoundError, RegistryUnavailableError
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


#: Applied with ``os.environ.setdefault`` when serving: fail fast when the registry is unreachable (libpq's
#: connect timeout, in seconds, bounds each PostgreSQL connection attempt); quiet downloads.
SERVING_ENV_DEFAULTS = {
    **MLFLOW_ENV_DEFAULTS,
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PGCONNECT_TIMEOUT": "5",
}
#: The SQLAlchemy dialects MLflow keeps a registry in (its ``mlflow.store.db.db_types``).
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
#: A table every MLflow model registry has.
_REGISTRY_TABLE = "registered_models"


def _client(settings: ServiceSettings):
    for name, value in SERVING_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mlflow import MlflowClient  # first: a slow import, paid by attempts made while the registry is down

    check_registry(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri)


def check_registry(uri: str) -> None:
    """A database registry exists and answers (tracking servers are MLflow's to reach).

    Raises :class:`RegistryNotFoundError` for a missing SQLite file or a database without MLflow's tables
    (MLflow would create either), and :class:`RegistryUnavailableError` when the database does not answer
    (MLflow would retry it for about 100 s).
    """
    if urlparse(uri).scheme.split("+")[0] not in _DATABASES:
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = sqlalchemy.make_url(uri)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        raise RegistryNotFoundError(f"registry not found: no SQLite file {url.database or '(in memory)'}")
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            found = sqlalchemy.inspect(connection).has_table(_REGISTRY_TABLE)
    except Exception as err:  # the driver's own error types
        raise RegistryUnavailableError(f"registry unreachable: {_first_line(err)}") from err
    finally:
        engine.dispose()
    if not found:
        raise RegistryNotFoundError(f"registry not found: the database has no {_REGISTRY_TABLE!r} table")


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines() or [""]
    return f"{type(err).__name__}: {lines[0]}"


def _registry_error(err: Exception, doing: str) -> ModelLoadError:
    """A failed registry query as a domain error: the registry answered (not found, refused) or not."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException) and err.get_http_status_code() in (400, 403, 404):
        return ModelLoadError(f"{doing}: {_first_line(err)}")
    return RegistryUnavailableError(f"{doing}: registry unreachable: {_first_line(err)}")


def resolve_versions(settings: ServiceSettings) -> dict[str, str]:
    """The version each outcome's alias points at now."""
    client = _client(settings)
    try:
        return {
            outcome: str(client.get_model_version_by_alias(name, settings.model_alias).version)
            for outcome, name in settings.model_names.items()
        }
    except Exception as err:  # MLflow raises several types for an unreachable or empty registry
        raise _registry_error(err, f"cannot resolve alias {settings.model_alias!r}") from err


def registered_aliases(settings: ServiceSettings) -> dict[str, dict[str, str]]:
    """Per outcome, every alias of its registered model and the version it names, as they are now."""
    client = _client(settings)
    try:
        return {
            outcome: {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}
            for outcome, name in settings.model_names.items()
        }
    except Exception as err:
        raise _registry_error(err, "cannot read the model aliases") from err


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
