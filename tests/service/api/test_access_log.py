"""uvicorn's access log names the path of each request, never its query string (it may carry patient data).

The app is started the way ``lenrisk serve`` and ``uvicorn --factory`` start it (uvicorn's own logging
configuration, then the factory), in-process on a free loopback port; the access log is read as uvicorn's
formatter writes it. Its registry is empty: the requests need no models.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from uvicorn.logging import AccessFormatter

from service.api.access_log import PathWithoutQuery
from service.api.app import create_app
from service.settings import ServiceSettings

CANARY = "CANARY-4471"


@pytest.fixture
def access_log(monkeypatch, tmp_path):
    """(base URL, the access log text so far) of the app under uvicorn, created by its factory."""
    monkeypatch.setenv("LENRISK_AUDIT_URL", f"sqlite:///{tmp_path / 'audit.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(tmp_path / "mlruns"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config("service.api.app:create_app", factory=True, host="127.0.0.1", port=port)
    logger = logging.getLogger("uvicorn.access")
    stream = io.StringIO()
    written = logging.StreamHandler(stream)
    written.setFormatter(
        AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    )
    logger.addHandler(written)  # beside uvicorn's own handler, configured above by uvicorn.Config
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", stream.getvalue
    server.should_exit = True
    thread.join(timeout=15)
    logger.removeHandler(written)


def test_the_access_log_keeps_the_path_and_drops_the_query(access_log):
    base, log = access_log
    requests = [
        ("GET", "/healthz", f"?patient_id={CANARY}"),
        ("POST", "/v1/predict", f"?patient_id={CANARY}&x=1"),
        ("GET", "/nowhere/CANARY", f"?{CANARY}"),
    ]
    statuses = [httpx.request(method, base + path + query).status_code for method, path, query in requests]
    deadline = time.monotonic() + 5
    while log().count("\n") < len(requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = [line.split(" - ", 1) for line in log().splitlines()]
    assert all(client.startswith("127.0.0.1:") for client, _ in logged)
    expected = [
        f'"{m} {path} HTTP/1.1" {status} ' for (m, path, _), status in zip(requests, statuses, strict=True)
    ]
    assert len(logged) == len(expected)
    assert all(line.startswith(e) for (_, line), e in zip(logged, expected, strict=True)), logged
    assert CANARY not in log()


def test_the_filter_is_installed_once_per_process_and_outlives_uvicorns_logging_setup(tmp_path):
    settings = ServiceSettings(audit_url=f"sqlite:///{tmp_path / 'audit.db'}")
    app = create_app(settings)
    create_app(settings)
    uvicorn.Config(app, log_level="info")  # configures logging, as uvicorn.run(app) does after create_app
    filters = logging.getLogger("uvicorn.access").filters
    assert len([f for f in filters if isinstance(f, PathWithoutQuery)]) == 1
