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
from typing import Annotated

from limits import parse
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from features.model.registry import MODEL_NAMES, REPO_ROOT, RegistrySettings, psycopg2_url
from service.errors import InvalidSettingsError
from service.predictor import DEVELOPMENT_AVERAGE_RISK, RiskBands, default_bands

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _default(outcome: str) -> tuple[float, float]:
    bands = default_bands(DEVELOPMENT_AVERAGE_RISK[outcome])
    return bands.intermediate, bands.high


class ServiceSettings(RegistrySettings):
    """Everything the API needs: models, bands, limits, keys, audit store. An empty variable counts as
    unset (``LENRISK_API_KEYS=``: no keys)."""

    model_config = SettingsConfigDict(env_ignore_empty=True)

    discontinuation_model: str = MODEL_NAMES["discontinuation"]
    dose_reduction_model: str = MODEL_NAMES["dose_reduction"]
    model_alias: str = "champion"
    alias_poll_seconds: float = Field(default=0, ge=0, description="0 = no polling; reload on request only")

    # Risk bands (calibrated probability): low < intermediate_from <= intermediate < high_from <= high.
    # Defaults: service.predictor.BAND_RULE on each outcome's development average. In the environment as
    # two numbers, e.g. LENRISK_DISCONTINUATION_BANDS="0.15,0.30".
    discontinuation_bands: Annotated[tuple[float, float], NoDecode] = _default("discontinuation")
    dose_reduction_bands: Annotated[tuple[float, float], NoDecode] = _default("dose_reduction")

    max_batch_records: int = Field(default=1000, ge=1)
    drift_window: int = Field(
        default=1000, ge=10, le=1_000_000, description="scored records in the input-drift gauges' window"
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # Rate limits (``limits`` notation, e.g. "600/minute"): per authenticated client, and on failed
    # authentication per address. The storage is per process unless shared, e.g. redis://host:6379 (the
    # `redis` package) for several workers.
    rate_limit_enabled: bool = True
    rate_limit_per_client: str = "600/minute"
    rate_limit_failed_auth: str = "30/minute"
    rate_limit_storage_uri: str = "memory://"

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

    @field_validator("rate_limit_per_client", "rate_limit_failed_auth")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            if parse(value).amount >= 1:
                return value
        except ValueError:
            pass
        raise ValueError(f"rate limit {value!r}: write it as e.g. 600/minute or 10/second")

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _digests_only(cls, keys: dict[str, str]) -> dict[str, str]:
        for name, digest in keys.items():
            if not _SHA256.match(digest):
                raise ValueError(f"key {name!r}: give the SHA-256 hex digest of the key, not the key")
        return keys

    @field_validator("discontinuation_bands", "dose_reduction_bands", mode="before")
    @classmethod
    def _two_numbers(cls, bands: object) -> object:
        if not isinstance(bands, str):
            return bands
        try:
            intermediate, high = (float(x) for x in bands.split(","))
        except ValueError:
            raise ValueError(
                f"risk band cut points: give two numbers separated by a comma, e.g. 0.15,0.30 (got {bands!r})"
            ) from None
        return intermediate, high

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

    @property
    def bands_configured(self) -> dict[str, bool]:
        """Per outcome: whether this deployment set the cut points (else the default rule gives them)."""
        return {o: f"{o}_bands" in self.model_fields_set for o in self.model_names}

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
