"""The FastAPI application factory: lifespan-loaded models, errors mapped once, every request accounted.

``create_app`` builds the app without loading anything; the lifespan opens the audit store and loads the
models in the background (``/healthz`` answers at once, ``/readyz`` is 503 until both models are loaded),
and optionally polls the alias. Each request captures the predictor reference once, so a reload (resolve,
load, verify, warm, then swap one reference) never mixes versions within a request. Errors are answered by
the one table in :mod:`service.api.errors`; unauthenticated and over-limit requests get 401 and 429 before
their body is read (:mod:`service.api.gate`), oversized bodies 413 (:mod:`service.api.limits`). Without API
keys only loopback connections are answered (:mod:`service.api.loopback`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service.api import access_log, docs, errors, routes
from service.api.gate import AuthGate
from service.api.guard import RequestGuard
from service.api.lifecycle import Loader, initial_load, poll_alias
from service.api.limits import BodyLimitMiddleware, RateLimits
from service.api.loopback import REFUSAL, LoopbackOnly
from service.api.metrics import Metrics
from service.audit import AuditLog
from service.cds import routes as cds_routes
from service.cds.security import JwtVerifier
from service.cds.settings import CdsSettings
from service.errors import InvalidSettingsError
from service.model_store import load_predictor
from service.security import Authenticator
from service.settings import ServiceSettings, get_settings
from service.ui import routes as ui_routes

log = logging.getLogger("lenrisk.service")


def create_app(settings: ServiceSettings | None = None, *, loader: Loader = load_predictor) -> FastAPI:
    """A new lenrisk app; ``settings`` (and the CDS Hooks settings) default to the environment, read now.

    Settings that cannot be read end the process with one line (SystemExit): servers calling the factory
    would print a traceback.
    """
    try:
        settings = settings or get_settings()
    except InvalidSettingsError as err:
        raise SystemExit(f"lenrisk: {err}") from None
    cds = CdsSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.settings, state.loader = settings, loader
        state.predictor, state.load_error, state.alias_lookup = None, None, None
        state.reload_lock = asyncio.Lock()
        state.metrics = Metrics(settings.drift_window)
        state.auth = Authenticator(settings.api_keys, settings.admin_keys)
        state.cds_verifier = JwtVerifier(cds)
        state.audit = AuditLog(settings.audit_url)
        if not settings.auth_enabled:
            log.warning(REFUSAL)
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
    routers = [routes.build_router(settings), cds_routes.build_router(cds), ui_routes.build_router(settings)]
    for router in routers:
        app.include_router(router)
    # Every route with a template: FastAPI's own and the routers' (an included router has no path: FastAPI
    # matches its routes lazily).
    served = [r for r in app.routes if hasattr(r, "path")] + [r for rt in routers for r in rt.routes]
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthGate, limits=RateLimits(settings))  # 401 and 429 before the body is read
    # outermost: requests refused before routing (401, 429, 413) are audited too
    app.add_middleware(RequestGuard, routes=served)
    if not settings.auth_enabled:
        app.add_middleware(LoopbackOnly)  # before even the guard: nothing runs for a refused connection
    return app
