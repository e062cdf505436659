"""ASGI middleware giving every request an id, its metrics, and (for prediction routes) one audit row.

A pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs more than a prediction). For audited
routes the response start is held until the body is complete and the audit row is written; if the row
cannot be stored, a 503 is sent instead: no prediction leaves without its audit record (fail closed).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from service.api.errors import RETRY_AFTER
from service.errors import AuditUnavailableError

log = logging.getLogger("lenrisk.service")
AUDITED_PREFIXES = ("/v1/predict", "/cds-services/")


class RequestGuard:
    """Request id header, request metrics, audit of prediction requests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, client=None, audit=None)
        audited = scope["path"].startswith(AUDITED_PREFIXES)
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
                    _audit(app_state, scope, state, status)
                except AuditUnavailableError as err:
                    log.error("request %s: %s", request_id, err)
                    status = 503
                    await _unavailable(send, request_id)
                    return
                await send(start)
            await send(message)

        await self.app(scope, receive, guarded_send)
        route = getattr(scope.get("route"), "path", None)
        if route is None:  # answered before routing (e.g. 413): label by path if it is one of ours
            known = {getattr(r, "path", None) for r in scope["app"].routes}
            route = scope["path"] if scope["path"] in known else "unmatched"
        app_state.metrics.observe(route, status, time.perf_counter() - started)


def _audit(app_state: Any, scope: dict[str, Any], state: dict[str, Any], status: int) -> None:
    details = state.get("audit") or {}
    client = state.get("client")
    app_state.audit.write(
        request_id=state["request_id"],
        client=client.name if client else "unauthenticated",
        route=scope["path"],
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
