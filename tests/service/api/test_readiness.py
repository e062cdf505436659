"""What /readyz tells whom while the models load, fail to load, serve or serve degraded; loads retried.

Unauthenticated callers (probes) get a state only; the error text and the versions are for admin keys.
"""

from __future__ import annotations

import logging
import shutil
import time

import pytest

from service.errors import ModelLoadError
from service.model_store import load_predictor
from service.security import digest
from tests.helpers import registry_service_settings

pytestmark = pytest.mark.slow  # the session's registry

CLIENT_KEY, ADMIN_KEY = "readiness-client-key", "readiness-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
#: What a failed load may say internally: an artifact path and digests, never for unauthenticated callers.
INTERNALS = "/srv/mlruns/artifacts/7f3a/risk_model: sha256 deadbeef00 != 0123abcd99"


def _keyed(registry, tmp_path, **fields):
    return registry_service_settings(
        registry,
        f"sqlite:///{tmp_path / 'audit.db'}",
        api_keys={"clinic-a": digest(CLIENT_KEY)},
        admin_keys={"ops": digest(ADMIN_KEY)},
        **fields,
    )


def _wait_for(client, predicate, timeout: float, **request) -> dict:
    deadline = time.monotonic() + timeout
    while not predicate(response := client.get("/readyz", **request)):
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)
    return response


def test_unauthenticated_readiness_is_a_state_only_and_admins_get_the_details(start_api, registry, tmp_path):
    failing = True

    def loader(settings, versions):
        if failing:
            raise ModelLoadError(f"cannot load lenalidomide-discontinuation version 1: {INTERNALS}")
        return load_predictor(settings, versions)

    client = start_api(_keyed(registry, tmp_path), ready=False, loader=loader)
    failed = _wait_for(client, lambda r: r.status_code == 503 and "load_failed" in r.text, 10)

    assert failed.json() == {"status": "load_failed"}
    assert failed.headers["Retry-After"].isdigit()
    for secret in ("/srv/", "sha256", "deadbeef", "version 1", "cannot load"):
        assert secret not in failed.text
    admin = client.get("/readyz", headers=ADMIN)
    assert admin.status_code == 503 and admin.json()["status"] == "load_failed"
    assert INTERNALS in admin.json()["detail"]
    assert client.get("/readyz", headers={"Authorization": f"Bearer {CLIENT_KEY}"}).json() == failed.json()
    assert client.get("/readyz", headers={"Authorization": "Bearer wrong"}).status_code == 401

    failing = False
    ready = _wait_for(client, lambda r: r.status_code == 200, 20)
    assert ready.json() == {"status": "ready"}
    admin = client.get("/readyz", headers=ADMIN)
    assert admin.json() == {"status": "ready", "versions": {"discontinuation": "1", "dose_reduction": "1"}}


def test_any_failure_of_a_load_is_logged_shown_and_retried(start_api, service_settings, caplog):
    """Not only the service's own error: whatever the registry client raises (e.g. SQLAlchemy's)."""
    caplog.set_level(logging.INFO)
    calls = []

    def loader(settings, versions):
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError("OperationalError: connection refused")
        return load_predictor(settings, versions)

    client = start_api(service_settings, ready=False, loader=loader)
    _wait_for(client, lambda r: r.json()["status"] == "load_failed", 10)
    ready = _wait_for(client, lambda r: r.status_code == 200, 15)

    assert ready.json()["status"] == "ready" and len(calls) == 3
    assert 0.8 < calls[1] - calls[0] < 1.8 and 1.8 < calls[2] - calls[1] < 3.0  # backoff: 1 s, then 2 s
    logged = [r for r in caplog.records if r.name.startswith("lenrisk") and r.levelno >= logging.ERROR]
    assert len(logged) >= 2 and "connection refused" in logged[0].getMessage()


def test_a_missing_sqlite_registry_is_reported_never_created_and_picked_up_when_it_appears(
    start_api, registry, tmp_path
):
    missing = tmp_path / "missing" / "dir" / "none.db"
    settings = registry_service_settings(registry, f"sqlite:///{tmp_path / 'audit.db'}")
    settings.mlflow_tracking_uri = f"sqlite:///{missing}"

    client = start_api(settings, ready=False)
    not_found = _wait_for(client, lambda r: r.json()["status"] == "registry_not_found", 15)

    assert not_found.status_code == 503
    assert "registry not found" in not_found.json()["detail"]  # auth off: the caller is the admin
    time.sleep(1.5)  # a retry at least
    assert not (tmp_path / "missing").exists(), "serving created a registry"

    missing.parent.mkdir(parents=True)
    shutil.copy(registry["root"] / "mlflow.db", missing)  # the registry appears
    assert _wait_for(client, lambda r: r.status_code == 200, 15).json()["status"] == "ready"
