"""Model lifecycle of a running app: first load, reload on request or alias move, swap one reference.

A reload resolves the alias, loads, verifies and warms the new versions off the event loop, then replaces
``app.state.predictor`` in one assignment; requests already running keep the predictor they captured. A
failed load (whatever it raised) is counted, logged, kept in ``app.state.load_error`` for ``/readyz``, and
leaves the current versions serving (TensorFlow Serving's availability-preserving policy). Until the first
load succeeds it is retried with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import FastAPI

from service.errors import ModelLoadError
from service.model_store import registered_aliases, resolve_versions
from service.predictor import Predictor
from service.settings import ServiceSettings

log = logging.getLogger("lenrisk.service")
#: First load retries: 1 s, doubling, at most 5 s apart (ready within 5 s plus one load of the registry
#: coming back; a failing attempt costs one refused connection).
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 1.0, 5.0
#: How long ``GET /v1/models`` waits for the registry's aliases.
ALIAS_LOOKUP_SECONDS = 5.0
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
                _loaded(state)  # the alias names what serves: nothing is failing
                return False, previous, previous
            predictor = await asyncio.to_thread(state.loader, state.settings, versions)
        except ModelLoadError as err:
            _failed(state, err)
            raise
        except Exception as err:  # whatever the registry client or the loader raised
            failure = ModelLoadError(f"load failed: {err!r}")
            _failed(state, failure)
            raise failure from err
        state.predictor = predictor
        _loaded(state)
        state.metrics.set_models(predictor)
        log.info("serving model versions %s", predictor.versions())
        return True, predictor.versions(), previous


def _failed(state, error: ModelLoadError) -> None:
    state.load_error = error
    state.metrics.reload_failures.inc()
    state.metrics.reload_failing.set(1)


def _loaded(state) -> None:
    state.load_error = None
    state.metrics.reload_failing.set(0)


async def initial_load(app: FastAPI) -> None:
    """Load the models, retrying any failure 1 s later, then twice as long each time up to 5 s."""
    delay = RETRY_FIRST_SECONDS
    while app.state.predictor is None:
        try:
            await reload_models(app)
        except ModelLoadError as err:
            log.error("models not loaded (%s): %s; retrying in %.0f s", err.state, err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


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


async def aliases_now(app: FastAPI) -> dict[str, dict[str, str]] | None:
    """Per outcome, the registered model's aliases and the versions they name now; None (logged) if the
    registry does not answer within :data:`ALIAS_LOOKUP_SECONDS`. Concurrent callers share one lookup, so
    a hanging registry holds one thread, not one per request."""
    state = app.state
    if state.alias_lookup is None or state.alias_lookup.done():
        state.alias_lookup = asyncio.ensure_future(asyncio.to_thread(registered_aliases, state.settings))
        state.alias_lookup.add_done_callback(lambda task: task.cancelled() or task.exception())
    try:
        return await asyncio.wait_for(asyncio.shield(state.alias_lookup), ALIAS_LOOKUP_SECONDS)
    except TimeoutError:
        log.warning("model aliases: the registry did not answer within %.0f s", ALIAS_LOOKUP_SECONDS)
    except ModelLoadError as err:
        log.warning("model aliases: %s", err)
    return None
