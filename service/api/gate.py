"""An ASGI middleware authenticating and rate-limiting requests to protected routes before reading a body.

FastAPI parses a request body before it solves the route's dependencies, so a dependency cannot refuse an
unauthenticated request before its body is parsed (an unauthenticated caller would learn parser positions).
The route a request goes to comes from :class:`service.api.guard.RequestGuard` (the request state's
``route``); if it declares a client (:data:`service.api.deps.AUTHENTICATORS`), the request is authenticated
here, from its headers only, and then counted against the client's budget (:class:`RateLimits`); a failed
authentication is counted against its address's. Refusals are answered by :mod:`service.api.errors`
(401, 429, 503 when the CDS JWT-id store is down) without one ``receive``; the client is left in the
request state for the route's dependency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from features.errors import LenriskError
from service.api import errors
from service.api.deps import AUTHENTICATORS
from service.api.limits import RateLimitedError, RateLimits
from service.errors import UnauthorizedError

Scheme = tuple[str, Callable[[Request], Awaitable[Any]]]


class AuthGate:
    """401 or 429 for a protected route before its body is read; the client in the request state."""

    def __init__(self, app: Any, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits
        self._schemes: dict[int, Scheme | None] = {}  # by id: routes are unhashable, and live as long

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = scope.get("state", {}).get("route") if scope["type"] == "http" else None
        scheme = self._scheme(route) if route is not None else None
        if scheme is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            request.state.client = await self._authenticate(request, scheme)
        except LenriskError as err:
            if isinstance(err, RateLimitedError):
                request.app.state.metrics.rate_limited.labels(err.scope).inc()
            await errors.answer(err)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _authenticate(self, request: Request, scheme: Scheme) -> Any:
        kind, authenticate = scheme
        try:
            client = await authenticate(request)
        except UnauthorizedError:
            self.limits.hit_failed_auth(request.client.host if request.client else "unknown")
            raise
        self.limits.hit_client(kind, client.name)
        return client

    def _scheme(self, route: Any) -> Scheme | None:
        """How the callers of ``route`` authenticate: the client dependency it declares, if any."""
        if id(route) not in self._schemes:
            dependant = getattr(route, "dependant", None)  # FastAPI's own routes have none
            pending, scheme = list(dependant.dependencies if dependant else []), None
            while pending and scheme is None:
                dependency = pending.pop()
                scheme = AUTHENTICATORS.get(dependency.call)
                pending.extend(dependency.dependencies)
            self._schemes[id(route)] = scheme
        return self._schemes[id(route)]
