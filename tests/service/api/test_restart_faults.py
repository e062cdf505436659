"""Restart under faults: a real ``uvicorn --factory`` process started while its PostgreSQL registry is
unreachable becomes ready soon after the registry appears, and says what it is waiting for meanwhile.

The registry is a fresh database on the local PostgreSQL server (``postgres_database`` starts the server if
it is down and never skips), reached by the service through a port nothing listens on at first; a TCP
forwarder opened on that port later is the registry coming up.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from features.model.registry import RegistrySettings
from tests.conftest import POSTGRES
from tests.helpers import REPO_ROOT, tracking_uri_variable_kept
from training.registry import log_and_register

pytestmark = [pytest.mark.slow, pytest.mark.external]

UVICORN = (sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app")
#: The issue's target: ready within this many seconds of the registry coming up.
READY_WITHIN = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def _forwarder(port: int, target: tuple[str, int]) -> Iterator[None]:
    """Forward TCP connections on 127.0.0.1:``port`` to ``target`` while the context is open."""
    server = socket.create_server(("127.0.0.1", port))
    connections: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                upstream = socket.create_connection(target)
                connections.extend((client, upstream))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield
    finally:
        server.close()
        for connection in connections:
            connection.close()


@contextlib.contextmanager
def _uvicorn(env: dict[str, str], log_path) -> Iterator[str]:
    """A real ``uvicorn --factory service.api.app:create_app`` process; yields its base URL."""
    port = _free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*UVICORN, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(30)


def _wait(url: str, predicate, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            response = httpx.get(url, timeout=5)
            if predicate(response):
                return response
        assert time.monotonic() < deadline, f"{url}: condition not met within {timeout} s"
        time.sleep(0.1)


def test_a_registry_that_is_down_at_start_is_waited_for_and_served_soon_after_it_comes_up(
    postgres_database, trained, tmp_path, record
):
    unreachable = _free_port()  # nothing listens here until the forwarder opens
    served_uri = postgres_database.replace(f":{POSTGRES['port']}/", f":{unreachable}/")
    log_path = tmp_path / "uvicorn.log"
    env = {
        "MLFLOW_TRACKING_URI": served_uri,
        "LENRISK_MLRUNS_DIR": str(tmp_path),
        "LENRISK_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
    }
    with _uvicorn(env, log_path) as base:
        _wait(f"{base}/healthz", lambda r: r.status_code == 200, 60)
        waiting = _wait(f"{base}/readyz", lambda r: "registry_unavailable" in r.text, 30)
        assert waiting.status_code == 503 and waiting.headers["Retry-After"].isdigit()
        assert "registry unreachable" in waiting.json()["detail"]  # no keys: the loopback caller is admin

        # The registry is filled while the service still cannot reach it, then comes up.
        registry = RegistrySettings(mlflow_tracking_uri=postgres_database, mlruns_dir=tmp_path)
        with tracking_uri_variable_kept():
            log_and_register(trained, registry)
        assert httpx.get(f"{base}/readyz").status_code == 503
        with _forwarder(unreachable, (POSTGRES["host"], POSTGRES["port"])):
            up = time.monotonic()
            ready = _wait(f"{base}/readyz", lambda r: r.status_code == 200, 60)
            took = time.monotonic() - up
            print(f"ready {took:.1f} s after the registry came up")
            assert ready.json()["status"] == "ready"
            assert took < READY_WITHIN, f"ready {took:.1f} s after the registry came up"
            answer = httpx.post(f"{base}/v1/predict", json=record, timeout=30)
            assert answer.status_code == 200, answer.text

    log = log_path.read_text()
    assert "models not loaded" in log and "registry unreachable" in log, log[-3000:]
