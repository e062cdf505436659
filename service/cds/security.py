"""CDS Hooks client authentication: the EHR-signed JWT on every call, verified with PyJWT.

Rules (CDS Hooks 2.0 "Trusting CDS Clients"; SMART backend services for lifetime and replay):

- header ``alg`` from the configured asymmetric allow-list only (``none`` and HMAC are refused before any
  key is looked up), ``typ`` = JWT, ``kid`` required; the key must suit that ``alg`` (its type and curve,
  and its own ``alg`` if the JWK names one);
- ``iss`` must be a configured issuer; its keys come from the configured inline JWK Set or its configured
  JWKS URL. A ``jku`` header is accepted only if it equals that configured URL and is never fetched
  otherwise (an attacker-chosen URL would be SSRF);
- ``aud`` must equal the URL called (configured public base URL + path); ``exp``, ``iat`` and ``jti`` are
  required; ``iat`` not in the future and ``exp`` at most ``max_token_lifetime_seconds`` after it, with
  ``clock_skew_seconds`` leeway;
- a ``jti`` seen before for the same issuer (until its ``exp``) is a replay. JWT ids are stored in the
  audit database, so every worker and replica sharing it refuses a replay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from service.cds.settings import CdsSettings, IssuerConfig
from service.errors import UnauthorizedError


class InvalidJwtError(UnauthorizedError):
    """A CDS Hooks call without a valid EHR-signed JWT: 401."""


@dataclass(frozen=True)
class CdsClient:
    """A verified CDS client; ``name`` is what the audit trail records."""

    name: str
    issuer: str
    tenant: str | None = None
    admin: bool = False


class ReplayStore(Protocol):
    """Where JWT ids are remembered until they expire (the audit database: :meth:`AuditLog.first_use`)."""

    def first_use(self, issuer: str, jti: str, expires: float) -> bool: ...


class _PublishedJwksClient(jwt.PyJWKClient):
    """PyJWKClient that also keeps the JWKs of its last fetch as published (with their ``alg``, if any)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.published: dict[str, dict[str, Any]] = {}

    def fetch_data(self) -> Any:
        data = super().fetch_data()
        self.published = {
            k["kid"]: k
            for k in data.get("keys", [])
            if isinstance(k, dict) and "kid" in k and k.get("use", "sig") == "sig"
        }
        return data


class _Keys:
    """The signing keys of one issuer, by ``kid``, each bound to the algorithm of the token it verifies.

    PyJWT binds a JWK without ``alg`` to one algorithm (RS256 for any RSA key), so a key is built for the
    token's (allow-listed) algorithm instead: a JWK naming its ``alg`` verifies only that algorithm, one
    without verifies any algorithm its key type and curve suit (RFC 7517 4.4).
    """

    def __init__(self, config: IssuerConfig, cache_seconds: int) -> None:
        self.config = config
        self._inline: dict[str, dict[str, Any]] = {}
        self._client: _PublishedJwksClient | None = None
        if config.jwks is not None:
            usable = {key.key_id for key in jwt.PyJWKSet.from_dict(config.jwks).keys if key.key_id}
            self._inline = {k["kid"]: k for k in config.jwks["keys"] if k.get("kid") in usable}
        else:
            self._client = _PublishedJwksClient(
                str(config.jwks_url), cache_keys=True, lifespan=max(cache_seconds, 1), timeout=5
            )

    def get(self, kid: str, alg: str) -> jwt.PyJWK:
        """The key ``kid`` for verifying a token signed with ``alg``; raises InvalidJwtError."""
        if self._client is not None:
            try:
                self._client.get_signing_key(kid)
            except jwt.PyJWKClientError as err:
                raise InvalidJwtError(
                    f"no key {kid!r} in the issuer's JWK Set ({type(err).__name__})"
                ) from None
            jwk = self._client.published.get(kid)
        else:
            jwk = self._inline.get(kid)
        if jwk is None:
            raise InvalidJwtError("the JWT kid is not one of the issuer's configured keys")
        if jwk.get("alg", alg) != alg:
            raise InvalidJwtError(f"the JWT algorithm {alg} is not the one its key names")
        try:
            return jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise InvalidJwtError(f"the JWT algorithm {alg} does not suit its key's type") from None


class JwtVerifier:
    """Verifies the ``Authorization: Bearer <JWT>`` of CDS Hooks calls against the configured issuers."""

    def __init__(self, settings: CdsSettings) -> None:
        self.settings = settings
        self._issuers = {
            iss: _Keys(cfg, settings.jwks_cache_seconds) for iss, cfg in settings.issuers.items()
        }

    def issuer_config(self, issuer: str) -> IssuerConfig:
        """The configuration of a verified issuer."""
        return self._issuers[issuer].config

    def inspect(self, authorization: str | None) -> tuple[str, dict[str, Any], str]:
        """(token, header, issuer) checked before any key is used; raises InvalidJwtError."""
        if not self._issuers:
            raise InvalidJwtError("no trusted CDS clients are configured (LENRISK_CDS_ISSUERS)")
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidJwtError("missing bearer JWT")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidJwtError("malformed JWT") from None
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise InvalidJwtError(f"JWT algorithm {alg!r} is not accepted (asymmetric algorithms only)")
        if str(header.get("typ", "")).upper() != "JWT":
            raise InvalidJwtError("JWT header typ must be JWT")
        if not isinstance(header.get("kid"), str):
            raise InvalidJwtError("JWT header kid is required")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or issuer not in self._issuers:
            raise InvalidJwtError("JWT issuer is not a trusted CDS client")
        jku = header.get("jku")
        if jku is not None and jku != self._issuers[issuer].config.jwks_url:
            raise InvalidJwtError("JWT jku is not the issuer's registered JWK Set URL")
        return token, header, issuer

    def verify(
        self, token: str, header: dict[str, Any], issuer: str, audience: str, replays: ReplayStore
    ) -> CdsClient:
        """Signature and claims of an inspected token, its ``jti`` recorded in ``replays``; raises
        InvalidJwtError."""
        key = self._issuers[issuer].get(header["kid"], header["alg"])
        skew = self.settings.clock_skew_seconds
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[header["alg"]],
                audience=audience,
                issuer=issuer,
                leeway=skew,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidJwtError("JWT has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidJwtError("JWT aud is not the URL called") from None
        except jwt.PyJWTError as err:
            raise InvalidJwtError(f"invalid JWT ({type(err).__name__})") from None
        now = time.time()
        iat, exp = float(claims["iat"]), float(claims["exp"])
        if iat > now + skew:
            raise InvalidJwtError("JWT iat is in the future")
        if exp - iat > self.settings.max_token_lifetime_seconds:
            raise InvalidJwtError(
                f"JWT lifetime exceeds {self.settings.max_token_lifetime_seconds} s (exp - iat)"
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise InvalidJwtError("JWT jti must be a non-empty string")
        if not replays.first_use(issuer, jti, exp + skew):
            raise InvalidJwtError("JWT jti has been used already (replay)")
        tenant = claims.get("tenant") if isinstance(claims.get("tenant"), str) else None
        return CdsClient(name=self._issuers[issuer].config.client, issuer=issuer, tenant=tenant)
