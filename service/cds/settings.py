"""CDS Hooks settings (pydantic-settings), read from ``LENRISK_CDS_*`` environment variables when built.

Trusted EHRs are configured per JWT issuer: its JWK Set (an HTTPS URL fetched by PyJWT's ``PyJWKClient``,
or the public keys inline), the client name written to the audit trail, and the FHIR servers the service
may call back with the ``fhirAuthorization`` token the EHR sends (an allow-list: the call-back URL comes
from the request, so anything else would let a caller point the service at internal hosts)::

    LENRISK_CDS_PUBLIC_BASE_URL=https://lenrisk.example.org
    LENRISK_CDS_ISSUERS='{"https://ehr.example.org": {"client": "ehr-a",
        "jwks_url": "https://ehr.example.org/.well-known/jwks.json",
        "fhir_servers": ["https://ehr.example.org/fhir/r4"]}}'

With no issuer configured every CDS Hooks call is refused (401).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request

#: Asymmetric JWS algorithms accepted (CDS Hooks 2.0 forbids ``none`` and every HMAC algorithm).
ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")


class IssuerConfig(BaseModel):
    """One trusted CDS client (EHR), keyed by its JWT ``iss``."""

    client: str = Field(min_length=1, max_length=128, description="name written to the audit trail")
    jwks_url: str | None = Field(default=None, description="its JWK Set URL (the only jku accepted)")
    jwks: dict[str, Any] | None = Field(default=None, description='inline JWK Set: {"keys": [...]}')
    fhir_servers: list[str] = Field(default_factory=list, description="FHIR base URLs the service may call")

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError("give exactly one of jwks_url or jwks for each issuer")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError('inline jwks must be a JWK Set: {"keys": [...]}')
        return self


class CdsSettings(BaseSettings):
    """Issuers, clock skew, the public base URL (``aud``) and FHIR call-back limits."""

    model_config = SettingsConfigDict(env_prefix="LENRISK_CDS_", extra="ignore")

    issuers: dict[str, IssuerConfig] = Field(default_factory=dict)
    algorithms: tuple[str, ...] = ("RS256", "RS384", "ES256", "ES384")
    public_base_url: str | None = Field(
        default=None,
        description="external base URL of this service (before /cds-services); the JWT aud must equal "
        "it plus the path called. Unset: the request's own URL (only behind a proxy that sets Host)",
    )
    clock_skew_seconds: int = Field(default=30, ge=0, le=300)
    max_token_lifetime_seconds: int = Field(default=300, ge=1, le=3600, description="exp - iat at most")
    jwks_cache_seconds: int = Field(default=300, ge=0)
    fhir_connect_timeout: float = Field(default=1.0, gt=0)
    fhir_read_timeout: float = Field(default=2.0, gt=0)
    fhir_max_bytes: int = Field(default=2_000_000, ge=1024)
    model_card_path: str = "/v1/models"

    def base_url(self, request: Request) -> str:
        """This service's base URL as the EHR calls it: :attr:`public_base_url`, else the request's own."""
        return (self.public_base_url or f"{request.url.scheme}://{request.url.netloc}").rstrip("/")

    @model_validator(mode="after")
    def _asymmetric_only(self) -> CdsSettings:
        bad = [a for a in self.algorithms if a not in ASYMMETRIC]
        if bad:
            raise ValueError(f"only asymmetric JWS algorithms are allowed, not {', '.join(bad)}")
        return self
