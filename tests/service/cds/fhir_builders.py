"""FHIR R4 builders the CDS tests share: JSON shaped like the CDS Hooks and FHIR specification examples."""

from __future__ import annotations

import uuid
from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
PID = "pat-1288992"


def patient(gender: str | None = "male", birth: str = "1951-03-15", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": PID, "active": True, "birthDate": birth}
    if gender is not None:
        out["gender"] = gender
    return {**out, **extra}


def condition(code: str, system: str = ICD10CM, cid: str = "c1", status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
    }


def observation(
    loinc: str, value: float, unit: str, when: str = "2026-01-05", oid: str | None = None
) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid or f"obs-{loinc}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": f"{when}T08:00:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def ecog(score: int, when: str = "2026-01-05") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "obs-ecog",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "89247-1"}]},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": f"{when}T08:00:00Z",
        "valueInteger": score,
    }


def med(mid: str, rxcui: str, display: str, dose: float | None = None, status: str = "draft") -> dict:
    out: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxcui, "display": display}]},
        "subject": {"reference": f"Patient/{PID}"},
        "authoredOn": "2026-01-10",
    }
    if dose is not None:
        out["dosageInstruction"] = [
            {
                "text": f"{dose:g} mg by mouth once daily on days 1-21 of each 28-day cycle",
                "timing": {"repeat": {"boundsPeriod": {"start": "2026-01-12"}}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": dose,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ]
    return out


def lenalidomide(dose: float = 25, mid: str = "len-1") -> dict[str, Any]:
    return med(mid, "643720", "lenalidomide 25 MG Oral Capsule" if dose == 25 else "lenalidomide", dose)


def bundle(resources: list[dict[str, Any]], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return bundle(resources, "searchset")


def rvd_orders(dose: float = 25) -> list[dict[str, Any]]:
    return [
        lenalidomide(dose),
        med("bor-1", "358258", "bortezomib", 1.3),
        med("dex-1", "3264", "dexamethasone", 40),
    ]


def full_prefetch() -> dict[str, Any]:
    return {
        "patient": patient(),
        "conditions": searchset([condition("C90.02"), condition("I50.9", cid="c2")]),
        "crcl": None,
        "egfr": None,
        "creatinine": searchset([observation("2160-0", 1.2, "mg/dL")]),
        "weight": searchset([observation("29463-7", 80, "kg")]),
        "ecog": searchset([ecog(1)]),
        "medications": None,
    }


def hook_request(hook: str, orders: list[dict[str, Any]], prefetch: dict | None = None, **extra: Any) -> dict:
    context: dict[str, Any] = {
        "userId": "Practitioner/example",
        "patientId": PID,
        "draftOrders": bundle(orders),
    }
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{orders[0]['id']}"]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return {**body, **extra}
