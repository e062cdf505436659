"""The API record model enforces the contract and names the field and rule of every violation."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from features.record import PatientRecord
from features.schema import COMORBIDITY_COLUMNS, REGIMENS, SETTINGS


def _errors(payload: dict) -> list[dict]:
    with pytest.raises(ValidationError) as info:
        PatientRecord.model_validate_json(json.dumps(payload))
    return info.value.errors(include_input=False)


def test_valid_record_becomes_a_contract_row(record):
    row = PatientRecord.model_validate_json(json.dumps(record)).to_row()
    assert row["cm_cardiac"] == 1
    assert sum(row[c] for c in COMORBIDITY_COLUMNS) == 1
    assert row["age"] == 74.0 and row["patient_id"] is None
    assert "comorbidities" not in row


def test_flags_and_list_give_the_same_row(record):
    flags = {c: int(c == "cm_cardiac") for c in COMORBIDITY_COLUMNS}
    as_flags = {**{k: v for k, v in record.items() if k != "comorbidities"}, **flags}
    assert PatientRecord.model_validate(as_flags).to_row() == PatientRecord.model_validate(record).to_row()


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("age", "74", "float_type"),  # a JSON string is not a number (strict)
        ("age", 17, "greater_than_equal"),
        ("age", 101, "less_than_equal"),
        ("start_dose_mg", -5, "greater_than_equal"),
        ("crcl_ml_min", 300, "less_than_equal"),
        ("ecog", 1.5, "int_type"),
        ("ecog", 5, "less_than_equal"),
        ("prior_lines", 21, "less_than_equal"),
        ("dialysis", 2, "less_than_equal"),
        ("dialysis", True, "int_type"),
        ("sex", "Male", "literal_error"),
        ("regimen", "RVD", "literal_error"),
        ("setting", "relapsed", "literal_error"),
        ("comorbidities", ["kidney"], "literal_error"),
    ],
)
def test_each_violation_names_field_and_rule(record, field, value, error_type):
    errors = _errors({**record, field: value})
    assert [e["type"] for e in errors] == [error_type]
    assert errors[0]["loc"][0] == field


def test_missing_and_extra_fields(record):
    payload = {k: v for k, v in record.items() if k != "sex"} | {"mrn": "123"}
    kinds = {(e["loc"][0], e["type"]) for e in _errors(payload)}
    assert kinds == {("sex", "missing"), ("mrn", "extra_forbidden")}


def test_unknowns_are_optional(record):
    row = PatientRecord.model_validate({**record, "crcl_ml_min": None, "ecog": None}).to_row()
    assert row["crcl_ml_min"] is None and row["ecog"] is None


def test_comorbidities_in_one_form_only(record):
    assert "not both" in _errors({**record, "cm_vte": 1})[0]["msg"]
    no_form = {k: v for k, v in record.items() if k != "comorbidities"}
    assert "missing cm_cardiac" in _errors(no_form)[0]["msg"]
    assert "once" in _errors({**record, "comorbidities": ["vte", "vte"]})[0]["msg"]


def test_patient_id_rules(record):
    assert _errors({**record, "patient_id": "a\x00b"})[0]["type"] == "string_pattern_mismatch"
    assert _errors({**record, "patient_id": "x" * 65})[0]["type"] == "string_too_long"
    assert PatientRecord.model_validate({**record, "patient_id": "P-001"}).patient_id == "P-001"


def test_schema_lists_the_contract_categories():
    for form in PatientRecord.model_json_schema()["oneOf"]:  # comorbidities as a list, or as cm_* flags
        props = form["properties"]
        assert props["regimen"]["enum"] == list(REGIMENS)
        assert props["setting"]["enum"] == list(SETTINGS)
        assert props["age"]["minimum"] == 18 and props["age"]["maximum"] == 100
