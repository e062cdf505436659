"""Thin pydantic models of the FHIR R4 (4.0.1) elements lenrisk reads, validating EHR input as untrusted.

``fhir.resources`` 8.x ships R5, R4B and STU3 only (no R4), so these models declare just the elements the
mapping uses, with their R4 types and value sets; every other element is ignored (``extra="ignore"``).
A resource that breaks a rule raises :class:`FhirInputError` naming where it was found (prefetch key or
draft order, entry index), its type and id, and the element path and rule, never the value submitted.
"""

# ruff: noqa: N815 - field names are the FHIR / CDS Hooks JSON element names

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from features.errors import LenriskError

_ID = r"^[A-Za-z0-9\-\.]{1,64}$"  # FHIR R4 id datatype
_DATE = r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$"  # FHIR date: YYYY, YYYY-MM or YYYY-MM-DD
_DATETIME = (
    r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$"
)
Id = Annotated[str, Field(pattern=_ID)]
FhirDate = Annotated[str, Field(pattern=_DATE)]
FhirDateTime = Annotated[str, Field(pattern=_DATETIME)]
ShortString = Annotated[str, Field(max_length=1024)]


class FhirInputError(LenriskError):
    """A FHIR resource or Bundle from the EHR that breaks FHIR R4 or what lenrisk needs of it: HTTP 400."""


class _Element(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Coding(_Element):
    system: ShortString | None = None
    code: Annotated[str, Field(max_length=256)] | None = None
    display: ShortString | None = None


class CodeableConcept(_Element):
    coding: Annotated[list[Coding], Field(max_length=50)] = []
    text: ShortString | None = None


class Quantity(_Element):
    value: float | None = None
    unit: ShortString | None = None
    system: ShortString | None = None
    code: ShortString | None = None


class Reference(_Element):
    reference: ShortString | None = None


class Extension(_Element):
    url: ShortString
    valueCode: ShortString | None = None


class Period(_Element):
    start: FhirDateTime | None = None
    end: FhirDateTime | None = None


class TimingRepeat(_Element):
    boundsPeriod: Period | None = None


class Timing(_Element):
    repeat: TimingRepeat | None = None


class DoseAndRate(_Element):
    doseQuantity: Quantity | None = None


class Dosage(_Element):
    text: ShortString | None = None
    timing: Timing | None = None
    doseAndRate: Annotated[list[DoseAndRate], Field(max_length=20)] = []


class _Resource(_Element):
    id: Id | None = None


class Patient(_Resource):
    resourceType: Literal["Patient"]
    gender: Literal["male", "female", "other", "unknown"] | None = None
    birthDate: FhirDate | None = None
    extension: Annotated[list[Extension], Field(max_length=100)] = []


class Condition(_Resource):
    resourceType: Literal["Condition"]
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    code: CodeableConcept | None = None
    subject: Reference


class Observation(_Resource):
    resourceType: Literal["Observation"]
    status: Literal[
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    ]
    code: CodeableConcept
    subject: Reference | None = None
    effectiveDateTime: FhirDateTime | None = None
    issued: FhirDateTime | None = None
    valueQuantity: Quantity | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueInteger: int | None = None


class MedicationRequest(_Resource):
    resourceType: Literal["MedicationRequest"]
    status: Literal[
        "active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"
    ]
    intent: Literal[
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    ]
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    subject: Reference
    authoredOn: FhirDateTime | None = None
    dosageInstruction: Annotated[list[Dosage], Field(max_length=20)] = []


Resource = Patient | Condition | Observation | MedicationRequest
_MODELS: dict[str, type[BaseModel]] = {
    "Patient": Patient,
    "Condition": Condition,
    "Observation": Observation,
    "MedicationRequest": MedicationRequest,
}
_ENTRY_LIST = TypeAdapter(list[dict[str, Any]])
MAX_ENTRIES = 1000


def parse_resource(raw: Any, where: str, expected: tuple[str, ...] | None = None) -> Resource | None:
    """One resource from untrusted JSON; ``None`` for a resource type lenrisk does not read.

    ``where`` says where it was found (e.g. ``prefetch.conditions entry 3``) for the error message.
    """
    if not isinstance(raw, dict):
        raise FhirInputError(f"{where}: expected a FHIR resource (JSON object), got {type(raw).__name__}")
    kind = raw.get("resourceType")
    if not isinstance(kind, str):
        raise FhirInputError(f"{where}: resourceType is missing")
    rid = raw.get("id")
    name = f"{kind}/{rid}" if isinstance(rid, str) and re.match(_ID, rid) else kind
    if expected is not None and kind not in expected and kind != "OperationOutcome":
        raise FhirInputError(f"{where}: {name}: expected {' or '.join(expected)}")
    model = _MODELS.get(kind)
    if model is None:
        return None
    try:
        return model.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise FhirInputError(f"{where}: {name}: {path}: {first['msg']}{more}") from None


def entries(
    raw: Any, where: str, expected: tuple[str, ...] | None = None
) -> list[tuple[dict[str, Any], Resource | None]]:
    """(raw, parsed) per resource of a prefetch value, search result or Bundle; parsed is None for types
    lenrisk does not read. ``null`` (no data) gives an empty list."""
    if raw is None:
        return []
    if isinstance(raw, dict) and raw.get("resourceType") == "Bundle":
        try:
            items = _ENTRY_LIST.validate_python(raw.get("entry", []))
        except ValidationError:
            raise FhirInputError(f"{where}: Bundle.entry must be a list of entry objects") from None
        if len(items) > MAX_ENTRIES:
            raise FhirInputError(f"{where}: Bundle has more than {MAX_ENTRIES} entries")
        out = []
        for i, entry in enumerate(items):
            search = entry.get("search")
            if isinstance(search, dict) and search.get("mode") == "outcome":
                continue  # OperationOutcome warnings of a search
            if "resource" not in entry:
                raise FhirInputError(f"{where}: Bundle.entry[{i}] has no resource")
            resource = entry["resource"]
            out.append((resource, parse_resource(resource, f"{where}: Bundle.entry[{i}]", expected)))
        return out
    return [(raw, parse_resource(raw, where, expected))]


def resources(raw: Any, where: str, expected: tuple[str, ...]) -> list[Resource]:
    """The resources lenrisk reads in a prefetch value or search result (one resource or a Bundle)."""
    return [parsed for _, parsed in entries(raw, where, expected) if parsed is not None]


def parse_when(value: str | None, where: str) -> date | None:
    """The calendar date of a FHIR date or dateTime (partial dates: first day of the period)."""
    if not value:
        return None
    try:
        if "T" in value:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).date()
        parts = [int(p) for p in value.split("-")]
        return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError:
        raise FhirInputError(f"{where}: not a valid calendar date or time") from None


def codes(concept: CodeableConcept | None, *systems: str) -> list[str]:
    """The codes of ``concept`` in any of ``systems``."""
    if concept is None:
        return []
    return [c.code for c in concept.coding if c.code and c.system in systems]


def status_code(concept: CodeableConcept | None) -> str | None:
    """The first code of a status CodeableConcept (clinicalStatus, verificationStatus)."""
    if concept is None:
        return None
    return next((c.code for c in concept.coding if c.code), None)
