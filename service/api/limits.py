"""Request limits (OWASP API4): body size and request rates.

:class:`BodyLimitMiddleware` refuses request bodies over a size limit with 413 before anything parses them:
the body is read up to the limit first (a declared ``Content-Length`` over it is refused at once) and then
replayed to the application, so an oversized body never reaches JSON parsing.

:class:`RateLimits` counts requests in moving windows with the ``limits`` library (the engine of slowapi,
whose route decorators run after the body is parsed; the limits are applied before, by
:class:`service.api.gate.AuthGate`). Legitimate traffic is limited per authenticated client, never per
address: an EHR's or a clinic's calls share one address behind NAT. Failed authentication is limited per
address, so that guessing keys is slow without starving the clients sharing that address. A rate-limit
store that fails lets requests through (logged): the limits protect capacity, not data.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from limits import parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from features.errors import LenriskError
from service.settings import ServiceSettings

log = logging.getLogger("lenrisk.service")


class RateLimitedError(LenriskError):
    """Over a rate limit: 429 with ``Retry-After``; ``scope`` is the limit (``client`` or ``failed_auth``)."""

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(f"too many requests; retry after {retry_after} s")
        self.scope, self.retry_after = scope, retry_after


class RateLimits:
    """The per-client and the failed-authentication-per-address budgets of the settings (none if disabled)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.per_client = parse(settings.rate_limit_per_client)
        self.failed_auth = parse(settings.rate_limit_failed_auth)
        self._limiter = (
            MovingWindowRateLimiter(
                storage_from_string(settings.rate_limit_storage_uri, wrap_exceptions=True)
            )
            if settings.rate_limit_enabled
            else None
        )

    def hit_client(self, kind: str, name: str) -> None:
        """Count a request of an authenticated client; :class:`RateLimitedError` over its budget."""
        self._hit(self.per_client, "client", kind, name)

    def hit_failed_auth(self, address: str) -> None:
        """Count a failed authentication from ``address``; :class:`RateLimitedError` over the budget."""
        self._hit(self.failed_auth, "failed_auth", address)

    def _hit(self, item: Any, scope: str, *identifiers: str) -> None:
        if self._limiter is None:
            return
        try:
            if self._limiter.hit(item, scope, *identifiers):
                return
            reset = self._limiter.get_window_stats(item, scope, *identifiers).reset_time
        except StorageError as err:
            log.error(
                "rate-limit store unavailable, request not limited: %s", type(err.storage_error).__name__
            )
            return
        raise RateLimitedError(scope, max(1, math.ceil(reset - time.time())))


class BodyLimitMiddleware:
    """413 for a declared or streamed body larger than ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(send, self.max_bytes)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
