"""The FastAPI application factory: lifespan-loaded models, errors mapped once, every request accounted.

``create_app`` builds the app without loading anything; the lifespan opens the audit store and loads the
models in the background (``/healthz`` answers at once, ``/readyz`` is 503 until both models are loaded),
and optionally polls the alias. Each request captures the predictor reference once, so a reload (resolve,
load, verify, warm, then swap one reference) never mixes versions within a request. Errors are answered by
the one table in :mod:`service.api.errors`; oversized bodies get 413 (:mod:`service.api.limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service.api import access_log, docs, errors, routes
from service.api.guard import RequestGuard
from service.api.lifecycle import Loader, initial_load, poll_alias
from service.api.limits import BodyLimitMiddleware
from service.api.metrics import Metrics
from service.audit import AuditLog
from service.cds import routes as cds_routes
from service.cds.security import JwtVerifier
from service.cds.settings import CdsSettings
from service.model_store import load_predictor
from service.security import Authenticator
from service.settings import ServiceSettings, get_settings
from service.ui import routes as ui_routes


def create_app(settings: ServiceSettings | None = None, *, loader: Loader = load_predictor) -> FastAPI:
    """A new lenrisk app; ``settings`` (and the CDS Hooks settings) default to the environment, read now."""
    settings = settings or get_settings()
    cds = CdsSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.settings, state.loader = settings, loader
        state.predictor, state.load_error = None, None
        state.reload_lock = asyncio.Lock()
        state.metrics = Metrics()
        state.auth = Authenticator(settings.api_keys, settings.admin_keys)
        state.cds_verifier = JwtVerifier(cds)
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
        docs_url=None,  # /docs and /redoc: service.api.docs, offline
        redoc_url=None,
    )
    docs.install(app)
    access_log.hide_query_strings()
    app.include_router(routes.build_router(settings))
    app.include_router(cds_routes.build_router(cds))
    app.include_router(ui_routes.build_router(settings))
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestGuard)  # outermost: oversized (413) prediction requests are audited too
    return app
