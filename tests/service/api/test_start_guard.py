"""Without API keys the app answers loopback connections only, whichever server runs it (``lenrisk serve``,
``uvicorn --factory``, gunicorn); settings that cannot be read stop it with one line, not a traceback."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service import cli
from service.api.app import create_app
from tests.helpers import REPO_ROOT

SIOCGIFADDR = 0x8915


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine's own interfaces that is not loopback (None if it has none)."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            address = socket.inet_ntoa(packed[20:24])
            if not ipaddress.ip_address(address).is_loopback:
                return address
    return None


@pytest.mark.slow  # the session's registry
@pytest.mark.parametrize(
    ("server", "answered"),
    [("127.0.0.1", True), ("[::1]", True), ("192.0.2.2", False), ("[2001:db8::2]", False)],
)
def test_without_keys_only_loopback_connections_are_answered(service_settings, server, answered, caplog):
    """``base_url`` sets the ASGI scope's ``server``: the local address the connection came in on."""
    assert not service_settings.auth_enabled
    with TestClient(create_app(service_settings), base_url=f"http://{server}:8000") as client:
        for path in ("/healthz", "/v1/models", "/docs"):
            response = client.get(path)
            if answered:
                assert response.status_code != 503 or path == "/v1/models", path  # models may be loading
            else:
                assert response.status_code == 503, path
                assert "LENRISK_API_KEYS" in response.json()["detail"]
    if not answered:
        refusals = [r for r in caplog.records if "loopback" in r.getMessage() and r.levelno >= 40]
        assert len(refusals) == 1  # loudly, once


@pytest.mark.slow  # a uvicorn process
def test_uvicorn_factory_on_all_interfaces_without_keys_refuses_connections_from_beyond_loopback(
    registry, tmp_path
):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 interface to connect through")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "LENRISK_API_KEYS": "",  # empty: no keys (as unset), not a crash
        "MLFLOW_TRACKING_URI": registry["settings"].tracking_uri,
        "LENRISK_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app"]
    with open(tmp_path / "log", "wb") as log:
        process = subprocess.Popen(
            [*command, "--host", "0.0.0.0", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
                time.sleep(0.1)
            refused = httpx.get(f"http://{address}:{port}/healthz")
            assert refused.status_code == 503 and "LENRISK_API_KEYS" in refused.json()["detail"]
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        finally:
            process.terminate()
            process.wait(30)
    assert "loopback" in (tmp_path / "log").read_text()


def test_lenrisk_serve_takes_empty_keys_as_none_and_refuses_all_interfaces_in_one_line(monkeypatch):
    monkeypatch.setenv("LENRISK_API_KEYS", "")
    result = CliRunner().invoke(cli.app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2, result.output
    assert "refusing to listen on 0.0.0.0 without API keys" in result.output
    assert "Traceback" not in result.output


def test_unreadable_settings_are_one_line_in_the_cli_and_the_factory(monkeypatch):
    monkeypatch.setenv("LENRISK_API_KEYS", "clinic-a-key-in-clear")
    result = CliRunner().invoke(cli.app, ["serve"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and "api_keys" in line

    with pytest.raises(SystemExit) as stopped:
        create_app()
    (line,) = str(stopped.value.code).splitlines()
    assert "api_keys" in line and "clinic-a-key-in-clear" not in line
