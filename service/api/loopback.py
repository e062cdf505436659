"""Without API keys the app answers connections to a loopback address only, whichever server runs it.

``lenrisk serve`` refuses to listen beyond loopback without keys, but ``uvicorn --factory`` or gunicorn
can bind the app anywhere, and the ASGI lifespan is not told the address. Each request's ASGI scope is:
``server`` is the local address the connection came in on (the socket's own address, so binding
``0.0.0.0`` does not hide it). A connection that arrived on any other address gets 503. A server address
that is not an IP address (a Unix socket's path, an in-process test client's name) is local by construction.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

log = logging.getLogger("lenrisk.service")
REFUSAL = (
    "authentication is off (LENRISK_API_KEYS unset or empty), so this service answers loopback connections "
    "only; configure LENRISK_API_KEYS (see `lenrisk apikey`)"
)


def is_loopback(host: str) -> bool:
    """``localhost``, or a loopback IP address (IPv4-mapped IPv6 included)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _local(server: tuple[str, int | None] | None) -> bool:
    if server is None:
        return False
    host = server[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True  # not an IP address: a Unix socket's path, or an in-process test client
    return is_loopback(host)


class LoopbackOnly:
    """Pure ASGI middleware: 503 for connections that did not come in on a loopback address (logged once)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.warned = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" or _local(scope.get("server")):
            await self.app(scope, receive, send)
            return
        if not self.warned:
            log.error("refused a connection to %s: %s", scope.get("server"), REFUSAL)
            self.warned = True
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": REFUSAL}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
