"""API-key authentication: keys are configured as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from service.errors import ForbiddenError, UnauthorizedError


@dataclass(frozen=True)
class Client:
    """An authenticated caller: its configured name and whether it may administer the service."""

    name: str
    admin: bool = False


ANONYMOUS = Client("anonymous (authentication off)", admin=True)


def digest(key: str) -> str:
    """SHA-256 hex digest of an API key, as configured in ``LENRISK_API_KEYS``."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random API key and its digest."""
    key = secrets.token_urlsafe(32)
    return key, digest(key)


class Authenticator:
    """Resolves ``Authorization: Bearer <key>`` to a :class:`Client`; no keys configured = auth off."""

    def __init__(self, api_keys: dict[str, str], admin_keys: dict[str, str]) -> None:
        self._keys = [(d, Client(n)) for n, d in api_keys.items()]
        self._keys += [(d, Client(n, admin=True)) for n, d in admin_keys.items()]
        self.enabled = bool(self._keys)

    def authenticate(self, authorization: str | None) -> Client:
        """The client presenting ``authorization``; raises :class:`UnauthorizedError` if none matches."""
        if not self.enabled:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise UnauthorizedError("missing bearer API key")
        presented = digest(token.strip())
        match = None
        for configured, client in self._keys:  # compare against every key: no early exit timing
            if hmac.compare_digest(presented, configured):
                match = client
        if match is None:
            raise UnauthorizedError("invalid API key")
        return match

    @staticmethod
    def require_admin(client: Client) -> None:
        """Raise :class:`ForbiddenError` unless ``client`` is an admin."""
        if not client.admin:
            raise ForbiddenError("this operation needs an admin key")
