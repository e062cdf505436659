"""ASGI middleware giving every request an id, its metrics, and (for prediction routes) one audit row.

A pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs more than a prediction). It finds the route
first, as the router will, so that answers given before routing (401, 429, 413) are accounted to it too;
the route that will run is left in the request state (``route``; None when the router answers 404 or 405
itself) for the middleware inside. Only routed requests are audited and counted by route, and by the
route's template only (``/cds-services/{service_id}``): a raw path is the caller's text, of any length. For
audited routes the response start is held until the body is complete and the audit row is written; if the
row cannot be stored, a 503 is sent instead: no prediction leaves without its audit record (fail closed).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match

from service.api.errors import RETRY_AFTER
from service.errors import AuditUnavailableError

log = logging.getLogger("lenrisk.service")
AUDITED_ROUTES = frozenset(
    {"/v1/predict", "/v1/predict/batch", "/cds-services/{service_id}", "/cds-services/{service_id}/feedback"}
)


class RequestGuard:
    """Request id header, request metrics by route, audit of prediction requests."""

    def __init__(self, app: Any, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        match, route = _route(self.routes, scope)
        template = route.path if route is not None else "unmatched"
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, client=None, audit=None, route=route if match else None)
        audited = template in AUDITED_ROUTES
        app_state = scope["app"].state
        held: dict[str, Any] = {}
        status = 500

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                if audited:
                    held["start"] = message
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                start = held.pop("start")
                try:
                    _audit(app_state, template, state, status)
                except AuditUnavailableError as err:
                    log.error("request %s: %s", request_id, err)
                    status = 503
                    await _unavailable(send, request_id)
                    return
                await send(start)
            await send(message)

        await self.app(scope, receive, guarded_send)
        app_state.metrics.observe(template, status, time.perf_counter() - started)


def _route(routes: Sequence[BaseRoute], scope: dict[str, Any]) -> tuple[bool, Any]:
    """(full match, route) as the router picks: the first full match, else the first match of the path alone
    (answered 405 by the router), else no route."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return True, route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return False, partial


def _audit(app_state: Any, route: str, state: dict[str, Any], status: int) -> None:
    details = state.get("audit") or {}
    client = state.get("client")
    app_state.audit.write(
        request_id=state["request_id"],
        client=client.name if client else "unauthenticated",
        route=route,
        status=status,
        model_versions=details.get("model_versions"),
        input_hmac=details.get("input_hmac"),
        outputs=details.get("outputs"),
    )


async def _unavailable(send: Any, request_id: str) -> None:
    body = json.dumps(
        {"detail": "audit store unavailable; no prediction is served without an audit record"}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", RETRY_AFTER.encode()),
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
