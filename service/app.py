"""The FastAPI application factory: lifespan-loaded models, errors mapped once, every request accounted.

``create_app`` builds the app without loading anything; the lifespan opens the audit store and loads the
models in the background (``/healthz`` answers at once, ``/readyz`` is 503 until both models are loaded),
and optionally polls the alias. Each request captures the predictor reference once, so a reload (resolve,
load, verify, warm, then swap one reference) never mixes versions within a request.

Error mapping (the only place): contract violations 422 (field path and rule, never the submitted value),
bad credentials 401, missing role 403, oversized body 413 (``service.limits``), models not ready or audit
store down 503 with ``Retry-After``; anything unexpected is logged with the request id only and answered
with a generic 500 body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from features.errors import ContractError, LenriskError
from service import routes
from service.audit import AuditLog
from service.cds import routes as cds_routes
from service.errors import (
    AuditUnavailableError,
    ForbiddenError,
    ModelLoadError,
    NotReadyError,
    UnauthorizedError,
)
from service.guard import RETRY_AFTER, RequestGuard
from service.lifecycle import Loader, initial_load, poll_alias
from service.limits import BodyLimitMiddleware
from service.metrics import Metrics
from service.model_store import load_predictor
from service.security import Authenticator
from service.settings import ServiceSettings, get_settings
from service.ui import routes as ui_routes

log = logging.getLogger("lenrisk.service")


def create_app(settings: ServiceSettings | None = None, *, loader: Loader = load_predictor) -> FastAPI:
    """A new lenrisk app; ``settings`` default to the environment, read now (not at import)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.settings, state.loader = settings, loader
        state.predictor, state.load_error = None, None
        state.reload_lock = asyncio.Lock()
        state.metrics = Metrics()
        state.auth = Authenticator(settings.api_keys, settings.admin_keys)
        state.audit = AuditLog(settings.audit_url)
        tasks = [asyncio.create_task(initial_load(app))]
        if settings.alias_poll_seconds > 0:
            tasks.append(asyncio.create_task(poll_alias(app, settings.alias_poll_seconds)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            state.audit.close()

    app = FastAPI(
        title="lenrisk",
        version="1",
        summary="Calibrated, explained risk of early lenalidomide discontinuation for toxicity and of dose "
        "reduction, before a lenalidomide line starts.",
        lifespan=lifespan,
    )
    app.include_router(routes.build_router(settings))
    app.include_router(cds_routes.build_router(settings))
    app.include_router(ui_routes.build_router(settings))
    _map_errors(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestGuard)  # outermost: oversized (413) prediction requests are audited too
    return app


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def _map_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the submitted input; report where and which rule, never the value.
        items = [
            {
                "loc": [str(p) if not isinstance(p, int) else p for p in e["loc"]],
                "type": e["type"],
                "msg": e["msg"],
            }
            for e in err.errors()
        ]
        return _error(422, items)

    @app.exception_handler(ContractError)
    async def contract(_: Request, err: ContractError) -> JSONResponse:
        return _error(
            422, [{"loc": ["body", e.column], "type": "contract", "msg": e.reason} for e in err.errors]
        )

    @app.exception_handler(UnauthorizedError)
    async def unauthorized(_: Request, err: UnauthorizedError) -> JSONResponse:
        response = _error(401, str(err))
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(ForbiddenError)
    async def forbidden(_: Request, err: ForbiddenError) -> JSONResponse:
        return _error(403, str(err))

    @app.exception_handler(NotReadyError)
    async def not_ready(_: Request, err: NotReadyError) -> JSONResponse:
        response = _error(503, str(err))
        response.headers["Retry-After"] = RETRY_AFTER
        return response

    @app.exception_handler(AuditUnavailableError)
    async def audit_down(_: Request, err: AuditUnavailableError) -> JSONResponse:
        response = _error(503, str(err))  # e.g. the CDS JWT-id store, checked before any answer
        response.headers["Retry-After"] = RETRY_AFTER
        return response

    @app.exception_handler(ModelLoadError)
    async def load_failed(_: Request, err: ModelLoadError) -> JSONResponse:
        return _error(502, f"model reload failed; the previous versions keep serving: {err}")

    @app.exception_handler(LenriskError)
    async def other_domain_error(_: Request, err: LenriskError) -> JSONResponse:
        return _error(422, str(err))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        # The exception's message may quote input values: log its type and stack frames only.
        frames = "".join(traceback.format_tb(err.__traceback__))
        log.error(
            "request %s failed: %s\n%s", getattr(request.state, "request_id", "?"), type(err).__name__, frames
        )
        return _error(500, "internal error; quote the X-Request-ID header when reporting it")
