"""The audit trail: one row per prediction request, in SQLite by default or PostgreSQL by URL.

A row holds the time, request id, client, route, status, model versions, an HMAC (server key) of the
canonical input and the outputs (probabilities and bands), never the input itself: a keyed hash, because
a plain SHA-256 of a few clinical values is brute-forceable. A failed write raises
:class:`service.errors.AuditUnavailableError` and the request fails closed.

The same database holds the CDS Hooks JWT ids seen (``lenrisk_cds_jti``), so that every worker and replica
sharing the store refuses a replayed token (:meth:`AuditLog.first_use`), and the CDS Hooks feedback
(``lenrisk_cds_feedback``: card accepted or overridden, :meth:`AuditLog.write_feedback`). Feedback keeps the
override reason *coding*, never the clinician's free-text comment (it may carry patient details), only
whether one was given.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from service.errors import AuditUnavailableError

_METADATA = sa.MetaData()


def _request_columns(*, index_request_id: bool) -> list[sa.Column]:
    """The columns every request-level table starts with: row id, time, request id, client."""
    return [
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False, index=index_request_id),
        sa.Column("client", sa.String(128), nullable=False),
    ]


AUDIT_TABLE = sa.Table(
    "lenrisk_audit",
    _METADATA,
    *_request_columns(index_request_id=True),
    sa.Column("route", sa.String(128), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("model_versions", sa.JSON, nullable=True),
    sa.Column("input_hmac", sa.String(64), nullable=True),
    sa.Column("outputs", sa.JSON, nullable=True),
)

JTI_TABLE = sa.Table(
    "lenrisk_cds_jti",
    _METADATA,
    sa.Column("issuer", sa.String(512), primary_key=True),
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("expires", sa.Float, nullable=False, index=True),  # Unix time
)
FEEDBACK_TABLE = sa.Table(
    "lenrisk_cds_feedback",
    _METADATA,
    *_request_columns(index_request_id=False),
    sa.Column("service_id", sa.String(64), nullable=False),
    sa.Column("card", sa.String(128), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("accepted_suggestions", sa.JSON, nullable=True),
    sa.Column("override_reason", sa.JSON, nullable=True),
    sa.Column("has_user_comment", sa.Boolean, nullable=False),
    sa.Column("outcome_timestamp", sa.String(64), nullable=False),
)
_PURGE_EVERY = 1000  # JWT ids stored between deletions of expired ones


def canonical_hmac(key: bytes, rows: list[dict[str, Any]]) -> str:
    """HMAC-SHA256 of the canonical JSON of the contract rows (sorted keys, no spaces)."""
    payload = json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


class AuditLog:
    """Append-only audit rows, and the CDS JWT ids seen, in the database at ``url`` (tables made if missing).

    Writes are synchronous, so a request is answered only once its row is stored, over one kept-open
    connection (a pool checkout per row costs more than the prediction); after a failure the connection is
    dropped and the next write reconnects.
    """

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()
        self._insert = AUDIT_TABLE.insert()
        self._jti_writes = 0
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            _METADATA.create_all(self.engine)
        except sa.exc.SQLAlchemyError as err:
            raise AuditUnavailableError(f"audit store unreachable: {type(err).__name__}") from err

    def write(self, **row: Any) -> None:
        """Insert one audit row; raise :class:`AuditUnavailableError` if it cannot be stored."""
        with self._connection() as conn:
            conn.execute(self._insert, {"time": datetime.now(UTC), **row})
            conn.commit()

    def write_feedback(self, rows: list[dict[str, Any]]) -> None:
        """Insert CDS Hooks feedback rows in one transaction; :class:`AuditUnavailableError` if it fails."""
        now = datetime.now(UTC)
        with self._connection("feedback store") as conn:
            conn.execute(FEEDBACK_TABLE.insert(), [{"time": now, **r} for r in rows])
            conn.commit()

    def first_use(self, issuer: str, jti: str, expires: float) -> bool:
        """True the first time ``(issuer, jti)`` is presented while an earlier use is unexpired, for every
        process sharing the store (the primary key decides); :class:`AuditUnavailableError` if it is down.
        """
        now = time.time()
        key = (JTI_TABLE.c.issuer == issuer) & (JTI_TABLE.c.jti == jti)
        with self._connection() as conn:
            self._jti_writes += 1
            if self._jti_writes % _PURGE_EVERY == 0:
                conn.execute(JTI_TABLE.delete().where(JTI_TABLE.c.expires <= now))
                conn.commit()
            try:
                conn.execute(JTI_TABLE.insert(), {"issuer": issuer, "jti": jti, "expires": expires})
                conn.commit()
                return True
            except sa.exc.IntegrityError:
                conn.rollback()
            renewed = conn.execute(  # the earlier use has expired: this one counts as a first use
                JTI_TABLE.update().where(key & (JTI_TABLE.c.expires <= now)).values(expires=expires)
            )
            conn.commit()
            return renewed.rowcount == 1

    @contextlib.contextmanager
    def _connection(self, store: str = "audit store") -> Iterator[sa.Connection]:
        """The kept connection, under the lock; a database error drops it: AuditUnavailableError."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self.engine.connect()
                yield self._conn
            except sa.exc.SQLAlchemyError as err:
                self._drop_connection()
                raise AuditUnavailableError(f"{store} unavailable: {type(err).__name__}") from err

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def rows(self, table: sa.Table = AUDIT_TABLE) -> list[dict[str, Any]]:
        """Every row of ``table`` (audit rows by default), oldest first (for tests and inspection)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]

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
