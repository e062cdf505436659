"""What the routes depend on, declared once as typed aliases: the calling client (API key or EHR-signed
JWT) and the predictor serving now.

A route declares how its caller authenticates by depending on :data:`ClientDep` or :data:`CdsClientDep`;
:class:`service.api.gate.AuthGate` finds that declaration and authenticates the request with the matching
function of :data:`AUTHENTICATORS` before anything reads its body (FastAPI parses a body before it solves a
route's dependencies), leaving the client in the request state for the dependency to return.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.cds.security import CdsClient, JwtVerifier
from service.errors import NotReadyError, UnauthorizedError
from service.predictor import Predictor
from service.security import Client

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


async def api_key_client(request: Request) -> Client:
    """The client whose API key the request carries (401 without a valid key when keys are configured)."""
    return request.app.state.auth.authenticate(request.headers.get("authorization"))


async def cds_jwt_client(request: Request) -> CdsClient:
    """The EHR whose signed JWT authorises this CDS Hooks call (401 otherwise)."""
    verifier: JwtVerifier = request.app.state.cds_verifier
    token, header, issuer = verifier.inspect(request.headers.get("authorization"))
    audience = verifier.settings.base_url(request) + request.url.path
    replays = request.app.state.audit  # shared by every worker using the audit store
    # in a thread: a JWKS fetch and the JWT-id insert must not block the event loop
    return await run_in_threadpool(verifier.verify, token, header, issuer, audience, replays)


def _gated(request: Request) -> Any:
    client = request.state.client
    if client is None:  # the gate authenticates every route declaring a client; fail closed regardless
        raise UnauthorizedError("not authenticated")
    return client


def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Client:
    """The API client the gate authenticated (``credentials`` puts the scheme in the OpenAPI document)."""
    return _gated(request)


def cds_client(request: Request) -> CdsClient:
    """The EHR the gate authenticated by its signed JWT."""
    return _gated(request)


#: Per client dependency: the rate-limit namespace of its clients and how the gate authenticates them.
AUTHENTICATORS: dict[Callable[..., Any], tuple[str, Callable[[Request], Awaitable[Any]]]] = {
    authenticated: ("api", api_key_client),
    cds_client: ("cds", cds_jwt_client),
}


def serving(request: Request) -> Predictor:
    """The predictor serving now, captured once per request (503 until the models are loaded)."""
    predictor = request.app.state.predictor
    if predictor is None:
        raise NotReadyError("models are not loaded yet")
    return predictor


ClientDep = Annotated[Client, Depends(authenticated)]
CdsClientDep = Annotated[CdsClient, Depends(cds_client)]
PredictorDep = Annotated[Predictor, Depends(serving)]
