"""One record of the contract as a pydantic v2 model: what the HTTP API takes per patient.

Fields, ranges and categories come from :mod:`features.schema`. The model is strict (a JSON string is not
a number) and forbids unknown fields, so every contract violation becomes a validation error naming the
field and the rule. Comorbidities may be given as ``cm_*`` flags or as a list (``["cardiac", "vte"]``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.schema import (
    COLUMNS_BY_NAME,
    COMORBIDITIES,
    COMORBIDITY_COLUMNS,
    PATIENT_ID_PATTERN,
    REGIMENS,
    SETTINGS,
    SEXES,
)

# Literal[tuple] expands to the tuple's members: the categories stay defined once, in features.schema.
Sex = Literal[SEXES]  # type: ignore[valid-type]
Regimen = Literal[REGIMENS]  # type: ignore[valid-type]
Setting = Literal[SETTINGS]  # type: ignore[valid-type]
Comorbidity = Literal[COMORBIDITIES]  # type: ignore[valid-type]
# 0 or 1; strict, so JSON true/false are refused rather than read as 1/0.
Flag = Annotated[int, Field(strict=True, ge=0, le=1)]


def _field(name: str, **extra: Any) -> Any:
    """A pydantic Field carrying the contract's range and description for column ``name``."""
    col = COLUMNS_BY_NAME[name]
    bounds = {} if col.minimum is None else {"ge": col.minimum, "le": col.maximum}
    desc = col.description + (f" ({col.unit})" if col.unit else "")
    return Field(description=desc, **bounds, **extra)


#: The example record of the API documentation, the README and the tests: a 74-year-old man starting RVd at
#: relapse, creatinine clearance 62 mL/min, ECOG 1, two prior lines, heart disease.
EXAMPLE_RECORD: dict[str, Any] = {
    "age": 74,
    "sex": "male",
    "regimen": "RVd",
    "setting": "relapsed_refractory",
    "start_dose_mg": 25,
    "crcl_ml_min": 62,
    "dialysis": 0,
    "ecog": 1,
    "prior_lines": 2,
    "comorbidities": ["cardiac"],
}


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    """A nullable field's JSON schema (``anyOf: [schema, null]``, default null) without the null."""
    (schema,) = [s for s in field["anyOf"] if s != {"type": "null"}]
    return {k: v for k, v in field.items() if k not in ("anyOf", "default")} | schema


def _two_forms(schema: dict[str, Any]) -> None:
    """State the one cross-field rule in the schema: a record is one of two whole object schemas, the
    comorbidities as a list or as every ``cm_*`` flag, each with its own ``required`` (so documentation
    and clients show what is required); the form not used may be given as null."""
    properties, required = schema.pop("properties"), schema.pop("required")
    form_fields = ("comorbidities", *COMORBIDITY_COLUMNS)
    common = {k: v for k, v in properties.items() if k not in form_fields}
    del schema["additionalProperties"]

    def form(title: str, used: tuple[str, ...]) -> dict[str, Any]:
        return {
            "title": title,
            "type": "object",
            "properties": common
            | {f: _not_null(properties[f]) if f in used else {"type": "null"} for f in form_fields},
            "required": [*required, *used],
            "additionalProperties": False,
        }

    schema["oneOf"] = [
        form("comorbidities as a list", ("comorbidities",)),
        form("comorbidities as cm_* flags", COMORBIDITY_COLUMNS),
    ]
    schema["examples"] = [EXAMPLE_RECORD]


class PatientRecord(BaseModel):
    """A lenalidomide treatment line as it stands on the day it starts (``shared/contract.md``)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_two_forms)

    patient_id: Annotated[
        str | None,
        Field(
            default=None,
            min_length=1,
            max_length=64,
            pattern=PATIENT_ID_PATTERN,
            description="pseudonymous identifier, optional; never logged",
        ),
    ]
    age: Annotated[float, _field("age")]
    sex: Annotated[Sex, _field("sex")]
    regimen: Annotated[Regimen, _field("regimen")]
    setting: Annotated[Setting, _field("setting")]
    start_dose_mg: Annotated[float, _field("start_dose_mg")]
    crcl_ml_min: Annotated[float | None, _field("crcl_ml_min", default=None)]
    dialysis: Annotated[Flag, _field("dialysis")]
    ecog: Annotated[int | None, _field("ecog", default=None)]
    prior_lines: Annotated[int, _field("prior_lines")]
    comorbidities: Annotated[
        list[Comorbidity] | None,
        Field(
            default=None,
            max_length=len(COMORBIDITIES),
            json_schema_extra={"uniqueItems": True},
            description="comorbidities present, as a list",
        ),
    ]
    cm_cardiac: Annotated[Flag | None, _field("cm_cardiac", default=None)]
    cm_diabetes: Annotated[Flag | None, _field("cm_diabetes", default=None)]
    cm_pulmonary: Annotated[Flag | None, _field("cm_pulmonary", default=None)]
    cm_hepatic: Annotated[Flag | None, _field("cm_hepatic", default=None)]
    cm_vte: Annotated[Flag | None, _field("cm_vte", default=None)]
    cm_neuropathy: Annotated[Flag | None, _field("cm_neuropathy", default=None)]

    @field_validator("dialysis", "ecog", "prior_lines", *COMORBIDITY_COLUMNS, mode="before")
    @classmethod
    def _integral_float_is_an_integer(cls, value: Any) -> Any:
        """JSON Schema's integer includes 1.0, and many JSON clients send it; 1.5 stays an error."""
        return int(value) if isinstance(value, float) and value.is_integer() else value

    @model_validator(mode="after")
    def _one_form_of_comorbidities(self) -> PatientRecord:
        flags = [getattr(self, c) for c in COMORBIDITY_COLUMNS]
        if self.comorbidities is not None:
            if any(f is not None for f in flags):
                raise ValueError("give comorbidities either as a list or as cm_* flags, not both")
            if len(set(self.comorbidities)) != len(self.comorbidities):
                raise ValueError("comorbidities: each comorbidity may appear once")
        elif any(f is None for f in flags):
            missing = [c for c, f in zip(COMORBIDITY_COLUMNS, flags, strict=True) if f is None]
            raise ValueError(
                "comorbidities: give the list `comorbidities` or every cm_* flag; missing "
                + ", ".join(missing)
            )
        return self

    def to_row(self) -> dict[str, Any]:
        """The record as one contract row: ``cm_*`` flags filled in, unknowns as None."""
        row = self.model_dump(exclude={"comorbidities"})
        if self.comorbidities is not None:
            present = set(self.comorbidities)
            row.update({f"cm_{c}": int(c in present) for c in COMORBIDITIES})
        return row
