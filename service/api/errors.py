"""The HTTP answer to every error, in one table: domain error type -> status, headers and body.

The JSON API and CDS Hooks raise named domain errors and never build error responses themselves (the
calculator's static files answer FastAPI's own 404). Bodies are ``{"detail": ...}`` and never quote a
submitted value: contract violations list the field path and the rule; FastAPI's own validation errors are
rewritten the same way (its default handler echoes the input), with an unknown field named
``<unknown field>``: its name is the caller's text, perhaps patient data (no request model keys anything
else by caller text). Anything unexpected is logged with the request id only and answered with a generic
500. An error type missing from :data:`STATUS` takes the entry of its nearest listed base class.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from features.errors import ContractError, LenriskError
from service.api.limits import RateLimitedError
from service.cds.fhir import FhirInputError
from service.cds.hooks import PrefetchUnavailableError, UnknownServiceError, WrongHookError
from service.errors import (
    AuditUnavailableError,
    ForbiddenError,
    ModelLoadError,
    NotReadyError,
    UnauthorizedError,
)

log = logging.getLogger("lenrisk.service")
RETRY_AFTER = "5"  # seconds, on every 503
UNKNOWN_FIELD = "<unknown field>"


@dataclass(frozen=True)
class Answer:
    """How one error type is answered."""

    status: int
    headers: Mapping[str, str] | Callable[[Exception], Mapping[str, str]] = field(default_factory=dict)
    detail: Callable[[Exception], Any] = str


def _contract_items(err: Exception) -> list[dict[str, Any]]:
    assert isinstance(err, ContractError)
    return [{"loc": ["body", e.column], "type": "contract", "msg": e.reason} for e in err.errors]


def _reload_failed(err: Exception) -> str:
    return f"model reload failed; the previous versions keep serving: {err}"


def _retry_after(err: Exception) -> Mapping[str, str]:
    assert isinstance(err, RateLimitedError)
    return {"Retry-After": str(err.retry_after)}


_RETRY = {"Retry-After": RETRY_AFTER}

STATUS: dict[type[Exception], Answer] = {
    ContractError: Answer(422, detail=_contract_items),
    UnauthorizedError: Answer(401, {"WWW-Authenticate": "Bearer"}),
    ForbiddenError: Answer(403),
    UnknownServiceError: Answer(404),
    FhirInputError: Answer(400),
    WrongHookError: Answer(400),
    PrefetchUnavailableError: Answer(412),
    RateLimitedError: Answer(429, _retry_after),
    ModelLoadError: Answer(502, detail=_reload_failed),
    NotReadyError: Answer(503, _RETRY),
    AuditUnavailableError: Answer(503, _RETRY),  # e.g. the CDS JWT-id store, checked before any answer
    LenriskError: Answer(422),
}


def answer(err: LenriskError) -> JSONResponse:
    """The response to a domain error, by the :data:`STATUS` entry of its type or nearest base."""
    entry = next(STATUS[t] for t in type(err).__mro__ if t in STATUS)
    headers = entry.headers(err) if callable(entry.headers) else entry.headers
    return JSONResponse(status_code=entry.status, content={"detail": entry.detail(err)}, headers=headers)


def _loc(error: Mapping[str, Any]) -> list[str | int]:
    loc = [p if isinstance(p, int) else str(p) for p in error["loc"]]
    if error["type"] == "extra_forbidden":
        loc[-1] = UNKNOWN_FIELD
    return loc


def install(app: FastAPI) -> None:
    """Register the handlers: domain errors, request validation errors, anything else."""

    @app.exception_handler(LenriskError)
    async def domain_error(_: Request, err: LenriskError) -> JSONResponse:
        return answer(err)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        items = [{"loc": _loc(e), "type": e["type"], "msg": e["msg"]} for e in err.errors()]
        return JSONResponse(status_code=422, content={"detail": items})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        # The exception's message may quote input values: log its type and stack frames only.
        frames = "".join(traceback.format_tb(err.__traceback__))
        log.error(
            "request %s failed: %s\n%s", getattr(request.state, "request_id", "?"), type(err).__name__, frames
        )
        return JSONResponse(
            status_code=500,
            content={"detail": "internal error; quote the X-Request-ID header when reporting it"},
        )
