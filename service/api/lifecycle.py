"""Model lifecycle of a running app: first load, reload on request or alias move, swap one reference.

A reload resolves the alias, loads, verifies and warms the new versions off the event loop, then replaces
``app.state.predictor`` in one assignment; requests already running keep the predictor they captured. A
failed load is counted, reported, and leaves the current versions serving (TensorFlow Serving's
availability-preserving policy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import FastAPI

from service.errors import ModelLoadError
from service.model_store import resolve_versions
from service.predictor import Predictor
from service.settings import ServiceSettings

log = logging.getLogger("lenrisk.service")
RETRY_SECONDS = 5.0
Loader = Callable[[ServiceSettings, dict[str, str] | None], Predictor]


async def reload_models(app: FastAPI, *, force: bool = False) -> tuple[bool, dict[str, str], dict[str, str]]:
    """Resolve the alias and, if it moved (or ``force``), load, verify and warm, then swap the predictor.

    Returns (reloaded, versions now served, versions served before). A failed load raises
    :class:`ModelLoadError` and leaves the current predictor serving.
    """
    state = app.state
    async with state.reload_lock:
        previous = state.predictor.versions() if state.predictor else {}
        try:
            versions = await asyncio.to_thread(resolve_versions, state.settings)
            if versions == previous and not force:
                return False, previous, previous
            predictor = await asyncio.to_thread(state.loader, state.settings, versions)
        except ModelLoadError:
            state.metrics.reload_failures.inc()
            raise
        state.predictor, state.load_error = predictor, None
        state.metrics.set_models(predictor)
        log.info("serving model versions %s", predictor.versions())
        return True, predictor.versions(), previous


async def initial_load(app: FastAPI) -> None:
    while app.state.predictor is None:
        try:
            await reload_models(app)
        except ModelLoadError as err:
            app.state.load_error = str(err)
            log.error("models not loaded: %s; retrying in %ss", err, RETRY_SECONDS)
            await asyncio.sleep(RETRY_SECONDS)


async def poll_alias(app: FastAPI, every: float) -> None:
    """Every ``every`` seconds, reload if the alias moved; a failure is logged once per distinct error."""
    last_error = None
    while True:
        await asyncio.sleep(every)
        if app.state.predictor is None:
            continue
        try:
            await reload_models(app)
            last_error = None
        except ModelLoadError as err:  # counted by reload_models; the current models keep serving
            if str(err) != last_error:
                log.error(
                    "alias poll: reload failed, still serving %s: %s", app.state.predictor.versions(), err
                )
            last_error = str(err)
