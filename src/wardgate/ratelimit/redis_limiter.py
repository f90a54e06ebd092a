"""Redis-backed rate limiter: one limit shared exactly by every gateway process.

Each check is one Lua script, which Redis runs atomically, reading the time from the Redis
server (``TIME``) so that gateway hosts with skewed clocks still agree. The rules are the
ones in :mod:`wardgate.ratelimit.bucket`. One hash per key holds both buckets; it expires
once it would have refilled (never earlier than ``ttl_s``), so Redis memory tracks active keys.

If Redis cannot answer a ``check``, the limiter raises :class:`~wardgate.errors.Overloaded`
with code ``rate_limiter_unavailable`` (HTTP 503): a gateway that cannot count must not serve
unmetered traffic. Socket timeouts are short so an outage refuses fast instead of hanging,
and the connection pool *waits* for a free connection (briefly) rather than failing a burst.

``consume_tokens`` is best effort: it runs after the answer was served to a request admitted
while Redis worked, and raising there would lose the audit record of a completed exchange.
It logs the failure instead; the next ``check`` still fails closed while Redis is down.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wardgate.errors import Overloaded
from wardgate.ratelimit.base import LimitDecision, unlimited
from wardgate.ratelimit.bucket import Outcome, decision

log = logging.getLogger(__name__)

# KEYS[1]: the key's hash. ARGV: rpm (-1: keep the stored one), tpm, requests to take,
# tokens to take, enforce (1: refuse without budget, as in check; 0: always charge, as in
# consume), min TTL ms.
# Fields: r / t = request / token level, rc / tc = limits they were written under, ts = time.
# Numbers go back as strings because Redis truncates Lua numbers to integers.
_SCRIPT = """
-- Redis < 5 needs effects replication to write after reading TIME; later versions always do.
if redis.replicate_commands then redis.replicate_commands() end
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local take_requests = tonumber(ARGV[3])
local take_tokens = tonumber(ARGV[4])
local enforce = tonumber(ARGV[5])
local min_ttl_ms = tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local s = redis.call('HMGET', KEYS[1], 'r', 't', 'rc', 'tc', 'ts')
if rpm < 0 then rpm = tonumber(s[3] or '0') end
local elapsed = 0
if s[5] then
  elapsed = math.max(0, now - tonumber(s[5]))
end

local function level(stored, stored_cap, cap)
  if cap <= 0 then return 0 end
  if (not stored) or (not stored_cap) or tonumber(stored_cap) <= 0 then return cap end
  return math.min(cap, tonumber(stored) + elapsed * cap / 60)
end

local r = level(s[1], s[3], rpm)
local tk = level(s[2], s[4], tpm)
local r_wait = 0
local t_wait = 0
local allowed = 1
if enforce == 1 then
  if rpm > 0 and r < take_requests then
    r_wait = (take_requests - r) * 60 / rpm
    allowed = 0
  end
  local need = math.min(math.max(0, take_tokens), tpm)
  if tpm > 0 and tk < need then
    t_wait = (need - tk) * 60 / tpm
    allowed = 0
  end
end
if allowed == 1 then
  if rpm > 0 then r = r - take_requests end
  if tpm > 0 then tk = math.min(tpm, tk - take_tokens) end
end

local function fmt(x) return string.format('%.17g', x) end
redis.call('HSET', KEYS[1], 'r', fmt(r), 't', fmt(tk), 'rc', rpm, 'tc', tpm, 'ts', fmt(now))
local refill_s = 0
if rpm > 0 then refill_s = math.max(refill_s, (rpm - r) * 60 / rpm) end
if tpm > 0 then refill_s = math.max(refill_s, (tpm - tk) * 60 / tpm) end
redis.call('PEXPIRE', KEYS[1], math.max(min_ttl_ms, math.ceil(refill_s * 1000)))
return {allowed, fmt(r), fmt(tk), fmt(r_wait), fmt(t_wait)}
"""


class RedisRateLimiter:
    """Token buckets in Redis; see the module docstring for semantics and failure mode."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "wardgate:rl:",
        ttl_s: float = 60.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._min_ttl_ms = max(1, int(ttl_s * 1000))
        self._script = client.register_script(_SCRIPT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "wardgate:rl:",
        ttl_s: float = 60.0,
        socket_timeout_s: float = 0.5,
        max_connections: int = 64,
    ) -> RedisRateLimiter:
        """Build a limiter with its own connection pool (timeouts short: see module docs)."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            decode_responses=True,
        )
        client = aioredis.Redis(connection_pool=pool)
        return cls(client, prefix=prefix, ttl_s=ttl_s)

    async def check(self, key_id: str, rpm: int, tpm: int, tokens: int) -> LimitDecision:
        rpm, tpm = max(0, rpm), max(0, tpm)
        if rpm == 0 and tpm == 0:
            return unlimited()
        raw = await self._run(key_id, rpm, tpm, 1, max(0, tokens), enforce=True)
        outcome = Outcome(
            allowed=int(raw[0]) == 1,
            request_level=float(raw[1]),
            token_level=float(raw[2]),
            request_wait_s=float(raw[3]),
            token_wait_s=float(raw[4]),
        )
        return decision(outcome, rpm, tpm)

    async def consume_tokens(self, key_id: str, tpm: int, tokens: int) -> None:
        if tpm <= 0 or tokens == 0:
            return
        # rpm=0 here would reset the request bucket, so pass the stored one through.
        try:
            await self._run(key_id, -1, tpm, 0, tokens, enforce=False)
        except Overloaded as exc:
            log.warning(
                "rate limiter unavailable; %d tokens were not charged (%s)",
                tokens,
                type(exc.__cause__).__name__,
            )

    async def aclose(self) -> None:
        await self._client.aclose(close_connection_pool=True)

    async def _run(
        self, key_id: str, rpm: int, tpm: int, take_requests: int, tokens: int, *, enforce: bool
    ) -> list[Any]:
        try:
            result: list[Any] = await self._script(
                keys=[self._prefix + key_id],
                args=[rpm, tpm, take_requests, tokens, 1 if enforce else 0, self._min_ttl_ms],
            )
        except (RedisError, OSError) as exc:
            raise Overloaded(
                "the rate limiter is unavailable; request refused",
                code="rate_limiter_unavailable",
                headers={"retry-after": "1"},
            ) from exc
        return result
