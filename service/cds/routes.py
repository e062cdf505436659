"""CDS Hooks 2.0 routes: discovery, the two lenalidomide-tolerance services and their feedback.

Every call, discovery included, carries the EHR-signed JWT (:mod:`service.cds.security`, 401 otherwise).
FHIR input that breaks FHIR R4 or what the mapping needs answers 400 naming the resource; required data
that cannot be had answers 412 (both converted here, since ``service.app`` maps domain errors to 422).
Service calls are audited like ``/v1/predict`` (client, model versions, HMAC of the contract rows, outputs).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from features.record import PatientRecord
from service.audit import canonical_hmac
from service.cds import hooks
from service.cds.feedback import FeedbackStore
from service.cds.fhir import FhirInputError
from service.cds.security import CdsClient, JwtVerifier
from service.cds.settings import CdsSettings
from service.errors import AuditUnavailableError
from service.guard import RETRY_AFTER
from service.predictor import Predictor
from service.routes import serving
from service.settings import ServiceSettings

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed FHIR input: the resource (where, type/id) and the rule broken"},
    401: {"description": "missing or invalid EHR-signed JWT"},
    404: {"description": "no such CDS service"},
    412: {"description": "required FHIR data neither prefetched nor obtainable from the FHIR server"},
    503: {"description": "models not loaded yet, or audit store down"},
}


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def build_router(settings: ServiceSettings, cds_settings: CdsSettings | None = None) -> APIRouter:
    """The CDS Hooks discovery, service and feedback routes (CDS settings read from the environment now)."""
    cds = cds_settings or CdsSettings()
    verifier = JwtVerifier(cds)
    store = FeedbackStore()
    router = APIRouter(tags=["cds-hooks"])

    def base_url(request: Request) -> str:
        return (cds.public_base_url or f"{request.url.scheme}://{request.url.netloc}").rstrip("/")

    async def cds_client(request: Request) -> CdsClient:
        token, header, issuer = verifier.inspect(request.headers.get("authorization"))
        audience = base_url(request) + request.url.path
        replays = request.app.state.audit  # shared by every worker using the audit store
        # in a thread: a JWKS fetch and the JWT-id insert must not block the event loop
        client = await run_in_threadpool(verifier.verify, token, header, issuer, audience, replays)
        request.state.client = client
        return client

    ClientDep = Annotated[CdsClient, Depends(cds_client)]
    PredictorDep = Annotated[Predictor, Depends(serving)]

    @router.get("/cds-services", responses=_ERRORS)
    async def discover(client: ClientDep) -> dict[str, Any]:
        """CDS Hooks discovery: the lenalidomide-tolerance services for order-sign and order-select."""
        return hooks.discovery()

    @router.post("/cds-services/{service_id}", responses=_ERRORS, response_model=None)
    async def call_service(
        service_id: str,
        call: hooks.CdsRequest,
        request: Request,
        client: ClientDep,
        predictor: PredictorDep,
    ) -> dict[str, Any] | JSONResponse:
        """One card with both risks, explained, for the lenalidomide order being selected or signed."""
        hook = hooks.SERVICE_HOOKS.get(service_id)
        if hook is None:
            return _problem(404, f"no CDS service {service_id!r}")
        if call.hook != hook:
            return _problem(400, f"service {service_id} answers the {hook} hook, not {call.hook!r}")
        try:
            patient_id = hooks._context_str(call.context, "patientId")
            prefetch, unavailable = await hooks.gather_prefetch(
                call, patient_id, verifier.issuer_config(client.issuer), cds
            )
            response, rows, predictions = hooks.respond(
                call,
                prefetch,
                unavailable,
                predictor,
                base_url=base_url(request),
                model_card_path=cds.model_card_path,
            )
        except FhirInputError as err:
            return _problem(400, str(err))
        except hooks.PrefetchUnavailableError as err:
            return _problem(412, str(err))
        rows = [PatientRecord.model_validate(r).to_row() for r in rows]  # the contract, checked once more
        request.state.audit = {
            "model_versions": predictor.versions() if rows else None,
            "input_hmac": canonical_hmac(request.app.state.settings.hmac_key, rows) if rows else None,
            "outputs": [
                {o: {"probability": a.probability, "risk_band": a.risk_band} for o, a in p.outcomes.items()}
                for p in predictions
            ]
            or None,
        }
        return response

    @router.post("/cds-services/{service_id}/feedback", responses=_ERRORS, response_model=None)
    async def feedback(
        service_id: str, body: hooks.FeedbackRequest, request: Request, client: ClientDep
    ) -> dict[str, Any] | JSONResponse:
        """Store what the clinician did with the cards (accepted suggestions, override reasons)."""
        if service_id not in hooks.SERVICE_HOOKS:
            return _problem(404, f"no CDS service {service_id!r}")
        rows = [
            {
                "request_id": request.state.request_id,
                "client": client.name,
                "service_id": service_id,
                "card": item.card,
                "outcome": item.outcome,
                "accepted_suggestions": [s.id for s in item.acceptedSuggestions or []] or None,
                "override_reason": (
                    item.overrideReason.reason.model_dump(exclude_none=True)
                    if item.overrideReason and item.overrideReason.reason
                    else None
                ),
                "has_user_comment": bool(item.overrideReason and item.overrideReason.userComment),
                "outcome_timestamp": item.outcomeTimestamp,
            }
            for item in body.feedback
        ]
        try:
            store.write(request.app.state.audit.engine, rows)
        except AuditUnavailableError as err:
            response = _problem(503, str(err))
            response.headers["Retry-After"] = RETRY_AFTER
            return response
        return {}

    return router
