"""Model updates without downtime: admin reload, failed reloads, the alias poll, and traffic during a swap.

One registry for this module (never the session's, whose aliases other tests rely on), holding three
versions of both models, registered from the session's training result so no extra training is needed:

- version 1: the session's models (``champion``);
- version 2: the same models with the calibration intercept moved by +0.8, so its probabilities differ
  and every answer can be traced to the version that produced it;
- version 3: version 1 again, with its ``artifact_sha256`` tag overwritten by a wrong digest: it must
  never load.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from features.model.calibration import PlattCalibrator
from features.model.registry import CHAMPION, DIGEST_TAG, MODEL_NAMES, SMALL_SAMPLE_TAG, RegistrySettings
from features.record import PatientRecord
from service.audit import AuditLog
from service.security import digest
from service.settings import ServiceSettings
from tests.helpers import tracking_uri_variable_kept
from training.registry import log_and_register

CLIENT_KEY, ADMIN_KEY = "reload-client-key", "reload-admin-key"
CLIENT = {"Authorization": f"Bearer {CLIENT_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
OUTCOMES = tuple(MODEL_NAMES)
SHIFT = 0.8
pytestmark = pytest.mark.slow  # three registrations for the module's store, alias polls that wait


def _shifted(result):
    """The training result with every calibrator's intercept moved by SHIFT (a distinguishable model)."""
    outcomes = {}
    for outcome, res in result.outcomes.items():
        cal = res.model.calibrator
        model = dataclasses.replace(
            res.model, calibrator=PlattCalibrator(slope=cal.slope, intercept=cal.intercept + SHIFT)
        )
        outcomes[outcome] = dataclasses.replace(res, model=model)
    return dataclasses.replace(result, outcomes=outcomes)


@pytest.fixture(scope="module")
def store(trained, tmp_path_factory):
    """This module's registry: versions 1, 2 (shifted) and 3 (wrong digest tag) of both models."""
    root = tmp_path_factory.mktemp("reload-mlruns")
    settings = RegistrySettings(mlruns_dir=root, mlflow_tracking_uri=None)
    previous_uri = mlflow.get_tracking_uri()
    base, shifted = trained, _shifted(trained)
    with tracking_uri_variable_kept():
        try:
            log_and_register(base, settings)
            log_and_register(shifted, settings)
            log_and_register(base, settings)
        finally:
            mlflow.set_tracking_uri(previous_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    for name in MODEL_NAMES.values():
        assert client.get_model_version(name, "3").tags[DIGEST_TAG] != "0" * 64
        client.set_model_version_tag(name, "3", DIGEST_TAG, "0" * 64)
    models = {
        "1": {o: r.model for o, r in base.outcomes.items()},
        "2": {o: r.model for o, r in shifted.outcomes.items()},
    }
    return {"root": root, "tracking_uri": settings.tracking_uri, "client": client, "models": models}


@pytest.fixture
def champion(store):
    """``champion(version)`` moves the alias of both models; every test starts at version 1."""

    def move(version: str, outcomes=OUTCOMES) -> None:
        for outcome in outcomes:
            store["client"].set_registered_model_alias(MODEL_NAMES[outcome], CHAMPION, version)

    move("1")
    yield move
    move("1")


def _settings(store, tmp_path, **extra) -> ServiceSettings:
    return ServiceSettings(
        mlruns_dir=store["root"],
        # Explicit: mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which would otherwise win.
        mlflow_tracking_uri=store["tracking_uri"],
        audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
        api_keys={"clinic-a": digest(CLIENT_KEY)},
        admin_keys={"ops": digest(ADMIN_KEY)},
        **extra,
    )


def _expected(store, record) -> dict[str, dict[str, float]]:
    """Probability of ``record`` per version and outcome, from the models themselves."""
    frame = pd.DataFrame([PatientRecord.model_validate(record).to_row()])
    return {
        version: {o: float(m.probability(frame)[0]) for o, m in models.items()}
        for version, models in store["models"].items()
    }


def _served_by(body: dict, expected: dict) -> dict[str, str]:
    """The version named per outcome, after checking each probability is that version's."""
    for o in OUTCOMES:
        version = body[o]["model"]["version"]
        assert body[o]["model"]["name"] == MODEL_NAMES[o]
        assert body[o]["probability"] == pytest.approx(expected[version][o], rel=1e-12), (version, o)
    return {o: body[o]["model"]["version"] for o in OUTCOMES}


def _answered_by(body: dict, expected: dict) -> str:
    """The one version that produced an answer (never two versions within one request)."""
    versions = set(_served_by(body, expected).values())
    assert len(versions) == 1, f"one request mixed versions: {versions}"
    (version,) = versions
    return version


def _metric(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _predict_version(client, record, expected) -> str:
    response = client.post("/v1/predict", json=record, headers=CLIENT)
    assert response.status_code == 200, response.text
    return _answered_by(response.json(), expected)


def test_the_versions_differ(store, record):
    expected = _expected(store, record)
    for o in OUTCOMES:
        assert abs(expected["1"][o] - expected["2"][o]) > 0.01


def test_a_version_tagged_small_sample_is_flagged_in_models_and_in_every_answer(
    start_api, store, champion, tmp_path, record
):
    name = MODEL_NAMES["dose_reduction"]
    store["client"].set_model_version_tag(name, "2", SMALL_SAMPLE_TAG, "true")
    try:
        champion("2", outcomes=["dose_reduction"])
        client = start_api(_settings(store, tmp_path))
        models = {m["outcome"]: m for m in client.get("/v1/models", headers=CLIENT).json()["models"]}
        assert models["dose_reduction"]["small_development_sample"] is True
        assert models["discontinuation"]["small_development_sample"] is False
        body = client.post("/v1/predict", json=record, headers=CLIENT).json()
        flagged = [w for w in body["warnings"] if w["kind"] == "small_development_sample"]
        assert [w["field"] for w in flagged] == ["dose_reduction"]
        assert "rough indication" in flagged[0]["message"]
        batch = client.post("/v1/predict/batch", json={"records": [record]}, headers=CLIENT).json()
        assert batch["results"][0]["warnings"] == body["warnings"]
    finally:
        store["client"].delete_model_version_tag(name, "2", SMALL_SAMPLE_TAG)


def test_reload_serves_the_version_the_alias_moved_to(start_api, store, champion, tmp_path, record):
    expected = _expected(store, record)
    client = start_api(_settings(store, tmp_path))
    assert _predict_version(client, record, expected) == "1"

    champion("2")
    assert _predict_version(client, record, expected) == "1"  # nothing moves until a reload
    response = client.post("/v1/admin/reload", headers=ADMIN)

    assert response.status_code == 200
    both = dict.fromkeys(OUTCOMES)
    assert response.json() == {
        "reloaded": True,
        "versions": {o: "2" for o in both},
        "previous_versions": {o: "1" for o in both},
    }
    assert _predict_version(client, record, expected) == "2"
    batch = client.post("/v1/predict/batch", json={"records": [record, record]}, headers=CLIENT).json()
    assert [_answered_by(r, expected) for r in batch["results"]] == ["2", "2"]
    assert client.get("/readyz", headers=ADMIN).json()["versions"] == {o: "2" for o in both}
    models = client.get("/v1/models", headers=CLIENT).json()["models"]
    assert {m["outcome"]: m["version"] for m in models} == {o: "2" for o in both}
    assert all(m["aliases"] == [CHAMPION] for m in models)  # version 3 is the challenger
    text = client.get("/metrics").text
    assert _metric(text, "lenrisk_model_version_info", version="2") == 2
    assert _metric(text, "lenrisk_model_version_info", version="1") == 0  # only what is served
    versions = [r["model_versions"] for r in AuditLog(f"sqlite:///{tmp_path / 'audit.db'}").rows()]
    assert versions[0] == {o: "1" for o in both} and versions[-1] == {o: "2" for o in both}

    again = client.post("/v1/admin/reload", headers=ADMIN)
    assert again.status_code == 200
    assert again.json() == {
        "reloaded": False,
        "versions": {o: "2" for o in both},
        "previous_versions": {o: "2" for o in both},
    }
    forced = client.post("/v1/admin/reload", params={"force": "true"}, headers=ADMIN)
    assert forced.status_code == 200 and forced.json()["reloaded"] is True
    assert _predict_version(client, record, expected) == "2"

    champion("1")  # moving back is a reload like any other
    assert client.post("/v1/admin/reload", headers=ADMIN).json()["versions"] == {o: "1" for o in both}
    assert _predict_version(client, record, expected) == "1"
    assert _metric(client.get("/metrics").text, "lenrisk_model_reload_failures_total") == 0


def test_only_an_admin_key_reloads(start_api, store, champion, tmp_path, record):
    expected = _expected(store, record)
    client = start_api(_settings(store, tmp_path))
    champion("2")

    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
    forbidden = client.post("/v1/admin/reload", headers=CLIENT)
    assert forbidden.status_code == 403
    assert _predict_version(client, record, expected) == "1"  # a refused reload changes nothing
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    assert _predict_version(client, record, expected) == "2"


def test_a_failed_reload_keeps_the_old_versions_serving(start_api, store, champion, tmp_path, record):
    expected = _expected(store, record)
    client = start_api(_settings(store, tmp_path))
    champion("3")  # wrong artifact digest

    failed = client.post("/v1/admin/reload", headers=ADMIN)

    assert failed.status_code == 502
    detail = failed.json()["detail"]
    assert "previous versions keep serving" in detail and "version 3" in detail
    assert _predict_version(client, record, expected) == "1"
    ready = client.get("/readyz", headers=ADMIN)
    assert ready.status_code == 200 and ready.json()["versions"] == dict.fromkeys(OUTCOMES, "1")
    text = client.get("/metrics").text
    assert _metric(text, "lenrisk_model_reload_failures_total") == 1
    assert _metric(text, "lenrisk_model_version_info", version="1") == 2
    assert _metric(text, "lenrisk_model_version_info", version="3") == 0
    assert _metric(text, "lenrisk_requests_total", route="/v1/admin/reload", status="502") == 1

    assert client.post("/v1/admin/reload", params={"force": "true"}, headers=ADMIN).status_code == 502
    assert _metric(client.get("/metrics").text, "lenrisk_model_reload_failures_total") == 2

    # An alias that resolves nowhere fails the same way.
    store["client"].delete_registered_model_alias(MODEL_NAMES["dose_reduction"], CHAMPION)
    missing = client.post("/v1/admin/reload", headers=ADMIN)
    assert missing.status_code == 502 and "cannot resolve alias" in missing.json()["detail"]
    assert _metric(client.get("/metrics").text, "lenrisk_model_reload_failures_total") == 3
    assert _predict_version(client, record, expected) == "1"

    champion("2")  # a good version afterwards loads normally
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    assert _predict_version(client, record, expected) == "2"


def _wait_for(predicate, timeout: float = 20.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(0.05)
    return time.monotonic() - started


def test_the_alias_poll_follows_the_alias(start_api, store, champion, tmp_path, record):
    expected = _expected(store, record)
    client = start_api(_settings(store, tmp_path, alias_poll_seconds=0.2))
    assert _predict_version(client, record, expected) == "1"

    champion("2")

    # The poll may resolve the two aliases between their moves (they are two registry writes) and serve
    # version 2 of one model beside version 1 of the other until its next poll: wait until both follow.
    def both_follow() -> bool:
        response = client.post("/v1/predict", json=record, headers=CLIENT)
        assert response.status_code == 200, response.text
        return set(_served_by(response.json(), expected).values()) == {"2"}

    assert _wait_for(both_follow) < 10
    assert client.get("/readyz", headers=ADMIN).json()["versions"] == dict.fromkeys(OUTCOMES, "2")
    for _ in range(5):
        assert _predict_version(client, record, expected) == "2"
    assert _metric(client.get("/metrics").text, "lenrisk_model_reload_failures_total") == 0


def test_the_alias_poll_counts_failures_and_keeps_serving(start_api, store, champion, tmp_path, record):
    expected = _expected(store, record)
    client = start_api(_settings(store, tmp_path, alias_poll_seconds=0.2))

    champion("3")  # a version that must not load

    _wait_for(lambda: _metric(client.get("/metrics").text, "lenrisk_model_reload_failures_total") >= 2)
    for _ in range(5):
        assert _predict_version(client, record, expected) == "1"
    assert client.get("/readyz", headers=ADMIN).json()["versions"] == dict.fromkeys(OUTCOMES, "1")
    champion("1")  # back where it was: nothing to load, the failures stop
    time.sleep(0.6)
    before = _metric(client.get("/metrics").text, "lenrisk_model_reload_failures_total")
    time.sleep(1.0)
    assert _metric(client.get("/metrics").text, "lenrisk_model_reload_failures_total") == before
    assert _predict_version(client, record, expected) == "1"


def test_a_failed_alias_poll_reload_is_logged(start_api, store, champion, tmp_path, record, caplog):
    """Polling has no caller to answer 502 to: the failure must reach the operator's logs too."""
    caplog.set_level(logging.INFO)
    client = start_api(_settings(store, tmp_path, alias_poll_seconds=0.2))
    champion("3")
    _wait_for(lambda: _metric(client.get("/metrics").text, "lenrisk_model_reload_failures_total") >= 1)
    time.sleep(0.3)
    reported = [r for r in caplog.records if r.name.startswith("lenrisk") and r.levelno >= logging.WARNING]
    assert reported, "a failed alias-poll reload is counted but never logged"


def test_no_request_fails_or_mixes_versions_during_reloads(start_api, store, champion, tmp_path, record):
    expected = _expected(store, record)
    client = start_api(_settings(store, tmp_path))
    stop = threading.Event()
    answers: list[tuple[float, float, int, dict | None]] = []
    failures: list[BaseException] = []

    def traffic() -> None:
        try:
            while not stop.is_set():
                sent = time.monotonic()
                response = client.post("/v1/predict", json=record, headers=CLIENT)
                body = response.json() if response.status_code == 200 else None
                answers.append((sent, time.monotonic(), response.status_code, body))
        except BaseException as err:  # surfaced in the main thread
            failures.append(err)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        time.sleep(0.3)
        swaps = []  # (reload sent, reload answered, version)
        for version in ("2", "1", "2"):
            champion(version)
            sent = time.monotonic()
            response = client.post("/v1/admin/reload", headers=ADMIN)
            assert response.status_code == 200 and response.json()["reloaded"] is True
            swaps.append((sent, time.monotonic(), version))
            time.sleep(0.3)
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive() and not failures, failures

    assert len(answers) > 20
    assert [a for a in answers if a[2] != 200] == []
    served = [(sent, done, _answered_by(body, expected)) for sent, done, _, body in answers]
    assert {v for _, _, v in served} == {"1", "2"}
    during = [v for sent, _, v in served if any(start < sent < end for start, end, _ in swaps)]
    assert during, "no request was in flight while a reload loaded its models"
    # Between one reload's answer and the next reload's request, every answer is the new version's.
    for (_, answered, version), (next_sent, _, _) in zip(
        swaps, [*swaps[1:], (float("inf"), None, None)], strict=True
    ):
        between = [v for sent, done, v in served if answered < sent and done < next_sent]
        assert between and set(between) == {version}, (version, between)


def _served_and_named(client) -> dict[str, tuple[str, str | None, list[str] | None]]:
    """Per outcome: the version serving, the version the alias names now, the aliases on the served one."""
    body = client.get("/v1/models", headers=CLIENT).json()
    assert body["registry"] == "ok"
    return {m["outcome"]: (m["version"], m["alias_version"], m["aliases"]) for m in body["models"]}


def test_models_report_the_aliases_as_they_are_now(start_api, store, champion, tmp_path):
    client = start_api(_settings(store, tmp_path))
    assert _served_and_named(client) == dict.fromkeys(OUTCOMES, ("1", "1", [CHAMPION]))

    champion("2")  # no reload yet: version 1 serves, the alias names version 2

    assert _served_and_named(client) == dict.fromkeys(OUTCOMES, ("1", "2", []))


def test_a_failed_reload_shows_as_degraded_with_both_versions_and_a_gauge(
    start_api, store, champion, tmp_path
):
    client = start_api(_settings(store, tmp_path))
    assert _metric(client.get("/metrics").text, "lenrisk_model_reload_failing") == 0
    champion("3")  # wrong artifact digest

    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 502

    assert _served_and_named(client) == dict.fromkeys(OUTCOMES, ("1", "3", []))
    public = client.get("/readyz")
    assert public.status_code == 200 and public.json() == {"status": "degraded"}  # the old version serves
    admin = client.get("/readyz", headers=ADMIN).json()
    assert admin["status"] == "degraded" and admin["versions"] == dict.fromkeys(OUTCOMES, "1")
    assert "version 3" in admin["detail"]
    assert _metric(client.get("/metrics").text, "lenrisk_model_reload_failing") == 1

    champion("2")  # fixed: a good version
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200

    assert _served_and_named(client) == dict.fromkeys(OUTCOMES, ("2", "2", [CHAMPION]))
    assert client.get("/readyz").json() == {"status": "ready"}
    assert _metric(client.get("/metrics").text, "lenrisk_model_reload_failing") == 0
