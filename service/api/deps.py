"""What the routes depend on, declared once as typed aliases: the calling client (API key or EHR-signed
JWT) and the predictor serving now."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.cds.security import CdsClient, JwtVerifier
from service.errors import NotReadyError
from service.predictor import Predictor
from service.security import Client

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Client:
    """The calling client (401 without a valid key when keys are configured)."""
    header = f"Bearer {credentials.credentials}" if credentials else None
    client = request.app.state.auth.authenticate(header)
    request.state.client = client
    return client


def serving(request: Request) -> Predictor:
    """The predictor serving now, captured once per request (503 until the models are loaded)."""
    predictor = request.app.state.predictor
    if predictor is None:
        raise NotReadyError("models are not loaded yet")
    return predictor


async def cds_client(request: Request) -> CdsClient:
    """The EHR whose signed JWT authorises this CDS Hooks call (401 otherwise)."""
    verifier: JwtVerifier = request.app.state.cds_verifier
    token, header, issuer = verifier.inspect(request.headers.get("authorization"))
    audience = verifier.settings.base_url(request) + request.url.path
    replays = request.app.state.audit  # shared by every worker using the audit store
    # in a thread: a JWKS fetch and the JWT-id insert must not block the event loop
    client = await run_in_threadpool(verifier.verify, token, header, issuer, audience, replays)
    request.state.client = client
    return client


ClientDep = Annotated[Client, Depends(authenticated)]
CdsClientDep = Annotated[CdsClient, Depends(cds_client)]
PredictorDep = Annotated[Predictor, Depends(serving)]
