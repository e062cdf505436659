"""CDS Hooks feedback (card accepted / overridden) stored in the audit database, in its own table.

Stored: time, request id, client, service, card uuid, outcome, accepted suggestion uuids, the override
reason *coding* and the outcome timestamp. The clinician's free-text ``userComment`` is not stored (it may
carry patient details); only whether one was given.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from service.errors import AuditUnavailableError

_METADATA = sa.MetaData()
FEEDBACK_TABLE = sa.Table(
    "lenrisk_cds_feedback",
    _METADATA,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("client", sa.String(128), nullable=False),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("card", sa.String(128), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("accepted_suggestions", sa.JSON, nullable=True),
    sa.Column("override_reason", sa.JSON, nullable=True),
    sa.Column("has_user_comment", sa.Boolean, nullable=False),
    sa.Column("outcome_timestamp", sa.String(64), nullable=False),
)


class FeedbackStore:
    """Writes feedback rows through an engine (the audit store's), creating the table on first use."""

    def __init__(self) -> None:
        self._ready: set[int] = set()
        self._lock = threading.Lock()

    def write(self, engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
        """Insert the rows in one transaction; raise AuditUnavailableError if they cannot be stored."""
        now = datetime.now(UTC)
        try:
            with self._lock:
                if id(engine) not in self._ready:
                    _METADATA.create_all(engine)
                    self._ready.add(id(engine))
            with engine.begin() as conn:
                conn.execute(FEEDBACK_TABLE.insert(), [{"time": now, **r} for r in rows])
        except sa.exc.SQLAlchemyError as err:
            raise AuditUnavailableError(f"feedback store unavailable: {type(err).__name__}") from err

    @staticmethod
    def rows(engine: sa.Engine) -> list[dict[str, Any]]:
        """Every feedback row, oldest first (for tests and inspection)."""
        with engine.connect() as conn:
            query = sa.select(FEEDBACK_TABLE).order_by(FEEDBACK_TABLE.c.id)
            return [dict(r._mapping) for r in conn.execute(query)]
