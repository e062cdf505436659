"""Service domain errors; ``service.api.errors`` gives each its HTTP status, once."""

from __future__ import annotations

from features.errors import LenriskError


class NotReadyError(LenriskError):
    """The models are not loaded (yet): 503 with Retry-After."""


class UnauthorizedError(LenriskError):
    """No valid credentials: 401."""


class ForbiddenError(LenriskError):
    """Valid credentials without the needed role: 403."""


class AuditUnavailableError(LenriskError):
    """The audit store cannot record the request; predictions fail closed: 503."""


class ModelLoadError(LenriskError):
    """A model version could not be resolved, downloaded, verified or warmed.

    ``state`` is what ``/readyz`` tells unauthenticated callers; the message is for logs and admins.
    """

    state = "load_failed"


class RegistryUnavailableError(ModelLoadError):
    """The model registry could not be reached or queried."""

    state = "registry_unavailable"


class RegistryNotFoundError(ModelLoadError):
    """The configured registry does not exist; serving never creates one."""

    state = "registry_not_found"


class UnsafeBindError(LenriskError):
    """Listening beyond loopback without API keys."""


class InvalidSettingsError(LenriskError):
    """Settings from the environment that cannot be read or break a rule (one line, no values)."""
