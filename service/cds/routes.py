"""CDS Hooks 2.0 routes: discovery, the two lenalidomide-tolerance services and their feedback.

Every call, discovery included, carries the EHR-signed JWT (:mod:`service.cds.security`, 401 otherwise,
before the body is read; 429 over a rate limit: :mod:`service.api.gate`).
FHIR input that breaks FHIR R4 or what the mapping needs answers 400 naming the resource; required data
that cannot be had answers 412 (the statuses are those of :mod:`service.api.errors`, like every other
route's). Service calls are audited like ``/v1/predict`` (client, model versions, HMAC of the contract
rows, outputs).
"""

from typing import Any

from fastapi import APIRouter, Request

from features.record import PatientRecord
from service.api.deps import CdsClientDep, PredictorDep
from service.audit import canonical_hmac
from service.cds import hooks
from service.cds.settings import CdsSettings

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed FHIR input: the resource (where, type/id) and the rule broken"},
    401: {"description": "missing or invalid EHR-signed JWT"},
    404: {"description": "no such CDS service"},
    412: {"description": "required FHIR data neither prefetched nor obtainable from the FHIR server"},
    429: {"description": "over the client's rate limit, or too many failed JWTs from this address"},
    503: {"description": "models not loaded yet, or audit store down"},
}


def build_router(cds: CdsSettings) -> APIRouter:
    """The CDS Hooks discovery, service and feedback routes."""
    router = APIRouter(tags=["cds-hooks"])

    @router.get("/cds-services", responses=_ERRORS)
    async def discover(client: CdsClientDep) -> dict[str, Any]:
        """CDS Hooks discovery: the lenalidomide-tolerance services for order-sign and order-select."""
        return hooks.discovery()

    @router.post("/cds-services/{service_id}", responses=_ERRORS, response_model=None)
    async def call_service(
        service_id: str,
        call: hooks.CdsRequest,
        request: Request,
        client: CdsClientDep,
        predictor: PredictorDep,
    ) -> dict[str, Any]:
        """One card with both risks, explained, for the lenalidomide order being selected or signed."""
        hooks.check_hook(service_id, call.hook)
        patient_id = hooks.context_str(call.context, "patientId")
        issuer = request.app.state.cds_verifier.issuer_config(client.issuer)
        prefetch, unavailable = await hooks.gather_prefetch(call, patient_id, issuer, cds)
        response, rows, predictions = hooks.respond(
            call,
            prefetch,
            unavailable,
            predictor,
            base_url=cds.base_url(request),
            model_card_path=cds.model_card_path,
        )
        rows = [PatientRecord.model_validate(r).to_row() for r in rows]  # the contract, checked once more
        request.app.state.metrics.drift.observe(rows, predictions)
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
        service_id: str, body: hooks.FeedbackRequest, request: Request, client: CdsClientDep
    ) -> dict[str, Any]:
        """Store what the clinician did with the cards (accepted suggestions, override reasons)."""
        hooks.check_service(service_id)
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
        request.app.state.audit.write_feedback(rows)
        return {}

    return router
