"""SQL tables (SQLAlchemy Core). The schema itself is created by the migrations in ``migrations/``.

Core tables rather than ORM classes: the stores hand out frozen dataclasses, so nothing outside
``store/`` ever holds a live database object, and a session cannot leak across threads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware.

    SQLite has no timezone type, so values are normalised to naive UTC on the way in and
    tagged as UTC on the way out; PostgreSQL stores ``timestamptz``. Either way callers only
    ever see aware UTC datetimes, which keeps expiry checks and the audit hash canonical.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Wardgate stores only timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

api_keys = Table(
    "wardgate_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    # HMAC-SHA-256(server secret, raw key), hex. The raw key is never stored.
    Column("digest", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("models", JSON, nullable=False),
    Column("tier", String(64), nullable=False),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("admin", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("rotated_from", String(32), nullable=True),
    # Migration 0004: extra permissions (e.g. ``watermark:detect``); NULL means none.
    Column("scopes", JSON, nullable=True),
    UniqueConstraint("digest", name="uq_wardgate_api_keys_digest"),
)

audit_log = Table(
    "wardgate_audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("key_id", String(32), nullable=True),
    Column("user", String(256), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("model_asked", String(256), nullable=True),
    Column("backend_used", String(256), nullable=True),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("status", Integer, nullable=False),
    Column("error_code", String(128), nullable=True),
    Column("stream", Boolean, nullable=False),
    Column("guard_decisions", JSON, nullable=False),
    Column("routing", JSON, nullable=True),
    Column("content_mode", String(8), nullable=False),
    Column("prompt", Text, nullable=True),
    Column("completion", Text, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Migration 0004: the answer's signed receipt (JWS), when it had one.
    Column("receipt", Text, nullable=True),
    Index("ix_wardgate_audit_log_ts", "ts"),
    Index("ix_wardgate_audit_log_key_id", "key_id"),
    Index("ix_wardgate_audit_log_request_id", "request_id"),
)

#: One row (id=1): the sequence number and hash of the newest record. Appends lock it, which
#: serialises writers across processes, and verification compares the chain's end against
#: it, which catches records deleted from (or forged onto) the end of the log.
audit_head = Table(
    "wardgate_audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

#: Store metadata, e.g. ``key_secret_fingerprint``: lets a process with the wrong server secret
#: fail loudly instead of silently rejecting every key (or minting keys no gateway accepts).
meta = Table(
    "wardgate_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

#: Alembic's bookkeeping table, prefixed like ours so it cannot clash with an app sharing the DB.
VERSION_TABLE = "wardgate_alembic_version"
HEAD_ID = 1
GENESIS_HASH = "0" * 64

#: Keys the monitor suspended (``wardgate.monitor``); a row is removed when an admin lifts it.
key_suspensions = Table(
    "wardgate_key_suspensions",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("reason", String(256), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
