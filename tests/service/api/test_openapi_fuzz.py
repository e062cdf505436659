"""Schemathesis against the app's own OpenAPI document: every operation, every check, zero failures.

The app runs in-process with its lifespan (``start_api``: both models loaded from the session's real MLflow
registry, ``/readyz`` 200) and with authentication on: one client key and one admin key, configured as
SHA-256 digests. Schemathesis generates cases from the OpenAPI document that app serves and sends them
through its ASGI transport, authenticated with the admin key so every operation (``/v1/admin/reload``
included) is reachable; its ``ignored_auth`` check re-sends authenticated requests without a key and with
an invalid one and expects 401.

Configuration (``schemathesis.toml`` terms, :func:`fuzz_config`):

- generation: ``mode = "all"`` (positive and negative data), ``max-examples`` = :data:`MAX_EXAMPLES` per
  operation, a fixed seed (:data:`SEED`) so that a failure replays;
- phases: examples, coverage and fuzzing. The stateful phase needs links between operations, or resources
  one operation creates and another reads or deletes; this API has neither, so the stateful-only checks
  (``use_after_free``, ``ensure_resource_availability``) have nothing to run on;
- checks: all of them, at their defaults: ``not_a_server_error``, status code, content type, header and
  response schema conformance, ``negative_data_rejection``, ``positive_data_acceptance``,
  ``missing_required_header``, ``unsupported_method``, ``allow_header_conformance``, ``ignored_auth``, ...
  (``max_response_time`` is opt-in; the latency tests own it). No check is excluded for any operation.

Examples per operation: the reliability anchors ask for >= 500. The benchmark and CI run
:data:`MAX_EXAMPLES` (default 100) to keep this test to tens of seconds; the release gate sets
``LENRISK_FUZZ_EXAMPLES=500`` (and ``LENRISK_FUZZ_SEED`` for fresh cases).

Why the schema is loaded at import: ``@schema.parametrize()`` needs the operations at collection time, and
schemathesis' fixture-based loader (``schemathesis.pytest.from_fixture``, 4.32.5) fails on pytest 9.2
(``lazy.py`` sets ``request.node._nodeid``, which pytest 9.2 no longer has). So the document is built from
an app with the same settings (building it loads nothing), the test's fixture checks that the running app
serves exactly that document, and the cases reach the running app through :data:`SERVED`.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from service.api.app import create_app
from service.security import digest
from service.settings import ServiceSettings

#: Examples per operation in the fuzzing phase (the acceptance figure is 500: see the module docstring).
MAX_EXAMPLES = int(os.environ.get("LENRISK_FUZZ_EXAMPLES", "100"))
#: Seed of the generated cases, so a failure found once is found again.
SEED = int(os.environ.get("LENRISK_FUZZ_SEED", "20261122"))
#: The name FastAPI gives the ``HTTPBearer`` scheme in ``components.securitySchemes``.
SECURITY_SCHEME = "HTTPBearer"

CLIENT_KEY = secrets.token_urlsafe(32)
ADMIN_KEY = secrets.token_urlsafe(32)

pytestmark = pytest.mark.slow  # schemathesis: hundreds of generated requests per operation


def fuzz_settings(**overrides: Any) -> ServiceSettings:
    """Service settings with authentication on: one client key and one admin key, as digests."""
    return ServiceSettings(
        api_keys={"fuzz-client": digest(CLIENT_KEY)},
        admin_keys={"fuzz-admin": digest(ADMIN_KEY)},
        **overrides,
    )


def fuzz_config() -> SchemathesisConfig:
    """This test's schemathesis configuration, as a ``schemathesis.toml`` would spell it."""
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},  # no links, no resources: see the module docstring
            },
            "auth": {"openapi": {SECURITY_SCHEME: {"bearer": ADMIN_KEY}}},
        }
    )


class ServedApp:
    """The ASGI app schemathesis calls: HTTP goes to the app ``start_api`` started, once it is set.

    Schemathesis' ASGI transport runs an application's lifespan itself on first use. The real app's
    lifespan already ran in ``start_api`` (and running it again would reset its state and reload the
    models), so this proxy answers the lifespan protocol itself and forwards every HTTP request.
    """

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.app is None:
            raise RuntimeError("no app is being served: request the `served_app` fixture")
        await self.app(scope, receive, send)


SERVED = ServedApp()
OPENAPI = create_app(fuzz_settings()).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI, config=fuzz_config())
schema.app = SERVED


@pytest.fixture
def served_app(start_api, registry, tmp_path):
    """A ready app with authentication on, serving the document the cases come from, behind :data:`SERVED`."""
    settings = fuzz_settings(
        mlruns_dir=registry["root"],
        mlflow_tracking_uri=registry["settings"].tracking_uri,
        audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
    )
    client = start_api(settings)
    assert client.get("/openapi.json").json() == OPENAPI, "the running app serves another OpenAPI document"
    assert client.get("/v1/models").status_code == 401, "authentication must be on"
    SERVED.app = client.app
    yield client.app
    SERVED.app = None


@schema.parametrize()
# One app serves every generated case of an operation, as one server serves every request: the fixture
# is meant to outlive the examples.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_openapi_document(case, served_app):
    """Positive and negative cases for each operation pass every check: no 5xx, no drift from the schema."""
    case.call_and_validate()
