"""The audit log in SQL: appending records to the hash chain, reading, verifying, exporting.

Appends are serialised across threads *and processes*: each one locks the chain-head row
(``SELECT … FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` takes the whole-database write lock
on SQLite), numbers its records after the head, links them, and moves the head, all in one
transaction. A crash mid-append therefore leaves either the whole batch or none of it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, Engine, insert, select, update

from wardgate.errors import WardgateError
from wardgate.store.chain import (
    HASHED_FIELDS,
    OPTIONAL_HASHED_FIELDS,
    ChainReport,
    format_ts,
    record_hash,
    verify_rows,
)
from wardgate.store.db import write_connection
from wardgate.store.tables import HEAD_ID, audit_head, audit_log

ContentMode = Literal["none", "sha256", "full"]

#: Rows fetched per round trip when streaming the log.
_STREAM_CHUNK = 2000


class AuditChainError(WardgateError):
    """The audit tables are not in a state that can be appended to (e.g. the head row is gone)."""

    code = "audit_chain_error"


@dataclass(kw_only=True)
class AuditRecord:
    """One request as the audit log sees it. ``prompt``/``completion`` are raw text; the
    writer stores them according to ``audit.store_prompts`` (dropped, hashed or kept)."""

    request_id: str | None = None
    key_id: str | None = None
    user: str | None = None
    client_ip: str | None = None
    model_asked: str | None = None
    backend_used: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    status: int = 200
    error_code: str | None = None
    stream: bool = False
    guard_decisions: list[dict[str, Any]] = field(default_factory=list)
    routing: dict[str, Any] | None = None
    prompt: str | None = None
    completion: str | None = None
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: ``request`` for client requests; ``gap`` marks records the writer had to drop.
    kind: str = "request"
    #: The signed receipt (JWS) the answer carried (``wardgate.provenance``).
    receipt: str | None = None


def gap_record(dropped: int) -> AuditRecord:
    """The record written in place of records lost to a full queue, so no loss is silent."""
    return AuditRecord(
        kind="gap", status=0, error_code="audit_queue_full", routing={"dropped": dropped}
    )


def append_records(
    engine: Engine, records: Sequence[AuditRecord], content_mode: ContentMode = "none"
) -> int:
    """Append ``records`` to the chain in one transaction; returns the new last sequence number."""
    with write_connection(engine) as conn, conn.begin():
        head = conn.execute(
            select(audit_head.c.seq, audit_head.c.hash)
            .where(audit_head.c.id == HEAD_ID)
            .with_for_update()
        ).one_or_none()
        if head is None:
            raise AuditChainError(
                "the audit chain head row is missing; see `wardgate audit verify`"
            )
        seq, prev_hash = int(head.seq), str(head.hash)
        rows = []
        for record in records:
            seq += 1
            row = to_row(record, seq, prev_hash, content_mode)
            prev_hash = row["hash"]
            rows.append(row)
        if rows:
            conn.execute(insert(audit_log), rows)
            conn.execute(
                update(audit_head).where(audit_head.c.id == HEAD_ID).values(seq=seq, hash=prev_hash)
            )
    return seq


def to_row(
    record: AuditRecord, seq: int, prev_hash: str, content_mode: ContentMode
) -> dict[str, Any]:
    """The stored (and hashed) form of a record: content policy applied, values normalised so
    that what is read back hashes exactly like what was written."""
    row: dict[str, Any] = {
        "seq": seq,
        # Microsecond precision is what both databases keep.
        "ts": record.ts.astimezone(UTC),
        "kind": _text(record.kind, 16) or "request",
        "request_id": _text(record.request_id, 128),
        "key_id": _text(record.key_id, 32),
        "user": _text(record.user, 256),
        "client_ip": _text(record.client_ip, 64),
        "model_asked": _text(record.model_asked, 256),
        "backend_used": _text(record.backend_used, 256),
        "prompt_tokens": int(record.prompt_tokens or 0),
        "completion_tokens": int(record.completion_tokens or 0),
        "latency_ms": round(float(record.latency_ms or 0.0), 3),
        "status": int(record.status),
        "error_code": _text(record.error_code, 128),
        "stream": bool(record.stream),
        "guard_decisions": _json(record.guard_decisions or []),
        "routing": _json(record.routing) if record.routing is not None else None,
        "content_mode": content_mode,
        "prompt": _content(record.prompt, content_mode),
        "completion": _content(record.completion, content_mode),
        "prev_hash": prev_hash,
        "receipt": _text(record.receipt, 8192),
    }
    row["hash"] = record_hash(row)
    return row


def _text(value: str | None, limit: int) -> str | None:
    """Truncated to the column width (PostgreSQL would reject the whole batch otherwise) and
    made valid UTF-8 (a lone surrogate would make the record unhashable)."""
    if value is None:
        return None
    return _clean(str(value))[:limit]


def _clean(value: str) -> str:
    # PostgreSQL text cannot hold NUL; replacing it here keeps both databases identical.
    if value.isascii():  # nothing to make valid (most ids, models, addresses, English text)
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _json(value: Any) -> Any:
    """JSON-normalised copy: what the database gives back is what gets hashed."""
    return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def _content(text: str | None, mode: ContentMode) -> str | None:
    if text is None or mode == "none":
        return None
    text = _clean(text)
    if mode == "sha256":
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text


def _head(conn: Connection) -> tuple[int, str] | None:
    row = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID)
    ).one_or_none()
    return None if row is None else (int(row.seq), str(row.hash))


def _snapshot(conn: Connection) -> Connection:
    """One consistent view of head and rows while writers keep appending."""
    if conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _stream(conn: Connection, since_seq: int = 0) -> Iterator[dict[str, Any]]:
    query = select(audit_log).where(audit_log.c.seq > since_seq).order_by(audit_log.c.seq)
    result = conn.execution_options(yield_per=_STREAM_CHUNK).execute(query)
    for row in result.mappings():
        yield dict(row)


def verify_chain(engine: Engine, anchor: tuple[int, str] | None = None) -> ChainReport:
    """Recompute every hash and link; report the first altered, inserted or missing record.

    ``anchor=(seq, hash)``, kept outside the database, also pins that record (see
    :func:`wardgate.store.chain.verify_rows`).
    """
    with engine.connect() as conn, _snapshot(conn).begin():
        head = _head(conn)
        if head is None:
            return ChainReport(
                ok=False,
                checked=0,
                last_seq=0,
                first_bad_seq=1,
                kind="missing",
                message="the audit chain head row is missing",
            )
        return verify_rows(_stream(conn), head, anchor)


def export_record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as exported: every hashed field plus ``hash``, timestamps canonical."""
    out = {name: row[name] for name in HASHED_FIELDS}
    for name in OPTIONAL_HASHED_FIELDS:
        if row.get(name) is not None:
            out[name] = row[name]
    out["ts"] = format_ts(row["ts"])
    out["hash"] = row["hash"]
    return out


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    records: int
    last_seq: int
    last_hash: str | None


def export_jsonl(engine: Engine, path: str | os.PathLike[str]) -> ExportResult:
    """Write the whole log as JSON Lines, atomically.

    The file appears under its name only once complete (temporary file in the same directory,
    fsync, rename), so a reader or a crash never sees half an export. It is created 0600:
    depending on ``store_prompts`` it may hold prompts.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    count, last_seq, last_hash = 0, 0, None
    try:
        with os.fdopen(fd, "wb") as out, engine.connect() as conn, _snapshot(conn).begin():
            for row in _stream(conn):
                out.write(orjson.dumps(export_record(row)) + b"\n")
                count, last_seq, last_hash = count + 1, int(row["seq"]), row["hash"]
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return ExportResult(path=target, records=count, last_seq=last_seq, last_hash=last_hash)


def verify_jsonl(
    path: str | os.PathLike[str], anchor: tuple[int, str] | None = None
) -> ChainReport:
    """Verify an export on its own (no database): links and hashes from record 1 to the end.

    The end cannot be checked against the live head here; compare ``last_seq``/the last
    ``hash`` with what ``wardgate audit export`` printed, or keep them elsewhere.
    """

    def rows() -> Iterator[dict[str, Any]]:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)

    return verify_rows(rows(), None, anchor)


def tail(engine: Engine, count: int = 20) -> list[dict[str, Any]]:
    """The newest ``count`` records, oldest first, in export form."""
    query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(max(0, count))
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    return [export_record(row) for row in reversed(rows)]


def read_since(engine: Engine, since_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Records after ``since_seq`` in order (for ``tail --follow`` and incremental shipping)."""
    query = (
        select(audit_log).where(audit_log.c.seq > since_seq).order_by(audit_log.c.seq).limit(limit)
    )
    with engine.connect() as conn:
        return [export_record(dict(row)) for row in conn.execute(query).mappings()]
