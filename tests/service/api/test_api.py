"""The prediction API end to end on the session's real registry: answers, explanations, applicability,
bad input, limits, readiness, metrics and consistency with the registered models.

Every app here runs its lifespan (models loaded from the session's SQLite MLflow store, audit in a fresh
SQLite file); nothing about the models is mocked. Only the readiness tests replace the loader.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from features.model.riskmodel import INTERVAL_LEVEL
from features.record import PatientRecord
from features.schema import COMORBIDITIES, COMORBIDITY_COLUMNS, PREDICTORS, Kind
from features.validate import validate_table
from service.api.app import create_app
from service.errors import ModelLoadError
from service.model_store import KEY_METRICS, load_predictor
from service.predictor import FIELDS
from service.settings import ServiceSettings
from tests.helpers import registry_service_settings
from training.cohort.generate import generate_cohort

OUTCOMES = ("discontinuation", "dose_reduction")
MIB = 1_048_576

pytestmark = pytest.mark.slow  # every test uses the session's trained models (`trained`: ~10 s once)


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def client(registry, tmp_path_factory):
    """One ready app for the read-only tests of this module (bad input, junk bodies)."""
    audit = tmp_path_factory.mktemp("audit") / "audit.db"
    settings = registry_service_settings(registry, f"sqlite:///{audit}")
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "models not loaded within 60 s"
            time.sleep(0.05)
        yield c


def _api_record(row: pd.Series, *, as_list: bool) -> dict:
    """A cohort row as an API record (unknowns left out; comorbidities as a list or as cm_* flags)."""
    record: dict = {"patient_id": str(row["patient_id"])}
    for column in PREDICTORS:
        value = row[column.name]
        if column.name in COMORBIDITY_COLUMNS and as_list:
            continue
        if column.kind is Kind.CATEGORY:
            record[column.name] = str(value)
        elif pd.isna(value):
            continue
        elif column.kind is Kind.NUMBER:
            record[column.name] = float(value)
        else:
            record[column.name] = int(value)
    if as_list:
        pairs = zip(COMORBIDITIES, COMORBIDITY_COLUMNS, strict=True)
        record["comorbidities"] = [c for c, col in pairs if row[col] == 1]
    return record


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """40 varied valid records: every setting (two never seen in training), unknown CrCl and ECOG."""
    frame = validate_table(generate_cohort(40, seed=99)).raise_on_errors()
    out = []
    for i, (_, row) in enumerate(frame.iterrows()):
        record = _api_record(row, as_list=i % 2 == 0)
        if i % 7 == 3:
            record.pop("crcl_ml_min", None)
        if i % 5 == 1:
            record["ecog"] = None  # explicit null: unknown, like leaving it out
        out.append(record)
    assert {r["setting"] for r in out} == {
        "newly_diagnosed",
        "maintenance",
        "relapsed_refractory",
        "al_amyloidosis",
    }
    return out


def _model(registry, outcome: str):
    return registry["result"].outcomes[outcome].model


def _expected_probabilities(registry, outcome: str, records: list[dict]) -> np.ndarray:
    rows = [PatientRecord.model_validate(r).to_row() for r in records]
    return _model(registry, outcome).probability(pd.DataFrame(rows))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _assert_explained(answer: dict) -> None:
    """base + sum(contributions) == logit(probability); every field once; largest |contribution| first."""
    contributions = [c["contribution"] for c in answer["contributions"]]
    assert answer["base_value"] + sum(contributions) == pytest.approx(_logit(answer["probability"]), abs=1e-9)
    assert sorted(c["feature"] for c in answer["contributions"]) == sorted(FIELDS)
    magnitudes = [abs(c) for c in contributions]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert answer["scale"] == "log-odds"


def _assert_same_prediction(a: dict, b: dict) -> None:
    """Two answers for the same record (request ids aside): equal up to float summation order."""
    assert a["warnings"] == b["warnings"]
    for outcome in OUTCOMES:
        x, y = a[outcome], b[outcome]
        assert x["probability"] == pytest.approx(y["probability"], rel=1e-12, abs=1e-15)
        assert x["base_value"] == pytest.approx(y["base_value"], rel=1e-12, abs=1e-15)
        assert (x["interval"] is None) == (y["interval"] is None)
        if x["interval"] is not None:
            assert x["interval"] == pytest.approx(y["interval"], rel=1e-12, abs=1e-15)
        assert (x["risk_band"], x["risk_band_cut_points"], x["model"]) == (
            y["risk_band"],
            y["risk_band_cut_points"],
            y["model"],
        )
        cx = {c["feature"]: (c["value"], c["contribution"]) for c in x["contributions"]}
        cy = {c["feature"]: (c["value"], c["contribution"]) for c in y["contributions"]}
        assert cx.keys() == cy.keys()
        for feature, (value, contribution) in cx.items():
            assert value == cy[feature][0]
            assert contribution == pytest.approx(cy[feature][1], rel=1e-9, abs=1e-12)


def _metric_samples(text: str) -> list[tuple[str, dict, float]]:
    return [
        (s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
    ]


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels`` (0 when there are none)."""
    return sum(
        v
        for n, got, v in _metric_samples(text)
        if n == name and all(got.get(k) == want for k, want in labels.items())
    )


# ----------------------------------------------------------------------------------- predict and batch


def test_predict_answers_both_outcomes_calibrated_banded_and_explained(
    api, service_settings, registry, record
):
    response = api.post("/v1/predict", json=record)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"discontinuation", "dose_reduction", "warnings", "request_id"}
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert len(body["request_id"]) == 32 and int(body["request_id"], 16) >= 0
    assert body["warnings"] == []  # a record well inside the training case mix
    for outcome in OUTCOMES:
        answer = body[outcome]
        expected = _expected_probabilities(registry, outcome, [record])[0]
        assert answer["probability"] == pytest.approx(expected, rel=1e-12)
        assert 0 < answer["probability"] < 1
        cuts = service_settings.bands[outcome]  # each outcome's own defaults
        assert answer["risk_band_cut_points"] == {
            "intermediate_from": cuts.intermediate,
            "high_from": cuts.high,
        }
        p = answer["probability"]
        assert answer["risk_band"] == (
            "high" if p >= cuts.high else "intermediate" if p >= cuts.intermediate else "low"
        )
        _assert_explained(answer)
        assert answer["model"] == {"name": registry["result"].outcomes[outcome].model_name, "version": "1"}
        shown = {c["feature"]: c["value"] for c in answer["contributions"]}
        assert shown == {
            "age": 74.0,
            "sex": "male",
            "regimen": "RVd",
            "setting": "relapsed_refractory",
            "start_dose_mg": 25.0,
            "renal_function": "CrCl 62 mL/min",
            "ecog": 1,
            "prior_lines": 2,
            "comorbidities": ["cardiac"],
        }
    # Each request gets its own id.
    assert api.post("/v1/predict", json=record).json()["request_id"] != body["request_id"]


def test_probabilities_equal_the_registered_models_and_batch_equals_single(api, registry, records):
    response = api.post("/v1/predict/batch", json={"records": records})

    assert response.status_code == 200
    body = response.json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    results = body["results"]
    assert len(results) == len(records)
    for outcome in OUTCOMES:
        served = np.array([r[outcome]["probability"] for r in results])
        expected = _expected_probabilities(registry, outcome, records)
        np.testing.assert_allclose(served, expected, rtol=1e-12, atol=0)
        assert len(set(np.round(served, 6))) > 30  # really different records, not one answer repeated
        base_values = {r[outcome]["base_value"] for r in results}
        assert len(base_values) == 1  # SHAP base value: the average training line, the same for everyone
        for r in results:
            _assert_explained(r[outcome])
    for i in (0, 1, 3, 6, 17, 39):  # list and flag forms, unknown CrCl, explicit null ECOG
        single = api.post("/v1/predict", json=records[i])
        assert single.status_code == 200
        _assert_same_prediction(single.json(), results[i])


def test_comorbidities_as_a_list_or_as_flags_give_the_same_answer(api, record):
    flags = {k: v for k, v in record.items() if k != "comorbidities"}
    flags.update({c: int(c == "cm_cardiac") for c in COMORBIDITY_COLUMNS})
    as_list = api.post("/v1/predict", json=record).json()
    as_flags = api.post("/v1/predict", json=flags).json()
    _assert_same_prediction(as_list, as_flags)
    none = api.post("/v1/predict", json={**record, "comorbidities": []}).json()
    # The list is read (what the explanation shows differs); whether it moves the risk is the model's
    # business: the session's parsimonious model, like the generator, gives comorbidities no effect.
    shown = {c["feature"]: c["value"] for c in none["discontinuation"]["contributions"]}
    listed = {c["feature"]: c["value"] for c in as_list["discontinuation"]["contributions"]}
    assert shown["comorbidities"] == [] and listed["comorbidities"] == ["cardiac"]


def test_risk_bands_follow_the_configured_cut_points(start_api, api, registry, records, tmp_path):
    default = api.post("/v1/predict/batch", json={"records": records}).json()["results"]
    disc = sorted(r["discontinuation"]["probability"] for r in default)
    dr = sorted(r["dose_reduction"]["probability"] for r in default)
    # Cut points placed exactly on served probabilities: the boundary belongs to the upper band.
    bands = {"discontinuation": (disc[13], disc[27]), "dose_reduction": (dr[8], dr[31])}
    settings = registry_service_settings(
        registry,
        f"sqlite:///{tmp_path / 'bands.db'}",
        discontinuation_bands=bands["discontinuation"],
        dose_reduction_bands=bands["dose_reduction"],
    )
    custom = start_api(settings)

    results = custom.post("/v1/predict/batch", json={"records": records}).json()["results"]

    for outcome, (intermediate, high) in bands.items():
        counts = {"low": 0, "intermediate": 0, "high": 0}
        for r in results:
            answer = r[outcome]
            assert answer["risk_band_cut_points"] == {"intermediate_from": intermediate, "high_from": high}
            p = answer["probability"]
            expected = "high" if p >= high else "intermediate" if p >= intermediate else "low"
            assert answer["risk_band"] == expected, (outcome, p)
            counts[answer["risk_band"]] += 1
            if p == intermediate:
                assert answer["risk_band"] == "intermediate"
            if p == high:
                assert answer["risk_band"] == "high"
        ranks = {"discontinuation": (13, 27), "dose_reduction": (8, 31)}[outcome]
        assert counts == {"low": ranks[0], "intermediate": ranks[1] - ranks[0], "high": 40 - ranks[1]}
    # The same probabilities: only the bands moved.
    for a, b in zip(default, results, strict=True):
        assert a["discontinuation"]["probability"] == b["discontinuation"]["probability"]


def test_band_cut_points_must_be_ordered_inside_0_1(registry):
    for bad in ((0.4, 0.2), (0.0, 0.5), (0.3, 1.0), (0.3, 0.3)):
        with pytest.raises(ValidationError, match="cut points"):
            ServiceSettings(mlruns_dir=registry["root"], discontinuation_bands=bad)


# -------------------------------------------------------------------------------------- models, health


def test_models_lists_versions_aliases_metrics_and_card(api, registry, tmp_path):
    response = api.get("/v1/models")

    assert response.status_code == 200
    models = {m["outcome"]: m for m in response.json()["models"]}
    assert set(models) == set(OUTCOMES)
    mlflow_client = MlflowClient(tracking_uri=registry["settings"].tracking_uri)
    registered = {v.result.outcome: v for v in registry["versions"]}
    for outcome, served in models.items():
        version = registered[outcome]
        assert (served["name"], served["version"]) == (version.name, "1")
        assert served["aliases"] == ["challenger", "champion"]
        assert served["family"] == version.result.model.family
        assert served["artifact_sha256"] == version.digest and len(version.digest) == 64
        run_metrics = mlflow_client.get_run(version.run_id).data.metrics
        assert served["metrics"] == {k: run_metrics[k] for k in KEY_METRICS}
        validated = version.result.validation.metrics
        assert served["metrics"]["validated_log_loss"] == pytest.approx(version.validated_log_loss)
        assert served["metrics"]["validated_roc_auc"] == pytest.approx(validated["roc_auc"].corrected)
        assert served["small_development_sample"] is False
        card = Path(
            mlflow_client.download_artifacts(version.run_id, "model_card.md", str(tmp_path))
        ).read_text()
        assert served["model_card"] == card  # the card logged with the training run
        assert "## Intended use" in card and "## Calibration" in card


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "versions": {"discontinuation": "1", "dose_reduction": "1"}}


def test_not_ready_while_the_models_load_then_ready(start_api, service_settings, record):
    gate = threading.Event()

    def slow_loader(settings, versions):
        gate.wait(30)
        return load_predictor(settings, versions)

    try:
        client = start_api(service_settings, ready=False, loader=slow_loader)
        assert client.get("/healthz").status_code == 200
        for path, method in (("/readyz", "get"), ("/v1/predict", "post"), ("/v1/models", "get")):
            response = client.request(method, path, json=record if method == "post" else None)
            assert response.status_code == 503, path
            assert response.headers["Retry-After"].isdigit(), path
        batch = client.post("/v1/predict/batch", json={"records": [record]})
        assert batch.status_code == 503 and "Retry-After" in batch.headers
    finally:
        gate.set()
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.post("/v1/predict", json=record).status_code == 200


def test_a_failing_loader_leaves_the_app_alive_but_not_ready(start_api, service_settings, record):
    calls = []

    def broken_loader(settings, versions):
        calls.append(versions)
        raise ModelLoadError("test loader: artifact store unreachable")

    client = start_api(service_settings, ready=False, loader=broken_loader)
    deadline = time.monotonic() + 10
    while not calls or "unreachable" not in client.get("/readyz").text:
        assert time.monotonic() < deadline, "the failing load was never reported by /readyz"
        time.sleep(0.05)

    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"].isdigit()
    assert "artifact store unreachable" in ready.json()["detail"]
    predict = client.post("/v1/predict", json=record)
    assert predict.status_code == 503 and predict.headers["Retry-After"].isdigit()
    assert "probability" not in predict.text
    assert calls[0] == {"discontinuation": "1", "dose_reduction": "1"}  # the alias was resolved
    metrics = client.get("/metrics").text
    assert _metric(metrics, "lenrisk_model_reload_failures_total") >= 1
    assert _metric(metrics, "lenrisk_model_version_info") == 0


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_count_requests_by_route_and_status_and_name_the_loaded_versions(api, record):
    for _ in range(3):
        assert api.post("/v1/predict", json=record).status_code == 200
    assert api.post("/v1/predict", json={**record, "sex": "x"}).status_code == 422
    assert api.post("/v1/predict", json={**record, "age": 5}).status_code == 422
    assert api.post("/v1/predict/batch", json={"records": [record, record]}).status_code == 200
    assert api.get("/v1/models").status_code == 200

    response = api.get("/metrics")

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    requests = "lenrisk_requests_total"
    assert _metric(text, requests, route="/v1/predict", status="200") == 3
    assert _metric(text, requests, route="/v1/predict", status="422") == 2
    assert _metric(text, requests, route="/v1/predict/batch", status="200") == 1
    assert _metric(text, requests, route="/v1/models", status="200") == 1
    latency = "lenrisk_request_duration_seconds_count"
    assert _metric(text, latency, route="/v1/predict") == 5
    assert _metric(text, latency, route="/v1/predict/batch") == 1
    assert 0 < _metric(text, "lenrisk_request_duration_seconds_sum", route="/v1/predict") < 30
    loaded = {
        (labels["outcome"], labels["name"], labels["version"])
        for name, labels, value in _metric_samples(text)
        if name == "lenrisk_model_version_info" and value == 1
    }
    assert loaded == {
        ("discontinuation", "lenalidomide-discontinuation", "1"),
        ("dose_reduction", "lenalidomide-dose-reduction", "1"),
    }
    assert _metric(text, "lenrisk_model_reload_failures_total") == 0


def test_metrics_latencies_are_labelled_by_route_and_status(api, record):
    """The issue asks for request counts *and latencies* by route and status."""
    assert api.post("/v1/predict", json=record).status_code == 200
    assert api.post("/v1/predict", json={**record, "sex": "x"}).status_code == 422

    text = api.get("/metrics").text

    latency = "lenrisk_request_duration_seconds_count"
    assert _metric(text, latency, route="/v1/predict", status="200") == 1
    assert _metric(text, latency, route="/v1/predict", status="422") == 1


# ---------------------------------------------------------------------------------------- applicability


def test_a_record_inside_the_training_ranges_has_no_warnings(client, registry, record):
    encoder = _model(registry, "discontinuation").encoder
    for name in ("age", "start_dose_mg", "crcl_ml_min", "ecog", "prior_lines"):
        assert encoder.ranges_[name]["min"] <= record[name] <= encoder.ranges_[name]["max"], name
    assert client.post("/v1/predict", json=record).json()["warnings"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("age", 100), ("age", 18), ("start_dose_mg", 2.5), ("prior_lines", 20), ("prior_lines", 12)],
)
def test_values_outside_the_training_range_are_scored_and_flagged(client, registry, record, field, value):
    ranges = _model(registry, "discontinuation").encoder.ranges_[field]
    assert not ranges["min"] <= value <= ranges["max"], "precondition: outside the training range"
    outside = {**record, field: value}

    response = client.post("/v1/predict", json=outside)

    assert response.status_code == 200
    warnings = response.json()["warnings"]
    assert len(warnings) == 1
    (warning,) = warnings
    assert warning["field"] == field and warning["value"] == value
    assert warning["kind"] == "outside_training_range"
    assert warning["range"] == [ranges["min"], ranges["max"]]
    assert field in warning["message"] and "extrapolated" in warning["message"]
    for outcome in OUTCOMES:  # the model saw the value itself, not a clipped one
        expected = _expected_probabilities(registry, outcome, [outside])[0]
        assert response.json()[outcome]["probability"] == pytest.approx(expected, rel=1e-12)


def test_age_100_is_extrapolated_not_clipped_to_the_training_maximum(client, registry, record):
    top = _model(registry, "discontinuation").encoder.ranges_["age"]["max"]
    assert top < 100
    at_top = client.post("/v1/predict", json={**record, "age": top}).json()
    at_100 = client.post("/v1/predict", json={**record, "age": 100}).json()

    assert at_top["warnings"] == []  # the training maximum itself is inside the range
    assert [w["field"] for w in at_100["warnings"]] == ["age"]
    for outcome in OUTCOMES:
        p_top, p_100 = at_top[outcome]["probability"], at_100[outcome]["probability"]
        assert abs(_logit(p_100) - _logit(p_top)) > 1e-6, f"{outcome}: age 100 scored as the maximum age"
        age_top = next(c for c in at_top[outcome]["contributions"] if c["feature"] == "age")
        age_100 = next(c for c in at_100[outcome]["contributions"] if c["feature"] == "age")
        assert age_100["value"] == 100.0 and age_top["value"] == top
        # Only the age input changed: the whole logit difference is the age contribution's.
        assert _logit(p_100) - _logit(p_top) == pytest.approx(
            age_100["contribution"] - age_top["contribution"], abs=1e-9
        )


def test_unknown_renal_function_and_ecog_are_imputed_explicitly_and_flagged(client, registry, record):
    omitted = {k: v for k, v in record.items() if k not in ("crcl_ml_min", "ecog")}
    explicit_null = {**record, "crcl_ml_min": None, "ecog": None}

    response = client.post("/v1/predict", json=omitted)

    assert response.status_code == 200
    body = response.json()
    encoder = _model(registry, "discontinuation").encoder
    warnings = {w["field"]: w for w in body["warnings"]}
    assert set(warnings) == {"crcl_ml_min", "ecog"}
    for name, warning in warnings.items():
        assert warning["kind"] == "unknown" and warning["value"] is None
        assert f"{encoder.impute_[name]:g}" in warning["message"]
    for outcome in OUTCOMES:
        shown = {c["feature"]: c["value"] for c in body[outcome]["contributions"]}
        assert shown["renal_function"] == "CrCl unknown" and shown["ecog"] is None
        expected = _expected_probabilities(registry, outcome, [omitted])[0]
        assert body[outcome]["probability"] == pytest.approx(expected, rel=1e-12)
        _assert_explained(body[outcome])
    _assert_same_prediction(body, client.post("/v1/predict", json=explicit_null).json())


def test_categories_never_seen_in_training_are_scored_and_flagged(client, registry, record):
    categories = _model(registry, "discontinuation").encoder.categories_
    assert categories["setting"]["maintenance"] == 0 and categories["regimen"]["R"] == 0
    unseen = {**record, "setting": "maintenance", "regimen": "R", "start_dose_mg": 10}

    response = client.post("/v1/predict", json=unseen)

    assert response.status_code == 200
    warnings = {(w["field"], w["kind"], w["value"]) for w in response.json()["warnings"]}
    assert warnings == {
        ("setting", "not_seen_in_training", "maintenance"),
        ("regimen", "not_seen_in_training", "R"),
    }
    for outcome in OUTCOMES:
        expected = _expected_probabilities(registry, outcome, [unseen])[0]
        assert response.json()[outcome]["probability"] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------------------- uncertainty intervals


def _kernel_interval(registry, outcome: str, record: dict) -> tuple[float, float]:
    """The trained model's own interval (``RiskModel.interval``) for one API record."""
    row = PatientRecord.model_validate(record).to_row()
    lower, upper = _model(registry, outcome).interval({k: [v] for k, v in row.items()})
    return float(lower[0]), float(upper[0])


def test_the_interval_is_the_predictors_and_the_kernels_for_single_and_batch(
    client, registry, predictor, record
):
    single = client.post("/v1/predict", json=record)
    batch = client.post("/v1/predict/batch", json={"records": [record, record]})
    assert single.status_code == 200 and batch.status_code == 200
    [predicted] = predictor.predict_rows([PatientRecord.model_validate(record).to_row()])

    answers = [single.json(), *batch.json()["results"]]
    for outcome in OUTCOMES:
        kernel = _kernel_interval(registry, outcome, record)
        by_predictor = predicted.outcomes[outcome].interval
        assert by_predictor is not None
        assert by_predictor[:2] == pytest.approx(kernel, rel=1e-12, abs=1e-15)
        for answer in answers:
            interval = answer[outcome]["interval"]
            assert set(interval) == {"lower", "upper", "level"}
            assert interval["level"] == INTERVAL_LEVEL == 0.95
            assert (interval["lower"], interval["upper"]) == pytest.approx(kernel, rel=1e-12, abs=1e-15)
            assert (interval["lower"], interval["upper"]) == pytest.approx(by_predictor[:2], rel=1e-12)
            assert 0 < interval["lower"] < answer[outcome]["probability"] < interval["upper"] < 1


def test_no_interval_where_the_risk_is_extrapolated_for_single_and_batch(client, registry, record):
    top = _model(registry, "discontinuation").encoder.ranges_["age"]["max"]
    older = {**record, "age": top + 2}  # outside the training range: extrapolated
    unseen = {**record, "setting": "maintenance"}  # a setting the session's models never saw
    unknown = {**record, "crcl_ml_min": None}  # imputed as in training: still an interval
    batch = client.post("/v1/predict/batch", json={"records": [older, unseen, unknown]})
    assert batch.status_code == 200
    results = batch.json()["results"]

    for extrapolated, kind in ((older, "outside_training_range"), (unseen, "not_seen_in_training")):
        single = client.post("/v1/predict", json=extrapolated)
        assert single.status_code == 200
        for answer in (single.json(), results[0 if extrapolated is older else 1]):
            assert kind in {w["kind"] for w in answer["warnings"]}
            for outcome in OUTCOMES:
                assert "interval" in answer[outcome] and answer[outcome]["interval"] is None
                assert 0 < answer[outcome]["probability"] < 1  # still scored
    for outcome in OUTCOMES:
        interval = results[2][outcome]["interval"]
        assert interval is not None
        assert (interval["lower"], interval["upper"]) == pytest.approx(
            _kernel_interval(registry, outcome, unknown), rel=1e-12, abs=1e-15
        )


# ------------------------------------------------------------------------------------------- bad input

CANARY = "CANARY-3b9e"
DROP = "<drop>"

BAD_RECORDS = [
    # (id, change to the valid record (DROP: leave the field out), expected loc, expected type, text in msg)
    ("age-string", {"age": f"abc-{CANARY}"}, ["body", "age"], "float_type", "number"),
    ("age-numeric-string", {"age": "74"}, ["body", "age"], "float_type", "number"),
    ("age-below", {"age": 17.25}, ["body", "age"], "greater_than_equal", "18"),
    ("age-above", {"age": 100.25}, ["body", "age"], "less_than_equal", "100"),
    ("dose-above", {"start_dose_mg": 27.5}, ["body", "start_dose_mg"], "less_than_equal", "25"),
    ("crcl-below", {"crcl_ml_min": 4.25}, ["body", "crcl_ml_min"], "greater_than_equal", "5"),
    ("ecog-above", {"ecog": 5}, ["body", "ecog"], "less_than_equal", "4"),
    ("ecog-fraction", {"ecog": 1.5}, ["body", "ecog"], "int_type", "integer"),
    ("prior-negative", {"prior_lines": -3}, ["body", "prior_lines"], "greater_than_equal", "0"),
    ("dialysis-bool", {"dialysis": True}, ["body", "dialysis"], "int_type", "integer"),
    ("dialysis-2", {"dialysis": 2}, ["body", "dialysis"], "less_than_equal", "1"),
    ("sex-unknown", {"sex": "Male"}, ["body", "sex"], "literal_error", "'female' or 'male'"),
    ("regimen-unknown", {"regimen": f"VRd-{CANARY}"}, ["body", "regimen"], "literal_error", "'RVd'"),
    ("setting-unknown", {"setting": "smouldering"}, ["body", "setting"], "literal_error", "'maintenance'"),
    (
        "comorbidity-unknown",
        {"comorbidities": [f"kidney-{CANARY}"]},
        ["body", "comorbidities", 0],
        "literal_error",
        "'cardiac'",
    ),
    ("comorbidity-twice", {"comorbidities": ["vte", "vte"]}, ["body"], "value_error", "once"),
    ("regimen-missing", {"regimen": DROP}, ["body", "regimen"], "missing", "required"),
    ("age-missing", {"age": DROP}, ["body", "age"], "missing", "required"),
    (
        "extra-field",
        {"mrn": f"MRN-{CANARY}"},
        ["body", "<unknown field>"],
        "extra_forbidden",
        "not permitted",
    ),
    ("both-forms", {"cm_cardiac": 1}, ["body"], "value_error", "either"),
    ("patient-id-long", {"patient_id": "P" * 65}, ["body", "patient_id"], "string_too_long", "64"),
    (
        "patient-id-control",
        {"patient_id": "P\x07" + CANARY},
        ["body", "patient_id"],
        "string_pattern_mismatch",
        "",
    ),
]


def _bad(record: dict, change: dict) -> dict:
    bad = {**record, **change}
    return {k: v for k, v in bad.items() if v != DROP}


@pytest.mark.parametrize(
    ("change", "loc", "kind", "rule"), [c[1:] for c in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS]
)
def test_contract_violations_are_422_with_field_path_and_rule_but_no_value(
    client, record, change, loc, kind, rule
):
    response = client.post("/v1/predict", json=_bad(record, change))

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert all(set(item) == {"loc", "type", "msg"} for item in detail)  # no "input", no "ctx"
    assert {"loc": loc, "type": kind} in [{"loc": i["loc"], "type": i["type"]} for i in detail]
    item = next(i for i in detail if i["loc"] == loc and i["type"] == kind)
    assert rule in item["msg"]
    for value in change.values():
        if value == DROP:
            continue
        if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
            assert json.dumps(value)[1:-1] not in response.text
            assert str(value) not in response.text
    assert CANARY not in response.text


def test_an_invalid_record_in_a_batch_is_located_by_its_index(client, record):
    response = client.post("/v1/predict/batch", json={"records": [record, {**record, "sex": "Male"}, record]})

    assert response.status_code == 422
    assert [(i["loc"], i["type"]) for i in response.json()["detail"]] == [
        (["body", "records", 1, "sex"], "literal_error")
    ]


def test_batch_size_is_limited_to_the_configured_maximum(client, start_api, registry, record, tmp_path):
    at_max = client.post("/v1/predict/batch", json={"records": [record] * 1000})
    assert at_max.status_code == 200 and len(at_max.json()["results"]) == 1000
    over = client.post("/v1/predict/batch", json={"records": [record] * 1001})
    assert over.status_code == 422
    assert [(i["loc"], i["type"]) for i in over.json()["detail"]] == [(["body", "records"], "too_long")]
    assert "1000" in over.json()["detail"][0]["msg"]

    settings = registry_service_settings(registry, f"sqlite:///{tmp_path / 'a.db'}", max_batch_records=3)
    small = start_api(settings)
    assert small.post("/v1/predict/batch", json={"records": [record] * 3}).status_code == 200
    over = small.post("/v1/predict/batch", json={"records": [record] * 4})
    assert over.status_code == 422 and over.json()["detail"][0]["type"] == "too_long"


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"records": []}, ["body", "records"], "too_short"),
        ({}, ["body", "records"], "missing"),
        ({"records": "all"}, ["body", "records"], "list_type"),
        ({"records": None}, ["body", "records"], "list_type"),
        ({"records": [], "extra": 1}, ["body", "<unknown field>"], "extra_forbidden"),
    ],
    ids=["empty", "missing", "string", "null", "extra"],
)
def test_malformed_batches_are_422(client, body, loc, kind):
    response = client.post("/v1/predict/batch", json=body)
    assert response.status_code == 422
    assert {"loc": loc, "type": kind} in [
        {"loc": i["loc"], "type": i["type"]} for i in response.json()["detail"]
    ]


JUNK = [
    b"",
    b"null",
    b"[]",
    b'"a string"',
    b"42",
    b"{",
    b'{"age": NaN}',
    b'{"age": Infinity, "sex": "male"}',
    b'{"age": 1e999}',
    b"\xff\xfe\x00garbage",
    b"[" * 5000 + b"]" * 5000,
    b'{"records": [null]}',
    b'{"records": [[]]}',
]


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/predict/batch"])
@pytest.mark.parametrize("body", JUNK, ids=range(len(JUNK)))
def test_junk_bodies_are_client_errors_never_500(client, path, body):
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert "detail" in response.json()


def test_nan_and_infinite_numbers_are_refused(client, record):
    for field in ("age", "start_dose_mg", "crcl_ml_min"):
        for literal in ("NaN", "Infinity", "-Infinity"):
            raw = json.dumps({**record, field: 12345.678}).replace("12345.678", literal)
            response = client.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 422, (field, literal)
            assert response.json()["detail"][0]["loc"] == ["body", field]


def test_wrong_method_and_unknown_path_are_not_500(client):
    assert client.get("/v1/predict").status_code == 405
    assert client.post("/v1/nothing-here", json={}).status_code == 404


# ------------------------------------------------------------------------------------------ body limits


def _padded(record: dict, size: int) -> bytes:
    """A valid JSON body of exactly ``size`` bytes (the record, then trailing whitespace)."""
    raw = json.dumps(record).encode()
    return raw + b" " * (size - len(raw))


def test_bodies_over_one_mib_are_413_and_exactly_one_mib_is_served(client, record):
    exact = client.post(
        "/v1/predict", content=_padded(record, MIB), headers={"content-type": "application/json"}
    )
    assert exact.status_code == 200 and exact.json()["discontinuation"]["probability"] > 0

    over = client.post(
        "/v1/predict", content=_padded(record, MIB + 1), headers={"content-type": "application/json"}
    )
    assert over.status_code == 413
    assert over.json() == {"detail": f"request body larger than {MIB} bytes"}
    batch = client.post(
        "/v1/predict/batch",
        content=_padded({"records": [record]}, MIB + 1),
        headers={"content-type": "application/json"},
    )
    assert batch.status_code == 413


def test_a_custom_body_limit_applies_to_declared_and_streamed_bodies(start_api, registry, record, tmp_path):
    settings = registry_service_settings(registry, f"sqlite:///{tmp_path / 'a.db'}", max_body_bytes=2048)
    small = start_api(settings)
    json_type = {"content-type": "application/json"}

    assert small.post("/v1/predict", content=_padded(record, 2048), headers=json_type).status_code == 200
    assert small.post("/v1/predict", content=_padded(record, 2049), headers=json_type).status_code == 413
    batch = {"records": [record] * 12}
    assert len(json.dumps(batch)) > 2048
    refused = small.post("/v1/predict/batch", json=batch)
    assert refused.status_code == 413 and "2048" in refused.json()["detail"]

    def streamed():
        raw = _padded(record, 3000)
        for i in range(0, len(raw), 500):
            yield raw[i : i + 500]

    chunked = small.post("/v1/predict", content=streamed(), headers=json_type)
    assert chunked.status_code == 413


def test_body_limits_below_1_kib_are_refused_by_the_settings(registry):
    with pytest.raises(ValidationError):
        ServiceSettings(mlruns_dir=registry["root"], max_body_bytes=100)
    with pytest.raises(ValidationError):
        ServiceSettings(mlruns_dir=registry["root"], max_batch_records=0)
