"""Service settings (pydantic-settings), read from ``LENRISK_*`` environment variables when asked for.

The tracking store is the one training writes to (:class:`features.model.registry.RegistrySettings`:
``MLFLOW_TRACKING_URI`` or the embedded SQLite store under ``mlruns/``). Nothing is read at import time.

API keys are configured as SHA-256 digests, never in clear: ``LENRISK_API_KEYS='{"clinic-a": "<sha256>"}'``
(``lenrisk apikey`` makes a key and its digest). With no keys configured, the service runs without
authentication and refuses to listen anywhere but loopback.
"""

from __future__ import annotations

import re
import secrets
from functools import cached_property

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from features.model.registry import MODEL_NAMES, REPO_ROOT, RegistrySettings, psycopg2_url
from service.errors import InvalidSettingsError
from service.predictor import RiskBands

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ServiceSettings(RegistrySettings):
    """Everything the API needs: models, bands, limits, keys, audit store. An empty variable counts as
    unset (``LENRISK_API_KEYS=``: no keys)."""

    model_config = SettingsConfigDict(env_ignore_empty=True)

    discontinuation_model: str = MODEL_NAMES["discontinuation"]
    dose_reduction_model: str = MODEL_NAMES["dose_reduction"]
    model_alias: str = "champion"
    alias_poll_seconds: float = Field(default=0, ge=0, description="0 = no polling; reload on request only")

    # Risk bands (calibrated probability): low < intermediate_from <= intermediate < high_from <= high.
    # Defaults straddle the key study's rates (31.8% stopped, 30.8% reduced; seed 000).
    discontinuation_bands: tuple[float, float] = (0.20, 0.40)
    dose_reduction_bands: tuple[float, float] = (0.20, 0.40)

    max_batch_records: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    api_keys: dict[str, str] = Field(default_factory=dict, description="client name -> SHA-256 of its key")
    admin_keys: dict[str, str] = Field(default_factory=dict, description="admin name -> SHA-256 of its key")

    audit_url: str = f"sqlite:///{REPO_ROOT / 'mlruns' / 'audit.db'}"
    audit_hmac_key: SecretStr | None = Field(
        default=None, description="key of the HMAC of each audited input; random per process if unset"
    )

    @field_validator("audit_url")
    @classmethod
    def _audit_postgres_driver(cls, url: str) -> str:
        return psycopg2_url(url)

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _digests_only(cls, keys: dict[str, str]) -> dict[str, str]:
        for name, digest in keys.items():
            if not _SHA256.match(digest):
                raise ValueError(f"key {name!r}: give the SHA-256 hex digest of the key, not the key")
        return keys

    @field_validator("discontinuation_bands", "dose_reduction_bands")
    @classmethod
    def _ordered_cut_points(cls, bands: tuple[float, float]) -> tuple[float, float]:
        if not 0 < bands[0] < bands[1] < 1:
            raise ValueError("risk band cut points must satisfy 0 < intermediate < high < 1")
        return bands

    @model_validator(mode="after")
    def _admin_needs_auth(self) -> ServiceSettings:
        if self.admin_keys and not self.api_keys:
            raise ValueError("admin keys without API keys would leave predictions unauthenticated")
        return self

    @property
    def auth_enabled(self) -> bool:
        """True when API keys are configured."""
        return bool(self.api_keys)

    @property
    def model_names(self) -> dict[str, str]:
        """Registered model name per outcome."""
        return {"discontinuation": self.discontinuation_model, "dose_reduction": self.dose_reduction_model}

    @property
    def bands(self) -> dict[str, RiskBands]:
        """Risk bands per outcome."""
        return {
            "discontinuation": RiskBands(*self.discontinuation_bands),
            "dose_reduction": RiskBands(*self.dose_reduction_bands),
        }

    @cached_property
    def hmac_key(self) -> bytes:
        """The audit HMAC key (a random one, stable for this process, when none is configured)."""
        if self.audit_hmac_key is not None:
            return self.audit_hmac_key.get_secret_value().encode()
        return secrets.token_bytes(32)


def get_settings() -> ServiceSettings:
    """Settings read from the environment now; :class:`InvalidSettingsError` (one line, no values) if they
    cannot be read or break a rule."""
    try:
        return ServiceSettings()
    except ValidationError as err:
        rules = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise InvalidSettingsError(f"invalid settings: {rules}") from None
    except SettingsError as err:
        raise InvalidSettingsError(f"invalid settings: {err}") from None
