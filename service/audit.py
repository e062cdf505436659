"""The audit trail: one row per prediction request, in SQLite by default or PostgreSQL by URL.

A row holds the time, request id, client, route, status, model versions, an HMAC (server key) of the
canonical input and the outputs (probabilities and bands), never the input itself: a keyed hash, because
a plain SHA-256 of a few clinical values is brute-forceable. A failed write raises
:class:`service.errors.AuditUnavailableError` and the request fails closed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from service.errors import AuditUnavailableError

_METADATA = sa.MetaData()
AUDIT_TABLE = sa.Table(
    "lenrisk_audit",
    _METADATA,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("client", sa.String(128), nullable=False),
    sa.Column("route", sa.String(128), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("model_versions", sa.JSON, nullable=True),
    sa.Column("input_hmac", sa.String(64), nullable=True),
    sa.Column("outputs", sa.JSON, nullable=True),
)


def canonical_hmac(key: bytes, rows: list[dict[str, Any]]) -> str:
    """HMAC-SHA256 of the canonical JSON of the contract rows (sorted keys, no spaces)."""
    payload = json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


class AuditLog:
    """Append-only audit rows in the database at ``url`` (tables created if missing).

    Writes are synchronous, so a request is answered only once its row is stored, over one kept-open
    connection (a pool checkout per row costs more than the prediction); after a failure the connection is
    dropped and the next write reconnects.
    """

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()
        self._insert = AUDIT_TABLE.insert()
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            _METADATA.create_all(self.engine)
        except sa.exc.SQLAlchemyError as err:
            raise AuditUnavailableError(f"audit store unreachable: {type(err).__name__}") from err

    def write(self, **row: Any) -> None:
        """Insert one audit row; raise :class:`AuditUnavailableError` if it cannot be stored."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self.engine.connect()
                self._conn.execute(self._insert, {"time": datetime.now(UTC), **row})
                self._conn.commit()
            except sa.exc.SQLAlchemyError as err:
                self._drop_connection()
                raise AuditUnavailableError(f"audit store unavailable: {type(err).__name__}") from err

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def rows(self) -> list[dict[str, Any]]:
        """Every audit row, oldest first (for tests and inspection)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(AUDIT_TABLE).order_by(AUDIT_TABLE.c.id))]

    def close(self) -> None:
        """Close the kept connection and release the pool."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; no fsync per request
    cursor.close()
