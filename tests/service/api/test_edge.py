"""The serving edge (issue 13): only routed endpoints are audited, by route template; unknown field names are
not echoed; authentication comes before the body is read; rate limits per client and per address.
"""

from __future__ import annotations

import json

import pytest

from service.audit import AuditLog
from service.security import digest
from tests.helpers import registry_service_settings

KEYS = {"clinic-a": "key-a-Zq81", "clinic-b": "key-b-Pm40"}
A = {"Authorization": f"Bearer {KEYS['clinic-a']}"}
B = {"Authorization": f"Bearer {KEYS['clinic-b']}"}
WRONG = {"Authorization": "Bearer not-a-key"}
JSON = {"content-type": "application/json"}
CANARY = "CANARY-991"

pytestmark = pytest.mark.slow  # the session's trained models


def _settings(registry, audit_url: str, **extra):
    """Settings on the session's registry with two client keys (as digests)."""
    keys = {name: digest(key) for name, key in KEYS.items()}
    return registry_service_settings(registry, audit_url, api_keys=keys, **extra)


def _rows(url: str) -> list[dict]:
    log = AuditLog(url)
    try:
        return log.rows()
    finally:
        log.close()


@pytest.fixture
def audit_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def keyed(start_api, registry, audit_url):
    """A ready app with two client keys and rate limits off (the test default)."""
    return start_api(_settings(registry, audit_url))


# ------------------------------------------------------------------------------------------- 4. the audit


def test_unrouted_paths_are_not_audited_and_routed_ones_by_template(keyed, audit_url, record):
    for path in (f"/v1/predict{CANARY}", f"/v1/predict/{CANARY}", f"/v1/predict{CANARY}" + "x" * 5000):
        assert keyed.post(path, json=record).status_code == 404, path[:40]
        assert keyed.post(path, json=record, headers=A).status_code == 404, path[:40]
    assert _rows(audit_url) == []

    assert keyed.post("/v1/predict", json=record, headers=A).status_code == 200
    refused = keyed.post(f"/cds-services/{CANARY}" + "x" * 5000, json={})  # routed: {service_id}
    assert refused.status_code == 401
    assert [r["route"] for r in _rows(audit_url)] == ["/v1/predict", "/cds-services/{service_id}"]
    assert CANARY not in repr(_rows(audit_url))
    metrics = keyed.get("/metrics").text
    assert CANARY not in metrics and 'route="unmatched",status="404"' in metrics


@pytest.mark.external  # PostgreSQL
def test_a_long_unrouted_path_is_404_on_postgresql(postgres_database, start_api, registry, record):
    url = postgres_database.replace("postgresql://", "postgresql+psycopg2://")
    client = start_api(_settings(registry, url))

    response = client.post(f"/v1/predict{CANARY}" + "x" * 5000, json=record)

    assert response.status_code == 404
    assert client.post("/v1/predict", json=record, headers=A).status_code == 200
    rows = _rows(url)
    assert [r["route"] for r in rows] == ["/v1/predict"] and CANARY not in repr(rows)


# ----------------------------------------------------------------------------- 5. unknown field names


def test_unknown_field_names_are_not_echoed(keyed, record):
    key = CANARY + "y" * 100_000
    for path, body in (
        ("/v1/predict", {**record, key: 1}),
        ("/v1/predict/batch", {"records": [{**record, key: 1}]}),
        ("/v1/predict/batch", {"records": [record], key: 1}),
    ):
        response = keyed.post(path, json=body, headers=A)
        assert response.status_code == 422, path
        assert CANARY not in response.text, path
        (item,) = response.json()["detail"]
        assert item["type"] == "extra_forbidden" and item["loc"][-1] == "<unknown field>", path
    # Contract fields are still named.
    response = keyed.post("/v1/predict", json={**record, "sex": "Male"}, headers=A)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "sex"]


# ------------------------------------------------------------------- 7. authentication before the body


BROKEN = b'{"age": 74, "sex": "male", "regimen": '


def test_unauthenticated_requests_get_401_before_the_body_is_parsed(keyed):
    for path in ("/v1/predict", "/v1/predict/batch"):
        for headers in ({}, WRONG, {"Authorization": "Basic x"}):
            response = keyed.post(path, content=BROKEN, headers={**JSON, **headers})
            assert response.status_code == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "json" not in response.text.lower() and "loc" not in response.text
    assert keyed.post("/v1/predict", content=BROKEN, headers={**JSON, **A}).status_code == 422


def test_the_body_of_an_unauthenticated_request_is_never_read(keyed):
    """At the ASGI level: the 401 is sent without one ``receive`` call."""
    received, sent = [], []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": BROKEN, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predict",
        "raw_path": b"/v1/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("203.0.113.9", 5000),
        "server": ("testserver", 80),
    }
    keyed.portal.call(keyed.app, scope, receive, send)

    assert sent[0]["status"] == 401 and received == []


# ------------------------------------------------------------------------------------- 8. rate limits


def _limited(start_api, registry, audit_url, **limits):
    return start_api(_settings(registry, audit_url, rate_limit_enabled=True, **limits))


def _metric(client, scope: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'lenrisk_rate_limited_total{{scope="{scope}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_failed_authentication_is_limited_per_address(start_api, registry, audit_url, record):
    client = _limited(start_api, registry, audit_url, rate_limit_failed_auth="3/minute")

    statuses = [client.post("/v1/predict", json=record, headers=WRONG).status_code for _ in range(4)]

    assert statuses == [401, 401, 401, 429]
    limited = client.get("/v1/models", headers=WRONG)
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "too many" in limited.json()["detail"]
    assert _metric(client, "failed_auth") == 2
    # A valid key from the same address (a clinic behind the same NAT) is not starved.
    assert client.post("/v1/predict", json=record, headers=A).status_code == 200


def test_each_client_is_limited_by_its_own_budget(start_api, registry, audit_url):
    client = _limited(start_api, registry, audit_url, rate_limit_per_client="5/minute")

    statuses = [client.get("/v1/models", headers=A).status_code for _ in range(6)]

    assert statuses == [200] * 5 + [429]
    assert int(client.get("/v1/models", headers=A).headers["Retry-After"]) >= 1
    assert [client.get("/v1/models", headers=B).status_code for _ in range(5)] == [200] * 5
    assert _metric(client, "client") == 2 and _metric(client, "failed_auth") == 0


def test_rate_limits_can_be_turned_off(start_api, registry, audit_url):
    client = start_api(
        _settings(
            registry,
            audit_url,
            rate_limit_enabled=False,
            rate_limit_per_client="1/minute",
            rate_limit_failed_auth="1/minute",
        )
    )
    assert {client.get("/v1/models", headers=WRONG).status_code for _ in range(5)} == {401}
    assert {client.get("/v1/models", headers=A).status_code for _ in range(5)} == {200}
    assert _metric(client, "client") == _metric(client, "failed_auth") == 0


def test_rate_limit_settings_are_validated(registry):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="rate limit"):
        _settings(registry, "sqlite://", rate_limit_per_client="lots")
    assert json.loads(_settings(registry, "sqlite://").model_dump_json())["rate_limit_per_client"]


def test_a_down_rate_limit_store_lets_requests_through(start_api, registry, audit_url, monkeypatch, caplog):
    from limits.errors import StorageError
    from limits.strategies import MovingWindowRateLimiter

    client = _limited(start_api, registry, audit_url, rate_limit_failed_auth="1/minute")

    def down(*_, **__):
        raise StorageError(ConnectionError("redis down"))

    monkeypatch.setattr(MovingWindowRateLimiter, "hit", down)
    assert [client.get("/v1/models", headers=WRONG).status_code for _ in range(3)] == [401] * 3
    assert client.get("/v1/models", headers=A).status_code == 200
    assert "rate-limit store unavailable" in caplog.text


def test_a_route_declaring_a_client_refuses_a_request_the_gate_did_not_authenticate():
    from starlette.requests import Request

    from service.api.deps import authenticated, cds_client
    from service.errors import UnauthorizedError

    request = Request({"type": "http", "state": {"client": None}})
    with pytest.raises(UnauthorizedError):
        authenticated(request, None)
    with pytest.raises(UnauthorizedError):
        cds_client(request)
