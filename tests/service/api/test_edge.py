"""The serving edge (issue 13): only routed endpoints are audited, by route template; unknown field names are
not echoed.
"""

from __future__ import annotations

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
    """A ready app with two client keys."""
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
