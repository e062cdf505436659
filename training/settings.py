"""Where training runs and registered models go: MLflow tracking settings from the environment.

Nothing happens at import time. :func:`get_settings` reads the environment when called and
:func:`configure_mlflow` applies the settings for one ``lenrisk train``/``promote`` call.

- ``MLFLOW_TRACKING_URI`` (optional): any MLflow tracking URI, e.g. ``postgresql://user@host:5432/db``
  (read as ``postgresql+psycopg2://``) or ``http://mlflow:5000``. Unset: an embedded SQLite store,
  ``sqlite:///<mlruns dir>/mlflow.db``, no server needed.
- ``LENRISK_MLRUNS_DIR`` (default ``<repository root>/mlruns``): the SQLite file and, for database-backed
  stores (SQLite, PostgreSQL, ...), the artifacts under ``artifacts/``. A tracking server keeps its own.
- ``LENRISK_EXPERIMENT_NAME`` (default ``lenrisk``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root: the parent of the ``training`` package directory.
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Applied with ``os.environ.setdefault``: an explicit setting always wins. An unreachable registry otherwise
#: blocks for minutes (7 retries, 120 s timeout by default), and MLflow's telemetry is on by default.
MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_UV_AUTO_DETECT": "false",  # requirements are pinned explicitly; do not copy the cwd's uv project
}
_SERVER_SCHEMES = ("http", "https", "databricks", "databricks-uc")


def psycopg2_url(url: str) -> str:
    """``postgresql://`` means psycopg2, the installed driver (SQLAlchemy 2.1 would pick psycopg 3)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


class TrainingSettings(BaseSettings):
    """Tracking store, artifact root and experiment of training runs."""

    model_config = SettingsConfigDict(env_prefix="LENRISK_", extra="ignore", populate_by_name=True)

    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri")
    )
    mlruns_dir: Path = REPO_ROOT / "mlruns"
    experiment_name: str = "lenrisk"

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _postgres_driver(cls, uri: str | None) -> str | None:
        return psycopg2_url(uri) if uri else uri

    @property
    def tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store in :attr:`mlruns_dir`."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlruns_dir.resolve() / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """Artifact root of a new experiment: ``<mlruns dir>/artifacts``, or None for a tracking server."""
        if urlparse(self.tracking_uri).scheme in _SERVER_SCHEMES:
            return None
        return (self.mlruns_dir.resolve() / "artifacts").as_uri()


def get_settings() -> TrainingSettings:
    """Settings read from the environment now (not cached, so a changed environment is seen)."""
    return TrainingSettings()


def configure_mlflow(settings: TrainingSettings) -> str:
    """Point MLflow at ``settings`` for this process and return the experiment id, creating it if missing.

    Sets the :data:`MLFLOW_ENV_DEFAULTS` that are not set yet, the tracking URI and the active experiment;
    a new experiment gets :attr:`TrainingSettings.artifact_location`.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
    from mlflow.telemetry import set_telemetry_client

    for name, value in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    set_telemetry_client()  # re-reads MLFLOW_DISABLE_TELEMETRY (mlflow creates its client on import)
    if settings.mlflow_tracking_uri is None:
        settings.mlruns_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        try:
            experiment_id = mlflow.create_experiment(
                settings.experiment_name, artifact_location=settings.artifact_location
            )
        except MlflowException as err:  # created concurrently by another process
            if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment_id = mlflow.get_experiment_by_name(settings.experiment_name).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
