"""The CDS Hooks services: discovery entries, request model, prefetch gathering and the card pipeline.

A CDS Hooks service has exactly one ``hook``, so the one clinical service is published twice:
``lenalidomide-tolerance`` (``order-sign``: full dose details, final card with a dose suggestion) and
``lenalidomide-tolerance-select`` (``order-select``: the early card as lenalidomide is picked).
Prefetch keys the EHR did not satisfy are fetched from ``fhirServer`` with ``fhirAuthorization`` when that
server is allow-listed for the issuer; data that cannot be had answer 412 (Patient and Conditions are
required; missing observations or medication lists are named in the card).
"""

# ruff: noqa: N815 - field names are the FHIR / CDS Hooks JSON element names

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from features.errors import LenriskError
from features.schema import COLUMNS_BY_NAME, SETTINGS
from service.cds import cards
from service.cds.fhir import (
    Condition,
    FhirInputError,
    MedicationRequest,
    Observation,
    Patient,
    entries,
    resources,
)
from service.cds.mapping import LOINC, NotScorable, check_subject, find_lenalidomide, loinc, map_call
from service.cds.settings import CdsSettings, IssuerConfig
from service.predictor import Predictor

ORDER_SIGN_ID = "lenalidomide-tolerance"
ORDER_SELECT_ID = "lenalidomide-tolerance-select"
SERVICE_HOOKS = {ORDER_SIGN_ID: "order-sign", ORDER_SELECT_ID: "order-select"}
_PID = "{{context.patientId}}"
_OBSERVED = ("crcl", "egfr", "creatinine", "weight", "ecog")  # the latest of each, codes from the data table


def _codes(quantity: str) -> str:
    return ",".join(f"{LOINC}|{code}" for code in loinc(quantity))


PREFETCH: dict[str, str] = {
    "patient": f"Patient/{_PID}",
    "conditions": f"Condition?patient={_PID}&clinical-status=active",
    **{key: f"Observation?patient={_PID}&code={_codes(key)}&_sort=-date&_count=1" for key in _OBSERVED},
    "medications": f"MedicationRequest?patient={_PID}&status=active",
}
_EXPECTED = {
    "patient": ("Patient",),
    "conditions": ("Condition",),
    "medications": ("MedicationRequest",),
    **{k: ("Observation",) for k in _OBSERVED},
}
REQUIRED = ("patient", "conditions")
_WORDS = {
    "patient": "the Patient resource",
    "conditions": "the patient's conditions",
    "crcl": "creatinine clearance",
    "egfr": "eGFR",
    "creatinine": "serum creatinine",
    "weight": "body weight",
    "ecog": "ECOG performance status",
    "medications": "the patient's active medication orders",
}
EXT_PRIOR_LINES = "lenrisk-prior-lines"
EXT_SETTING = "lenrisk-setting"


class PrefetchUnavailableError(LenriskError):
    """Required FHIR data neither prefetched nor obtainable from the FHIR server: HTTP 412."""


class UnknownServiceError(LenriskError):
    """A call to a CDS service this server does not offer: HTTP 404."""


class WrongHookError(LenriskError):
    """A call to a CDS service with another hook than the one it answers: HTTP 400."""


def check_service(service_id: str) -> str:
    """The hook of ``service_id``; :class:`UnknownServiceError` if there is no such service."""
    if service_id not in SERVICE_HOOKS:
        raise UnknownServiceError(f"no CDS service {service_id!r}")
    return SERVICE_HOOKS[service_id]


def check_hook(service_id: str, hook: str) -> None:
    """Refuse a call whose hook is not the one ``service_id`` answers."""
    expected = check_service(service_id)
    if hook != expected:
        raise WrongHookError(f"service {service_id} answers the {expected} hook, not {hook!r}")


def discovery() -> dict[str, Any]:
    """The discovery document: one service per hook, same prefetch."""
    description = (
        "Calibrated risk of early lenalidomide discontinuation for toxicity and of dose reduction at the "
        "start of a lenalidomide line (myeloma, AL amyloidosis), explained, with a lower starting dose "
        "suggested when the discontinuation risk is high."
    )
    return {
        "services": [
            {
                "hook": "order-sign",
                "id": ORDER_SIGN_ID,
                "title": "Lenalidomide tolerance (order sign)",
                "description": description,
                "prefetch": PREFETCH,
                "usageRequirements": "Send Patient and Conditions (required); observations and active "
                "MedicationRequests improve the estimate. Optional request extension: "
                f'{{"{EXT_PRIOR_LINES}": <int>, "{EXT_SETTING}": "<contract setting>"}}.',
            },
            {
                "hook": "order-select",
                "id": ORDER_SELECT_ID,
                "title": "Lenalidomide tolerance (order select)",
                "description": description,
                "prefetch": PREFETCH,
            },
        ]
    }


class FhirAuthorization(BaseModel):
    """The OAuth 2.0 bearer token the EHR lends the service for its FHIR server."""

    model_config = ConfigDict(extra="ignore")
    access_token: Annotated[str, Field(min_length=1, max_length=8192)]
    token_type: Literal["Bearer", "bearer"]
    expires_in: int
    scope: Annotated[str, Field(max_length=4096)]
    subject: Annotated[str, Field(max_length=256)]


class CdsRequest(BaseModel):
    """A CDS Hooks 2.0 service call (context and prefetch are validated by the mapping, as FHIR)."""

    model_config = ConfigDict(extra="ignore")
    hook: Annotated[str, Field(max_length=64)]
    hookInstance: Annotated[str, Field(min_length=1, max_length=128)]
    fhirServer: Annotated[str, Field(max_length=2048)] | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None


class Coding(BaseModel):
    model_config = ConfigDict(extra="ignore")
    system: Annotated[str, Field(max_length=1024)] | None = None
    code: Annotated[str, Field(max_length=256)] | None = None
    display: Annotated[str, Field(max_length=1024)] | None = None


class AcceptedSuggestion(BaseModel):
    id: Annotated[str, Field(max_length=128)]


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reason: Coding | None = None
    userComment: Annotated[str, Field(max_length=4096)] | None = None


class Feedback(BaseModel):
    """One feedback item: a card accepted (with its suggestions) or overridden (with a reason)."""

    model_config = ConfigDict(extra="ignore")
    card: Annotated[str, Field(min_length=1, max_length=128)]
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: Annotated[list[AcceptedSuggestion], Field(max_length=20)] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: Annotated[str, Field(max_length=64)]


class FeedbackRequest(BaseModel):
    feedback: Annotated[list[Feedback], Field(min_length=1, max_length=100)]


async def gather_prefetch(
    call: CdsRequest, patient_id: str, issuer: IssuerConfig, settings: CdsSettings
) -> tuple[dict[str, Any], list[str]]:
    """The prefetch values, fetching absent keys from the FHIR server when allowed; (values, unavailable).

    An absent key means the EHR did not satisfy it; a ``null`` value means no data (kept as is).
    """
    prefetch = dict(call.prefetch or {})
    absent = [k for k in PREFETCH if k not in prefetch]
    if absent and _may_fetch(call, issuer):
        fetched = await _fetch(call, patient_id, absent, settings)
        prefetch.update({k: v for k, v in fetched.items() if v is not _UNAVAILABLE})
    unavailable = [k for k in PREFETCH if k not in prefetch]
    required = [k for k in REQUIRED if k in unavailable]
    if required:
        raise PrefetchUnavailableError(
            "required FHIR data not prefetched and not obtainable from the FHIR server: "
            + ", ".join(f"{k} ({PREFETCH[k]})" for k in required)
        )
    return prefetch, unavailable


def _may_fetch(call: CdsRequest, issuer: IssuerConfig) -> bool:
    if not call.fhirServer or call.fhirAuthorization is None:
        return False
    allowed = {s.rstrip("/") for s in issuer.fhir_servers}
    return call.fhirServer.rstrip("/") in allowed


_UNAVAILABLE = object()


async def _fetch(call: CdsRequest, patient_id: str, keys: list[str], settings: CdsSettings) -> dict[str, Any]:
    base = str(call.fhirServer).rstrip("/")
    assert call.fhirAuthorization is not None  # checked by _may_fetch
    headers = {
        "Authorization": f"Bearer {call.fhirAuthorization.access_token}",
        "Accept": "application/fhir+json",
    }
    timeout = httpx.Timeout(settings.fhir_read_timeout, connect=settings.fhir_connect_timeout)

    async def one(client: httpx.AsyncClient, key: str) -> Any:
        url = f"{base}/{PREFETCH[key].replace(_PID, quote(patient_id, safe=''))}"
        try:
            response = await client.get(url)
        except httpx.HTTPError:
            return _UNAVAILABLE
        if response.status_code == 404 and key == "patient":
            return _UNAVAILABLE
        if response.status_code != 200 or len(response.content) > settings.fhir_max_bytes:
            return _UNAVAILABLE
        try:
            return response.json()
        except ValueError:
            return _UNAVAILABLE

    async with httpx.AsyncClient(timeout=timeout, headers=headers, follow_redirects=False) as client:
        values = await asyncio.gather(*(one(client, k) for k in keys))
    return dict(zip(keys, values, strict=True))


def context_str(context: dict[str, Any], key: str) -> str:
    value = context.get(key)
    if not isinstance(value, str) or not value or len(value) > 64:
        raise FhirInputError(f"context.{key} is required (a FHIR id)")
    return value


def _overrides(extension: dict[str, Any] | None) -> dict[str, Any]:
    if not extension:
        return {}
    out: dict[str, Any] = {}
    prior = extension.get(EXT_PRIOR_LINES)
    if prior is not None:
        rule = COLUMNS_BY_NAME["prior_lines"]
        if not isinstance(prior, int) or isinstance(prior, bool) or not rule.minimum <= prior <= rule.maximum:
            raise FhirInputError(f"extension.{EXT_PRIOR_LINES} must be {rule.rule()}")
        out["prior_lines"] = prior
    setting = extension.get(EXT_SETTING)
    if setting is not None:
        if setting not in SETTINGS:
            raise FhirInputError(f"extension.{EXT_SETTING} must be one of {', '.join(SETTINGS)}")
        out["setting"] = setting
    return out


def respond(
    call: CdsRequest,
    prefetch: dict[str, Any],
    unavailable: list[str],
    predictor: Predictor,
    *,
    base_url: str,
    model_card_path: str,
    today: date | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
    """(CDS response, contract rows scored, predictions) for one call; raises FhirInputError."""
    context = call.context
    patient_id = context_str(context, "patientId")
    draft = context.get("draftOrders")
    if draft is None:
        raise FhirInputError("context.draftOrders is required (a Bundle of the orders being placed)")
    if not (isinstance(draft, dict) and draft.get("resourceType") == "Bundle"):
        raise FhirInputError("context.draftOrders must be a FHIR Bundle")
    selections = context.get("selections") or []
    if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
        raise FhirInputError("context.selections must be a list of references")
    orders = entries(draft, "context.draftOrders")
    for i, (_, parsed) in enumerate(orders):
        if isinstance(parsed, MedicationRequest):
            check_subject(parsed.subject.reference, patient_id, f"context.draftOrders: Bundle.entry[{i}]")
    order = find_lenalidomide(orders, selections)
    if order is None:
        return {"cards": []}, [], []  # not a lenalidomide order: nothing to say

    patients = resources(prefetch.get("patient"), "prefetch.patient", ("Patient",))
    if len(patients) != 1:
        raise FhirInputError("prefetch.patient: expected exactly one Patient resource")
    patient = patients[0]
    assert isinstance(patient, Patient)
    if patient.id is not None and patient.id != patient_id:
        raise FhirInputError("prefetch.patient: Patient.id is not context.patientId")

    def subjects(key: str, kind: type) -> list[Any]:
        found = resources(prefetch.get(key), f"prefetch.{key}", _EXPECTED[key])
        for i, r in enumerate(found):
            if isinstance(r, kind):
                check_subject(r.subject.reference if r.subject else None, patient_id, f"prefetch.{key}[{i}]")
        return [r for r in found if isinstance(r, kind)]

    conditions = subjects("conditions", Condition)
    observations = [o for key in _OBSERVED for o in subjects(key, Observation)]
    active = subjects("medications", MedicationRequest)
    others = [p for _, p in orders if isinstance(p, MedicationRequest) and p is not order.parsed]
    try:
        mapped = map_call(
            patient=patient,
            order=order,
            other_orders=others,
            active_orders=[m for m in active if m.id != order.parsed.id],
            conditions=conditions,
            observations=observations,
            overrides=_overrides(call.extension),
            unavailable=[_WORDS[k] for k in unavailable],
            today=today,
        )
    except NotScorable as why:
        card = cards.not_scored_card(
            why.reason, why.notes, base_url=base_url, model_card_path=model_card_path
        )
        return {"cards": [card]}, [], []
    rows = mapped.rows()
    predictions = predictor.predict_rows(rows)
    card = cards.risk_card(
        mapped, predictions, rows, hook=call.hook, base_url=base_url, model_card_path=model_card_path
    )
    return {"cards": [card]}, rows, predictions
