"""Read-only SQL behind the console's pages (never on the API path)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, func, select

from wardgate.store.auditlog import export_record
from wardgate.store.tables import audit_log

#: Rows examined at most by one search (newest first) when a guard-decision filter applies.
_SCAN = 5000


@dataclass(frozen=True)
class AuditFilter:
    key_id: str = ""
    user: str = ""
    model: str = ""
    status: str = ""
    decision: str = ""
    kind: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def from_query(cls, params: Any) -> AuditFilter:
        return cls(
            **{name: str(params.get(name, ""))[:256].strip() for name in cls.__annotations__}
        )

    def as_query(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


def _time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def search_audit(engine: Engine, f: AuditFilter, limit: int = 100) -> list[dict[str, Any]]:
    conds = []
    if f.key_id:
        conds.append(audit_log.c.key_id == f.key_id)
    if f.user:
        conds.append(audit_log.c.user == f.user)
    if f.model:
        conds.append(audit_log.c.model_asked == f.model)
    if f.status.isdigit():
        conds.append(audit_log.c.status == int(f.status))
    if f.kind:
        conds.append(audit_log.c.kind == f.kind)
    since, until = _time(f.since), _time(f.until)
    if since is not None:
        conds.append(audit_log.c.ts >= since)
    if until is not None:
        conds.append(audit_log.c.ts <= until)
    query = select(audit_log).order_by(audit_log.c.seq.desc())
    if conds:
        query = query.where(and_(*conds))
    query = query.limit(_SCAN if f.decision else limit)
    with engine.connect() as conn:
        rows = [export_record(dict(r)) for r in conn.execute(query).mappings()]
    if f.decision:
        rows = [
            r
            for r in rows
            if any(d.get("action") == f.decision for d in r.get("guard_decisions") or [])
        ][:limit]
    return rows


def alerts(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    query = (
        select(audit_log)
        .where(audit_log.c.kind.in_(["alert", "action"]))
        .order_by(audit_log.c.seq.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [export_record(dict(r)) for r in conn.execute(query).mappings()]


def record(engine: Engine, seq: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.seq == seq)).mappings().first()
    return export_record(dict(row)) if row else None


def usage_by_key(engine: Engine, hours: int = 24) -> dict[str, dict[str, int]]:
    since = datetime.now(UTC) - timedelta(hours=hours)
    query = (
        select(
            audit_log.c.key_id,
            func.count().label("requests"),
            func.sum(audit_log.c.prompt_tokens + audit_log.c.completion_tokens).label("tokens"),
            func.sum(case((audit_log.c.status >= 400, 1), else_=0)).label("errors"),
        )
        .where(audit_log.c.kind == "request", audit_log.c.ts >= since)
        .group_by(audit_log.c.key_id)
    )
    with engine.connect() as conn:
        return {
            r.key_id: {
                "requests": int(r.requests),
                "tokens": int(r.tokens or 0),
                "errors": int(r.errors or 0),
            }
            for r in conn.execute(query)
            if r.key_id
        }


def hourly(
    engine: Engine, hours: int = 24, key_id: str | None = None, limit: int = 100_000
) -> dict[str, Any]:
    """Per-hour series over the last ``hours``: requests, tokens, errors, guard blocks, and
    which backend served (routing decisions)."""
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    cols = [
        audit_log.c.ts,
        audit_log.c.status,
        audit_log.c.prompt_tokens,
        audit_log.c.completion_tokens,
        audit_log.c.guard_decisions,
        audit_log.c.backend_used,
    ]
    query = select(*cols).where(audit_log.c.kind == "request", audit_log.c.ts >= since)
    if key_id:
        query = query.where(audit_log.c.key_id == key_id)
    query = query.order_by(audit_log.c.seq.desc()).limit(limit)
    start = since.replace(minute=0, second=0, microsecond=0)
    labels = [(start + timedelta(hours=i)) for i in range(hours + 1)]
    index = {t: i for i, t in enumerate(labels)}
    series: dict[str, list[int]] = {
        n: [0] * len(labels) for n in ("requests", "tokens", "errors", "blocks")
    }
    backends: Counter[str] = Counter()
    per_backend: dict[str, list[int]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            i = index.get(row.ts.replace(minute=0, second=0, microsecond=0))
            if i is None:
                continue
            series["requests"][i] += 1
            series["tokens"][i] += row.prompt_tokens + row.completion_tokens
            series["errors"][i] += row.status >= 400
            series["blocks"][i] += any(
                d.get("action") == "block" for d in row.guard_decisions or []
            )
            if row.backend_used:
                backends[row.backend_used] += 1
                per_backend.setdefault(row.backend_used, [0] * len(labels))[i] += 1
    return {
        "labels": [t.strftime("%H:00") for t in labels],
        **series,
        "backends": dict(backends.most_common()),
        "per_backend": per_backend,
    }
