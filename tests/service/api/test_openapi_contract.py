"""The OpenAPI document says what the service does: the status of a body that is not JSON, and what a
record requires (the comorbidities, as a list or as every ``cm_*`` flag)."""

from __future__ import annotations

import jsonschema_rs
import pytest

from features.record import EXAMPLE_RECORD, PatientRecord
from features.schema import COMORBIDITY_COLUMNS
from service.api.app import create_app
from service.settings import ServiceSettings

#: Fields every record needs, whichever form its comorbidities take.
ALWAYS_REQUIRED = {"age", "sex", "regimen", "setting", "start_dose_mg", "dialysis", "prior_lines"}
FLAGS = {c: 0 for c in COMORBIDITY_COLUMNS}


@pytest.fixture(scope="module")
def openapi() -> dict:
    return create_app(ServiceSettings()).openapi()  # building the app loads nothing


@pytest.fixture(scope="module")
def record_schema(openapi) -> dict:
    return openapi["components"]["schemas"]["PatientRecord"]


# The body is not JSON (a syntax error; bytes that are not UTF-8, which JSON must be): what the service
# answers, and the words its OpenAPI description of that status must contain.
NOT_JSON = [
    (b"{not json", 422, "json_invalid"),
    (b'{"age": 74,', 422, "json_invalid"),
    (b'{"age": "\xff"}', 400, "UTF-8"),
]


@pytest.mark.slow  # a ready service: the session's trained models
@pytest.mark.parametrize("path", ["/v1/predict", "/v1/predict/batch"])
@pytest.mark.parametrize(("body", "status", "documented_as"), NOT_JSON)
def test_a_body_that_is_not_json_gets_the_status_the_document_gives_it(
    api, path, body, status, documented_as
):
    response = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    if status == 422:
        assert [e["type"] for e in response.json()["detail"]] == ["json_invalid"]
    documented = api.get("/openapi.json").json()["paths"][path]["post"]["responses"]
    assert documented_as in documented[str(status)]["description"]


def _form(record_schema: dict, field: str) -> dict:
    (form,) = [f for f in record_schema["oneOf"] if field in f.get("required", [])]
    return form


def test_each_form_of_a_record_lists_all_it_requires(record_schema):
    as_list = _form(record_schema, "comorbidities")
    as_flags = _form(record_schema, "cm_cardiac")
    assert set(as_list["required"]) == ALWAYS_REQUIRED | {"comorbidities"}
    assert set(as_flags["required"]) == ALWAYS_REQUIRED | set(COMORBIDITY_COLUMNS)
    for form in (as_list, as_flags):
        assert form["type"] == "object" and form["additionalProperties"] is False
        assert set(form["properties"]) == set(PatientRecord.model_fields)


def test_the_request_bodies_use_that_schema(openapi):
    def body_schema(path: str) -> dict:
        return openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    ref = "#/components/schemas/PatientRecord"
    assert body_schema("/v1/predict") == {"$ref": ref}
    batch = openapi["components"]["schemas"][body_schema("/v1/predict/batch")["$ref"].rsplit("/", 1)[1]]
    assert batch["properties"]["records"]["items"] == {"$ref": ref}


without_comorbidities = {k: v for k, v in EXAMPLE_RECORD.items() if k != "comorbidities"}


@pytest.mark.parametrize(
    ("record", "valid"),
    [
        (EXAMPLE_RECORD, True),
        ({**without_comorbidities, **FLAGS}, True),
        ({**EXAMPLE_RECORD, **dict.fromkeys(COMORBIDITY_COLUMNS)}, True),  # the flags given as null
        ({**without_comorbidities, **FLAGS, "comorbidities": None}, True),
        (without_comorbidities, False),
        ({**without_comorbidities, "cm_cardiac": 1}, False),
        ({**EXAMPLE_RECORD, "cm_cardiac": 1}, False),
        ({**without_comorbidities, **FLAGS, "comorbidities": []}, False),
        ({**EXAMPLE_RECORD, "comorbidities": None}, False),
        ({**EXAMPLE_RECORD, "age": None}, False),
        ({**EXAMPLE_RECORD, "unknown": 1}, False),
    ],
)
def test_the_schema_accepts_what_the_service_accepts(record_schema, record, valid):
    assert jsonschema_rs.validator_for(record_schema).is_valid(record) is valid
    try:
        PatientRecord.model_validate(record)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted is valid


def test_each_outcome_documents_its_interval_as_estimation_uncertainty_only(openapi):
    schemas = openapi["components"]["schemas"]
    interval = schemas["OutcomeOut"]["properties"]["interval"]
    assert "interval" in schemas["OutcomeOut"]["required"]  # always present, null when there is none
    assert interval["anyOf"] == [{"$ref": "#/components/schemas/Interval"}, {"type": "null"}]
    description = interval["description"]
    for words in (
        "95% interval",
        "estimation uncertainty only",
        "bootstrap refits",
        "resamples of the development data",
        "not the patient's own uncertainty about the outcome",
        "Null",
        "outside the training data",
        "the model has none",
    ):
        assert words in description, words
    assert schemas["Interval"]["required"] == ["lower", "upper", "level"]
    assert set(schemas["Interval"]["properties"]) == {"lower", "upper", "level"}
