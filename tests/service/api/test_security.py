"""API keys, the loopback-only refusal of ``lenrisk serve``, the audit trail (SQLite and a real PostgreSQL),
failing closed when the audit store is down, and no patient data in logs or error bodies.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import uvicorn
from pydantic import ValidationError
from typer.testing import CliRunner

from features.record import PatientRecord
from features.schema import COMORBIDITY_COLUMNS
from service.api.loopback import is_loopback
from service.audit import AUDIT_TABLE, AuditLog, canonical_hmac
from service.cli import app as cli
from service.security import digest
from service.settings import ServiceSettings
from tests.helpers import registry_service_settings

CLIENT_KEY, ADMIN_KEY = "client-key-Zq81", "admin-key-Lw27"
CLIENT = {"Authorization": f"Bearer {CLIENT_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HMAC_KEY = "audit-hmac-key-for-tests"
JSON = {"content-type": "application/json"}


def _settings(registry, audit_url: str, **extra) -> ServiceSettings:
    """Settings on the session's registry with one client key, one admin key and a known audit HMAC key."""
    return registry_service_settings(
        registry,
        audit_url,
        api_keys={"clinic-a": digest(CLIENT_KEY)},
        admin_keys={"ops": digest(ADMIN_KEY)},
        audit_hmac_key=HMAC_KEY,
        **extra,
    )


@pytest.fixture
def audit_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def keyed(start_api, registry, audit_url):
    """A ready app with one client key and one admin key (as digests) and a known audit HMAC key."""
    return start_api(_settings(registry, audit_url))


def _rows(url: str) -> list[dict]:
    log = AuditLog(url)
    try:
        return log.rows()
    finally:
        log.close()


def _hmac(*records: dict) -> str:
    rows = [PatientRecord.model_validate(r).to_row() for r in records]
    return canonical_hmac(HMAC_KEY.encode(), rows)


# --------------------------------------------------------------------------------------------- API keys


@pytest.mark.slow  # the session's trained models
def test_predictions_need_a_valid_key(keyed, record):
    assert keyed.post("/v1/predict", json=record, headers=CLIENT).status_code == 200
    assert keyed.post("/v1/predict", json=record, headers=ADMIN).status_code == 200
    refused = {
        "no header": {},
        "wrong key": {"Authorization": "Bearer not-the-key"},
        "empty key": {"Authorization": "Bearer "},
        "basic": {"Authorization": f"Basic {CLIENT_KEY}"},
        "bare key": {"Authorization": CLIENT_KEY},
        "the digest itself": {"Authorization": f"Bearer {digest(CLIENT_KEY)}"},
        "key with a suffix": {"Authorization": f"Bearer {CLIENT_KEY}x"},
    }
    for why, headers in refused.items():
        for method, path, body in (
            ("post", "/v1/predict", record),
            ("post", "/v1/predict/batch", {"records": [record]}),
            ("get", "/v1/models", None),
        ):
            response = keyed.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (why, path)
            assert response.headers["WWW-Authenticate"] == "Bearer", (why, path)
            assert "probability" not in response.text and CLIENT_KEY not in response.text
    # Operations endpoints stay open for probes and scrapers.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert keyed.get(path).status_code == 200, path


@pytest.mark.slow  # the session's trained models
def test_keys_are_configured_as_digests_only(registry):
    with pytest.raises(ValidationError, match="SHA-256"):
        ServiceSettings(mlruns_dir=registry["root"], api_keys={"clinic-a": CLIENT_KEY})
    with pytest.raises(ValidationError, match="SHA-256"):
        ServiceSettings(mlruns_dir=registry["root"], api_keys={"clinic-a": digest(CLIENT_KEY).upper()})
    with pytest.raises(ValidationError, match="admin keys without API keys"):
        ServiceSettings(mlruns_dir=registry["root"], admin_keys={"ops": digest(ADMIN_KEY)})
    settings = _settings(registry, "sqlite://")
    assert settings.auth_enabled and CLIENT_KEY not in settings.model_dump_json()


@pytest.mark.slow  # the session's trained models
def test_only_admin_keys_may_reload(keyed):
    assert keyed.post("/v1/admin/reload").status_code == 401
    forbidden = keyed.post("/v1/admin/reload", headers=CLIENT)
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["detail"]
    allowed = keyed.post("/v1/admin/reload", headers=ADMIN)
    assert allowed.status_code == 200 and allowed.json()["reloaded"] is False


# ------------------------------------------------------------------------------------- serve refusal


@pytest.fixture
def fake_uvicorn(monkeypatch):
    """Record ``uvicorn.run`` calls instead of starting a server."""
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    for name in ("LENRISK_API_KEYS", "LENRISK_ADMIN_KEYS"):
        monkeypatch.delenv(name, raising=False)
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "lenrisk.example.org"])
def test_serve_refuses_to_listen_beyond_loopback_without_keys(fake_uvicorn, host):
    result = CliRunner().invoke(cli, ["serve", "--host", host, "--quiet"])

    assert result.exit_code == 2, result.output
    assert "refusing to listen" in result.output and host in result.output
    assert fake_uvicorn == []


def test_serve_starts_on_loopback_without_keys_and_anywhere_with_keys(fake_uvicorn, monkeypatch):
    result = CliRunner().invoke(cli, ["serve", "--host", "127.0.0.1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert [call["host"] for call in fake_uvicorn] == ["127.0.0.1"]

    monkeypatch.setenv("LENRISK_API_KEYS", json.dumps({"clinic-a": digest(CLIENT_KEY)}))
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert [call["host"] for call in fake_uvicorn] == ["127.0.0.1", "0.0.0.0"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("fe80::1", False),
        ("localhost.example.org", False),
        ("", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


# ------------------------------------------------------------------------------------------- the audit


def _exercise(client, record) -> list[tuple[int, str, str, str]]:
    """Prediction requests of every outcome; returns (status, request id, route, client) per request."""
    other = {**record, "age": 61.5, "sex": "female", "comorbidities": []}
    calls = [
        ("/v1/predict", record, CLIENT, "clinic-a"),
        ("/v1/predict/batch", {"records": [record, other]}, ADMIN, "ops"),
        ("/v1/predict", record, {}, "unauthenticated"),
        ("/v1/predict", {**record, "sex": "Male"}, CLIENT, "clinic-a"),
        ("/v1/predict/batch", {"records": [{**record, "mrn": "x"}]}, CLIENT, "clinic-a"),
    ]
    seen = []
    for path, body, headers, who in calls:
        response = client.post(path, json=body, headers=headers)
        seen.append((response, path, who))
    too_big = client.post("/v1/predict", content=b" " * (1_048_577), headers={**CLIENT, **JSON})
    seen.append((too_big, "/v1/predict", None))
    # Not prediction requests: not audited.
    assert client.get("/v1/models", headers=CLIENT).status_code == 200
    assert client.get("/healthz").status_code == 200
    return seen


def _check_audit(rows: list[dict], seen, record: dict, started: datetime) -> None:
    assert [r["status"] for r in rows] == [200, 200, 401, 422, 422, 413]
    assert [r["status"] for r in rows] == [resp.status_code for resp, _, _ in seen]
    assert [r["request_id"] for r in rows] == [resp.headers["X-Request-ID"] for resp, _, _ in seen]
    assert [r["route"] for r in rows] == [path for _, path, _ in seen]
    assert [r["client"] for r in rows[:5]] == [who for _, _, who in seen[:5]]
    assert rows[5]["client"] in ("unauthenticated", "clinic-a")  # refused before authentication
    assert len({r["id"] for r in rows}) == 6
    finished = datetime.now(UTC)
    for r in rows:
        stamp = r["time"] if r["time"].tzinfo else r["time"].replace(tzinfo=UTC)
        assert started.replace(microsecond=0) <= stamp <= finished, r
    single, batch = seen[0][0].json(), seen[1][0].json()
    other = {**record, "age": 61.5, "sex": "female", "comorbidities": []}
    assert rows[0]["input_hmac"] == _hmac(record)
    assert rows[1]["input_hmac"] == _hmac(record, other)
    for row in rows[:2]:
        assert row["model_versions"] == {"discontinuation": "1", "dose_reduction": "1"}
    assert rows[0]["outputs"] == [
        {
            o: {k: single[o][k] for k in ("probability", "risk_band")}
            for o in ("discontinuation", "dose_reduction")
        }
    ]
    assert rows[1]["outputs"] == [
        {o: {k: r[o][k] for k in ("probability", "risk_band")} for o in ("discontinuation", "dose_reduction")}
        for r in batch["results"]
    ]
    for row in rows[2:]:
        assert (row["model_versions"], row["input_hmac"], row["outputs"]) == (None, None, None)


@pytest.mark.slow  # the session's trained models
def test_every_prediction_request_writes_exactly_one_audit_row(keyed, audit_url, record):
    started = datetime.now(UTC)
    seen = _exercise(keyed, record)
    _check_audit(_rows(audit_url), seen, record, started)


@pytest.mark.slow  # the session's trained models
def test_the_input_hmac_is_canonical_and_keyed(start_api, registry, audit_url, tmp_path, record):
    client = start_api(_settings(registry, audit_url))
    flags = {k: v for k, v in record.items() if k != "comorbidities"}
    flags.update({c: int(c == "cm_cardiac") for c in COMORBIDITY_COLUMNS})
    variants = [record, flags, {**record, "age": 74.0}, dict(reversed(list(record.items())))]
    for body in variants:
        assert client.post("/v1/predict", json=body, headers=CLIENT).status_code == 200
    assert client.post("/v1/predict", json={**record, "age": 74.5}, headers=CLIENT).status_code == 200
    other_key = start_api(  # no HMAC key configured: a random one per process
        registry_service_settings(
            registry, f"sqlite:///{tmp_path / 'other.db'}", api_keys={"clinic-a": digest(CLIENT_KEY)}
        )
    )
    assert other_key.post("/v1/predict", json=record).status_code == 401  # keys still required
    assert other_key.post("/v1/predict", json=record, headers=CLIENT).status_code == 200

    hmacs = [r["input_hmac"] for r in _rows(audit_url)]
    assert hmacs[:4] == [_hmac(record)] * 4  # the same line, however it was written
    assert hmacs[4] != hmacs[0]
    elsewhere = [r["input_hmac"] for r in _rows(f"sqlite:///{tmp_path / 'other.db'}") if r["input_hmac"]]
    assert len(elsewhere) == 1 and elsewhere[0] != hmacs[0]  # keyed: another server key, another HMAC
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hmacs)


@pytest.fixture
def postgres_url(postgres_database):
    """The fresh database as an SQLAlchemy URL for the audit store."""
    return postgres_database.replace("postgresql://", "postgresql+psycopg2://")


@pytest.mark.slow  # PostgreSQL, and the session's trained models
@pytest.mark.external
def test_the_audit_trail_in_postgresql(postgres_url, start_api, registry, record):
    client = start_api(_settings(registry, postgres_url))
    started = datetime.now(UTC)

    seen = _exercise(client, record)

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert engine.dialect.name == "postgresql"
            rows = [dict(r._mapping) for r in conn.execute(sa.select(AUDIT_TABLE).order_by(AUDIT_TABLE.c.id))]
            columns = {c["name"] for c in sa.inspect(conn).get_columns("lenrisk_audit")}
    finally:
        engine.dispose()
    assert columns == {c.name for c in AUDIT_TABLE.columns}
    assert all(r["time"].tzinfo is not None for r in rows)
    _check_audit(rows, seen, record, started)


# --------------------------------------------------------------------------------------- fail closed


@pytest.mark.slow  # the session's trained models
def test_predictions_fail_closed_when_the_audit_store_fails(start_api, registry, audit_url, tmp_path, record):
    client = start_api(_settings(registry, audit_url))
    assert client.post("/v1/predict", json=record, headers=CLIENT).status_code == 200

    with closing(sqlite3.connect(tmp_path / "audit.db")) as db:
        db.execute("DROP TABLE lenrisk_audit")
        db.commit()

    for path, body in (("/v1/predict", record), ("/v1/predict/batch", {"records": [record]})):
        response = client.post(path, json=body, headers=CLIENT)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"].isdigit()
        assert "audit" in response.json()["detail"]
        assert "probability" not in response.text and "contributions" not in response.text
        assert response.headers["X-Request-ID"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/models", headers=CLIENT).status_code == 200  # not a prediction: not audited
    metrics = client.get("/metrics").text
    assert 'lenrisk_requests_total{route="/v1/predict",status="503"} 1.0' in metrics

    # The store comes back: predictions resume, each audited again.
    AuditLog(audit_url).close()  # recreates the table
    recovered = client.post("/v1/predict", json=record, headers=CLIENT)
    assert recovered.status_code == 200
    assert [r["request_id"] for r in _rows(audit_url)] == [recovered.headers["X-Request-ID"]]


@pytest.mark.slow  # the session's trained models
def test_an_unreachable_audit_store_at_startup_serves_no_prediction(start_api, registry, tmp_path, record):
    missing = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'audit.db'}"
    try:
        client = start_api(_settings(registry, missing), ready=False)
    except Exception as err:  # refusing to start is failing closed too
        assert "audit" in str(err).lower()
        return
    time.sleep(1)
    response = client.post("/v1/predict", json=record, headers=CLIENT)
    assert response.status_code == 503 and "probability" not in response.text


# ------------------------------------------------------------------------------------ no PHI anywhere

PATIENT_ID, MRN = "PHI-CANARY-7f3a", "MRN-CANARY-991"
# Six significant digits: no log line prints a coincidentally equal number (SQLAlchemy's "[cached since
# 47.93s ago]" once matched a four-digit canary).
DISTINCTIVE = {"age": 83.1717, "crcl_ml_min": 47.9317, "start_dose_mg": 12.3517}
CANARIES = (PATIENT_ID, MRN, "83.1717", "47.9317", "12.3517")


@pytest.fixture
def all_logs(caplog):
    """Every logger at DEBUG into caplog, including loggers that do not propagate."""
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
        if not lg.propagate:
            lg.addHandler(caplog.handler)
    yield caplog
    for lg, level, disabled in saved:
        lg.setLevel(level)
        lg.disabled = disabled
        if caplog.handler in lg.handlers:
            lg.removeHandler(caplog.handler)


@pytest.mark.slow  # the session's trained models
def test_no_patient_values_or_ids_in_logs_or_error_bodies(
    all_logs, capfd, start_api, registry, audit_url, record
):
    client = start_api(_settings(registry, audit_url, max_body_bytes=4096))
    patient = {**record, **DISTINCTIVE, "patient_id": PATIENT_ID}
    ok = client.post("/v1/predict", json=patient, headers=CLIENT)
    assert ok.status_code == 200
    assert PATIENT_ID not in ok.text  # the id is not needed in the answer either
    bad_requests = [
        ("/v1/predict", {**patient, "sex": "Male"}, CLIENT),
        ("/v1/predict", {**patient, "age": "abc"}, CLIENT),
        ("/v1/predict", {**patient, "mrn": MRN}, CLIENT),
        ("/v1/predict", {**patient, "regimen": PATIENT_ID}, CLIENT),
        ("/v1/predict", {**patient, "comorbidities": [MRN]}, CLIENT),
        ("/v1/predict", {**patient, "patient_id": PATIENT_ID + "\x00"}, CLIENT),
        ("/v1/predict/batch", {"records": [patient, {**patient, "sex": "Male", "mrn": MRN}]}, CLIENT),
        ("/v1/predict/batch", {"records": [patient] * 20}, CLIENT),  # over the 4 KiB limit: 413
        ("/v1/predict", patient, {"Authorization": f"Bearer {PATIENT_ID}"}),
        ("/v1/predict", patient, {}),
        ("/v1/admin/reload", patient, CLIENT),
    ]
    errors = []
    for path, body, headers in bad_requests:
        response = client.post(path, json=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        errors.append(response)
    raw = json.dumps(patient)[:-1] + f', "mrn": "{MRN}", '  # truncated JSON
    errors.append(client.post("/v1/predict", content=raw, headers={**CLIENT, **JSON}))
    assert {r.status_code for r in errors} == {401, 403, 413, 422}

    for response in errors:
        for canary in CANARIES:
            assert canary not in response.text, (response.status_code, canary)
            assert all(canary not in v for v in response.headers.values())
    logged = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}"
        for r in all_logs.records
    )
    out, err = capfd.readouterr()
    assert all_logs.records, "nothing was logged: the capture is not working"
    for canary in CANARIES:
        assert canary not in logged, canary
        assert canary not in out + err, canary
    rows = _rows(audit_url)
    assert len(rows) == 1 + 10 + 1  # every prediction request; the admin route is not audited
    assert rows[0]["status"] == 200 and rows[0]["input_hmac"] == _hmac(patient)
    assert set(rows[0]["outputs"][0]["discontinuation"]) == {"probability", "risk_band"}
    for row in rows:
        assert set(row) == {c.name for c in AUDIT_TABLE.columns}
        for canary in CANARIES:
            assert canary not in repr(row), canary


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=[pytest.mark.slow, pytest.mark.external])]
)
def test_jwt_ids_are_first_used_once_per_store_until_they_expire(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    if backend == "postgresql":  # as LENRISK_AUDIT_URL=postgresql://... is read: the installed driver
        url = ServiceSettings(audit_url=request.getfixturevalue("postgres_database")).audit_url
    first, second = AuditLog(url), AuditLog(url)  # two workers
    try:
        later = time.time() + 60
        assert first.first_use("https://ehr.example.org", "jti-1", later)
        assert not second.first_use("https://ehr.example.org", "jti-1", later)  # replayed elsewhere
        assert not first.first_use("https://ehr.example.org", "jti-1", later)
        assert second.first_use("https://other.example.org", "jti-1", later)  # per issuer
        assert first.first_use("https://ehr.example.org", "jti-2", time.time() - 1)  # stored already expired
        assert second.first_use("https://ehr.example.org", "jti-2", later)  # an expired id may come again
        assert not first.first_use("https://ehr.example.org", "jti-2", later)
    finally:
        first.close()
        second.close()
