"""HTTP routes: thin layers over the predictor, the model store and the audit context.

No `from __future__ import annotations` here: FastAPI must see the batch request model built at runtime.
"""

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response

from features.record import PatientRecord
from service.api.deps import ClientDep, PredictorDep
from service.api.errors import RETRY_AFTER
from service.api.lifecycle import aliases_now, reload_models
from service.api.schemas import (
    BatchResponse,
    ErrorResponse,
    ModelsResponse,
    PredictResponse,
    Readiness,
    ReloadResponse,
    batch_request_model,
    model_out,
    prediction_out,
)
from service.audit import canonical_hmac
from service.predictor import Prediction, Predictor
from service.settings import ServiceSettings

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "body is not UTF-8 text (JSON must be)"},
    401: {"model": ErrorResponse, "description": "missing or invalid API key"},
    413: {"model": ErrorResponse, "description": "request body over the configured limit"},
    422: {
        "model": ErrorResponse,
        "description": "body is not JSON (type json_invalid), or breaks the contract: field path and rule",
    },
    429: {"model": ErrorResponse, "description": "over the client's rate limit, or too many failed keys"},
    503: {"model": ErrorResponse, "description": "models not loaded yet, or audit store down"},
}


def _predict(request: Request, predictor: Predictor, records: list[PatientRecord]) -> list[dict[str, Any]]:
    rows = [r.to_row() for r in records]
    predictions = predictor.predict_rows(rows)
    request.app.state.metrics.drift.observe(rows, predictions)
    request.state.audit = {
        "model_versions": predictor.versions(),
        "input_hmac": canonical_hmac(request.app.state.settings.hmac_key, rows),
        "outputs": [_audit_output(p) for p in predictions],
    }
    return [prediction_out(p, predictor.bands) for p in predictions]


def _audit_output(prediction: Prediction) -> dict[str, Any]:
    return {
        o: {"probability": a.probability, "risk_band": a.risk_band} for o, a in prediction.outcomes.items()
    }


def _admin(request: Request) -> bool:
    """An admin key came with the request (or authentication is off); a wrong key is refused (401)."""
    header = request.headers.get("authorization")
    auth = request.app.state.auth
    return (header is not None or not auth.enabled) and auth.authenticate(header).admin


def build_router(settings: ServiceSettings) -> APIRouter:
    """All routes; the batch request model carries the configured maximum number of records."""
    router = APIRouter()
    batch_request = batch_request_model(settings.max_batch_records)

    @router.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, tags=["prediction"])
    async def predict(
        record: PatientRecord, request: Request, client: ClientDep, predictor: PredictorDep
    ) -> dict[str, Any]:
        """Both calibrated risks for one treatment line, each explained by SHAP contributions.

        ``base_value + sum(contribution) = logit(probability)`` on the calibrated log-odds scale.
        """
        (result,) = _predict(request, predictor, [record])
        return {"request_id": request.state.request_id, **result}

    @router.post("/v1/predict/batch", response_model=BatchResponse, responses=ERRORS, tags=["prediction"])
    async def predict_batch(
        body: batch_request,  # type: ignore[valid-type]
        request: Request,
        client: ClientDep,
        predictor: PredictorDep,
    ) -> dict[str, Any]:
        """Both risks for up to the configured maximum of records, in order."""
        return {"request_id": request.state.request_id, "results": _predict(request, predictor, body.records)}

    @router.get("/v1/models", response_model=ModelsResponse, responses=ERRORS, tags=["models"])
    async def models(request: Request, client: ClientDep, predictor: PredictorDep) -> ModelsResponse:
        """The model versions served now (key metrics, model card) and the registry's aliases as they are
        now: ``alias_version`` differs from ``version`` after the alias moved, until a reload succeeds."""
        aliases = await aliases_now(request.app)
        return ModelsResponse(
            models=[
                model_out(o, m, settings.model_alias, None if aliases is None else aliases[o])
                for o, m in predictor.models.items()
            ],
            registry="unavailable" if aliases is None else "ok",
        )

    @router.post(
        "/v1/admin/reload",
        response_model=ReloadResponse,
        responses={**ERRORS, 403: {"model": ErrorResponse}, 502: {"model": ErrorResponse}},
        tags=["admin"],
    )
    async def reload(request: Request, client: ClientDep, force: bool = False) -> ReloadResponse:
        """Resolve the alias; if it moved (or ``force``), load, verify and warm, then swap (admin key)."""
        request.app.state.auth.require_admin(client)
        reloaded, versions, previous = await reload_models(request.app, force=force)
        return ReloadResponse(reloaded=reloaded, versions=versions, previous_versions=previous)

    @router.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Alive (never depends on the registry)."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        tags=["operations"],
        response_model=Readiness,
        response_model_exclude_none=True,
        responses={
            401: {"model": ErrorResponse, "description": "an invalid API key was presented"},
            503: {"model": Readiness, "description": "models not loaded (yet)"},
        },
    )
    async def readyz(request: Request, response: Response) -> Readiness:
        """Ready (200) when both models are loaded, ``degraded`` (200) while a reload fails and the versions
        loaded before keep serving, 503 until the first load. The versions and the error: admin key only."""
        state = request.app.state
        predictor, error = state.predictor, state.load_error
        if predictor is None:
            response.status_code, response.headers["Retry-After"] = 503, RETRY_AFTER
            readiness = Readiness(status=error.state if error else "loading")
        else:
            readiness = Readiness(status="degraded" if error else "ready")
        if _admin(request):
            readiness.versions = predictor.versions() if predictor else None
            readiness.detail = str(error) if error else None
        return readiness

    @router.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (the drift gauges' thresholds are computed off the event loop)."""
        body = await asyncio.to_thread(request.app.state.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4")

    return router
