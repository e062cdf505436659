"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), working offline.

Their scripts and styles are served from the fastapi-offline package (FastAPI's "self-hosting JavaScript and
CSS for docs"), not fetched from a CDN, and each page carries a Content-Security-Policy that lets it load
nothing from another host: ReDoc would otherwise fetch its attribution logo from ``cdn.redoc.ly``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def _with_csp(page: HTMLResponse) -> HTMLResponse:
    """The page, allowed its own inline scripts (by hash) and this host only."""
    scripts = re.findall(rb"<script>(.*?)</script>", page.body, flags=re.DOTALL)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)
    page.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return page


def install(app: FastAPI) -> None:
    """Mount the assets and add the two pages (the app is created with ``docs_url=redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "") + ASSETS_URL
        return _with_csp(
            get_swagger_ui_html(
                openapi_url=request.scope.get("root_path", "") + str(app.openapi_url),
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}/swagger-ui.css",
                swagger_favicon_url=f"{root}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "") + ASSETS_URL
        return _with_csp(
            get_redoc_html(
                openapi_url=request.scope.get("root_path", "") + str(app.openapi_url),
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}/redoc.standalone.js",
                redoc_favicon_url=f"{root}/favicon.png",
                with_google_fonts=False,
            )
        )
