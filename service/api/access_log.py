"""uvicorn's access log without query strings: a query may carry patient data (``?patient_id=...``).

A filter on the ``uvicorn.access`` logger keeps each request line's path and drops its query, whichever
launcher runs the app (``lenrisk serve``, ``uvicorn --factory``, gunicorn's uvicorn worker): the app
installs it when it is created, once per process, and uvicorn's logging configuration (``dictConfig``,
before or after) leaves a logger's filters in place.
"""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"


class PathWithoutQuery(logging.Filter):
    """Rewrites uvicorn's access record, args (client, method, path?query, HTTP version, status), to the
    path alone (uvicorn percent-encodes the path, so its first ``?`` starts the query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5 and isinstance(record.args[2], str):
            client, method, path, version, status = record.args
            record.args = (client, method, path.partition("?")[0], version, status)
        return True


def hide_query_strings() -> None:
    """Install :class:`PathWithoutQuery` on the access logger, unless it is there already."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, PathWithoutQuery) for f in logger.filters):
        logger.addFilter(PathWithoutQuery())
