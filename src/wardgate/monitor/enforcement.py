"""What the request path checks: blocked IPs, throttled keys, suspended keys.

The checks are dictionary look-ups in this process, nothing else (no SQL, no Redis on the
request path). The sources behind them are refreshed by the monitor's worker thread:

* suspensions live in SQL (``wardgate_key_suspensions``) so they survive restarts and an admin
  can lift one from the CLI (``wardgate monitor lift KEY``) or the console; every replica
  re-reads them every ``refresh_s`` seconds;
* IP blocks and throttles expire by themselves; with ``redis_url`` they are shared through a
  Redis hash, so a stuffing IP blocked by one replica is blocked by all within ``refresh_s``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from wardgate.errors import KeyNotUsable, RateLimited
from wardgate.store.db import write_connection
from wardgate.store.keys import ApiKey
from wardgate.store.tables import key_suspensions

log = logging.getLogger(__name__)

_BLOCKS = "wardgate:mon:blocks"
_THROTTLES = "wardgate:mon:throttles"


class KeySuspended(KeyNotUsable):
    status = 403
    type = "permission_error"


class IpBlocked(RateLimited):
    code = "ip_blocked"


class KeyThrottled(KeyNotUsable):
    """A 429, but a known key's refusal: the audit record keeps the key's id."""

    status = 429
    type = "rate_limit_error"


@dataclass(frozen=True)
class Suspension:
    key_id: str
    rule: str
    reason: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "rule": self.rule,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(timespec="seconds"),
        }


class Suspensions:
    """The SQL side of suspensions (the CLI uses it directly)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def suspend(self, key_id: str, rule: str, reason: str) -> bool:
        """True if the key was not suspended before."""
        try:
            with write_connection(self._engine) as conn, conn.begin():
                conn.execute(
                    insert(key_suspensions).values(
                        key_id=key_id[:32],
                        rule=rule[:64],
                        reason=reason[:256],
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            return False
        return True

    def lift(self, key_id: str) -> bool:
        with write_connection(self._engine) as conn, conn.begin():
            result = conn.execute(delete(key_suspensions).where(key_suspensions.c.key_id == key_id))
        return bool(result.rowcount)

    def list(self) -> list[Suspension]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(key_suspensions).order_by(key_suspensions.c.created_at))
            return [Suspension(r.key_id, r.rule, r.reason, r.created_at) for r in rows]


class _Bucket:
    """A token bucket at ``rpm`` requests per minute (throttled keys only)."""

    __slots__ = ("rate", "stamp", "tokens")

    def __init__(self, rpm: int) -> None:
        self.rate = rpm / 60.0
        self.tokens = float(rpm)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 if a request may pass, else seconds until it could."""
        now = time.monotonic()
        self.tokens = min(self.rate * 60, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Enforcement:
    """The look-ups the request path makes, and the writes the monitor makes."""

    def __init__(
        self,
        suspensions: Suspensions | None,
        *,
        redis_url: str | None = None,
        exempt_admin: bool = True,
        refresh_s: float = 2.0,
    ) -> None:
        self._suspensions = suspensions
        self._exempt_admin = exempt_admin
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self.suspended: dict[str, Suspension] = {}
        #: ip -> unix time the block ends
        self.blocked_ips: dict[str, float] = {}
        #: key id -> (unix time the throttle ends, rpm)
        self.throttled: dict[str, tuple[float, int]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._redis = (
            redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
            if redis_url
            else None
        )
        #: Requests refused, by code (read by the monitor's metrics).
        self.refused: dict[str, int] = {}

    # -- request path ---------------------------------------------------------------------

    def check_ip(self, ip: str | None) -> IpBlocked | None:
        if ip is None or not self.blocked_ips:
            return None
        until = self.blocked_ips.get(ip)
        if until is None:
            return None
        left = until - time.time()
        if left <= 0:
            self.blocked_ips.pop(ip, None)
            return None
        self._count("ip_blocked")
        return IpBlocked(
            "this client address is temporarily blocked after repeated failed "
            f"authentication; retry after {int(left) + 1} s",
            headers={"Retry-After": str(int(left) + 1)},
        )

    def check_key(self, key: ApiKey) -> None:
        if not self.suspended and not self.throttled:
            return
        if key.admin and self._exempt_admin:
            return
        suspension = self.suspended.get(key.id)
        if suspension is not None:
            self._count("key_suspended")
            raise KeySuspended(
                f"this API key is suspended by the gateway's monitor (rule {suspension.rule}); "
                "an administrator can lift it with 'wardgate monitor lift'",
                key_id=key.id,
                code="key_suspended",
            )
        throttle = self.throttled.get(key.id)
        if throttle is None:
            return
        until, rpm = throttle
        if until <= time.time():
            self.throttled.pop(key.id, None)
            self._buckets.pop(key.id, None)
            return
        bucket = self._buckets.get(key.id)
        if bucket is None:
            bucket = self._buckets[key.id] = _Bucket(rpm)
        wait = bucket.take()
        if wait > 0:
            self._count("key_throttled")
            error = KeyThrottled(
                f"this API key is throttled to {rpm} requests per minute by the gateway's "
                f"monitor; retry after {int(wait) + 1} s",
                key_id=key.id,
                code="key_throttled",
            )
            error.headers["Retry-After"] = str(int(wait) + 1)
            raise error

    def _count(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1

    # -- monitor side (worker thread) -----------------------------------------------------

    def block_ip(self, ip: str, ttl_s: float) -> None:
        until = time.time() + ttl_s
        self.blocked_ips[ip] = until
        self._share(_BLOCKS, ip, until)

    def throttle(self, key_id: str, rpm: int, ttl_s: float) -> None:
        until = time.time() + ttl_s
        self.throttled[key_id] = (until, rpm)
        self._share(_THROTTLES, key_id, until, rpm)

    def suspend(self, key_id: str, rule: str, reason: str) -> None:
        self.suspended[key_id] = Suspension(key_id, rule, reason, datetime.now(UTC))
        if self._suspensions is not None:
            self._suspensions.suspend(key_id, rule, reason)

    def lift(self, key_id: str) -> bool:
        self.suspended.pop(key_id, None)
        return self._suspensions.lift(key_id) if self._suspensions is not None else False

    def unblock_ip(self, ip: str) -> None:
        self.blocked_ips.pop(ip, None)
        if self._redis is not None:
            try:
                self._redis.hdel(_BLOCKS, ip)
            except RedisError as exc:
                log.warning("monitor: could not unblock %s in Redis (%s)", ip, type(exc).__name__)

    def refresh(self) -> None:
        """Re-read the shared sources (suspensions from SQL; blocks, throttles from Redis)."""
        if self._suspensions is not None:
            try:
                self.suspended = {s.key_id: s for s in self._suspensions.list()}
            except Exception as exc:  # keep the last known set; the database may be back soon
                log.warning("monitor: could not read suspensions (%s)", type(exc).__name__)
        if self._redis is None:
            return
        now = time.time()
        try:
            blocks = self._redis.hgetall(_BLOCKS)
            throttles = self._redis.hgetall(_THROTTLES)
        except RedisError as exc:
            log.warning("monitor: could not read shared blocks (%s)", type(exc).__name__)
            return
        merged = dict(self.blocked_ips)
        for raw_ip, raw in blocks.items():
            until = float(json.loads(raw)[0])
            ip = _text(raw_ip)
            if until > now:
                merged[ip] = max(until, merged.get(ip, 0.0))
        self.blocked_ips = {ip: u for ip, u in merged.items() if u > now}
        throttled = dict(self.throttled)
        for raw_key, raw in throttles.items():
            until, rpm = json.loads(raw)
            if until > now:
                throttled[_text(raw_key)] = (float(until), int(rpm))
        self.throttled = {k: v for k, v in throttled.items() if v[0] > now}

    def _share(self, table: str, member: str, until: float, *extra: int) -> None:
        if self._redis is None:
            return
        try:
            self._redis.hset(table, member, json.dumps([until, *extra]))
        except RedisError as exc:
            log.warning("monitor: could not share an action via Redis (%s)", type(exc).__name__)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
