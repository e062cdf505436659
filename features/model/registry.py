"""Where registered models live and what they are called: the MLflow store, names, aliases and tags.

Training writes registered versions and the service, batch scoring and ``lenrisk promote`` read them, so
all take these from here. Nothing happens at import time: :class:`RegistrySettings` reads the environment
when it is created.

- ``MLFLOW_TRACKING_URI`` (optional): any MLflow tracking URI, e.g. ``postgresql://user@host:5432/db``
  (read as ``postgresql+psycopg2://``) or ``http://mlflow:5000``. Unset: an embedded SQLite store,
  ``sqlite:///<mlruns dir>/mlflow.db``, no server needed.
- ``LENRISK_MLRUNS_DIR`` (default ``<repository root>/mlruns``): the SQLite file and, for database-backed
  stores (SQLite, PostgreSQL, ...), the artifacts under ``artifacts/``. A tracking server keeps its own.
- ``LENRISK_EXPERIMENT_NAME`` (default ``lenrisk``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.errors import ArtifactError
from features.schema import OUTCOMES

if TYPE_CHECKING:  # the registry's names and settings stay importable without MLflow or the model code
    from mlflow import MlflowClient

    from features.model.riskmodel import RiskModel

#: The repository root: the parent of the ``features`` package directory.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Registered model name per outcome.
MODEL_NAMES = {outcome: f"lenalidomide-{outcome.replace('_', '-')}" for outcome in OUTCOMES}
CHAMPION = "champion"
CHALLENGER = "challenger"
#: Model version tags set at registration.
DIGEST_TAG = "artifact_sha256"
FAMILY_TAG = "family"
OUTCOME_TAG = "outcome"
RUN_TAG = "training_run_id"
#: Lineage tags of a version updated on local data (``lenrisk update``): the version it was updated from,
#: the update method and the SHA-256 of the local data file.
PARENT_VERSION_TAG = "parent_version"
UPDATE_METHOD_TAG = "update_method"
UPDATE_DATA_TAG = "update_data_sha256"
#: Version tag of a model developed on fewer lines than the parsimonious model needs (explicitly allowed):
#: it is flagged wherever it is shown and never becomes champion by itself.
SMALL_SAMPLE_TAG = "small_sample"
#: The metric ``lenrisk promote`` compares: the challenger's optimism-corrected log loss on its development
#: data, against the champion's log loss on the same data (:data:`CHAMPION_ON_DEVELOPMENT`).
PROMOTION_METRIC = "validated_log_loss"
CHAMPION_ON_DEVELOPMENT = "champion_log_loss_on_development"
#: Run tag naming the champion version scored on the challenger's development data.
COMPARED_CHAMPION_TAG = "compared_champion_version"
#: The full model card, logged in each outcome's training run (the version description summarises it).
MODEL_CARD_ARTIFACT = "model_card.md"

#: Applied with ``os.environ.setdefault``: an explicit setting always wins. An unreachable registry otherwise
#: blocks for minutes (7 retries, 120 s timeout by default), and MLflow's telemetry is on by default.
MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_UV_AUTO_DETECT": "false",  # requirements are pinned explicitly; do not copy the cwd's uv project
}
_SERVER_SCHEMES = ("http", "https", "databricks", "databricks-uc")


def load_registered(client: MlflowClient, name: str, version: str, folder: str) -> RiskModel:
    """Download a registered version's native artifact into ``folder`` and load it, verified against the
    SHA-256 digest tagged on the version at registration (:class:`ArtifactError` without one)."""
    import mlflow

    from features.model.riskmodel import RiskModel

    digest = client.get_model_version(name, version).tags.get(DIGEST_TAG)
    if not digest:
        raise ArtifactError(f"{name} version {version} has no {DIGEST_TAG} tag; refusing to load it")
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(name, version),
        dst_path=folder,
        tracking_uri=client.tracking_uri,
    )
    return RiskModel.load(Path(path) / "artifacts" / "risk_model", expected_digest=digest)


def psycopg2_url(url: str) -> str:
    """``postgresql://`` means psycopg2, the installed driver (SQLAlchemy 2.1 would pick psycopg 3)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


class RegistrySettings(BaseSettings):
    """Tracking store, artifact root and experiment of training runs and registered models."""

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
