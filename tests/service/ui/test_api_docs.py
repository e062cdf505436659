"""The API documentation pages (``/docs``: Swagger UI, ``/redoc``: ReDoc) work offline: their scripts and
styles come from the service itself, and Chromium renders every operation with any other host blocked.

The app runs under uvicorn on a free loopback port, not ready (the pages need the OpenAPI document, not the
models): its registry is empty, so loading fails and is retried in the background.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.api.app import create_app
from service.settings import ServiceSettings

pytestmark = [pytest.mark.slow, pytest.mark.external]  # Chromium

CHROMIUM = Path(os.environ.get("LENRISK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
#: An absolute or protocol-relative URL in a src or href attribute.
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""")


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[str]:
    """Base URL of the app under uvicorn on 127.0.0.1 (auth off, models not loaded)."""
    tmp = tmp_path_factory.mktemp("docs")
    settings = ServiceSettings(
        audit_url=f"sqlite:///{tmp / 'audit.db'}",
        mlflow_tracking_uri=f"sqlite:///{tmp / 'registry.db'}",
        mlruns_dir=str(tmp / "mlruns"),
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=15)


def test_doc_pages_reference_no_other_host(live):
    for path in ("/docs", "/redoc"):
        page = httpx.get(live + path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert not EXTERNAL.search(page.text), path
        assert "default-src 'none'" in page.headers["content-security-policy"]
        for asset in re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page.text):
            assert httpx.get(live + asset).status_code == 200, asset


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, through Playwright (no browser download); fails if it is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or LENRISK_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def offline_page(browser, live):
    """A page whose requests to any host but the app are aborted, and recorded in ``page.off_host``."""
    context = browser.new_context()
    page = context.new_page()
    page.off_host = []
    page.errors = []

    def route(r):
        if r.request.url.startswith(live + "/"):
            r.continue_()
        else:
            page.off_host.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()


def _operation_ids(live: str) -> list[str]:
    paths = httpx.get(f"{live}/openapi.json").json()["paths"]
    return sorted(op["operationId"] for ops in paths.values() for op in ops.values())


def test_swagger_ui_renders_every_operation_offline(offline_page, live):
    offline_page.goto(f"{live}/docs")
    offline_page.wait_for_selector(".opblock", timeout=15_000)
    assert offline_page.locator(".opblock").count() == len(_operation_ids(live))
    assert "lenrisk" in offline_page.inner_text(".info .title")
    assert offline_page.off_host == [] and offline_page.errors == []


def test_redoc_renders_every_operation_offline(offline_page, live):
    offline_page.goto(f"{live}/redoc")
    sections = "[data-section-id^='operation/']"
    offline_page.wait_for_selector(sections, timeout=15_000)
    shown = offline_page.eval_on_selector_all(sections, "all => all.map(e => e.dataset.sectionId)")
    assert sorted(s.removeprefix("operation/") for s in shown) == _operation_ids(live)
    assert offline_page.off_host == []
    # ReDoc's attribution logo (cdn.redoc.ly) is refused by the page's policy, before any request.
    refused = [e for e in offline_page.errors if "violates the following Content Security Policy" in e]
    assert all("https://cdn.redoc.ly/" in e for e in refused)
    assert [e for e in offline_page.errors if e not in refused] == []
