"""Redis-backed rate limiter: one limit shared exactly by every gateway process.

Each check is one Lua script, which Redis runs atomically, reading the time from the Redis
server (``TIME``) so that gateway hosts with skewed clocks still agree. The rules are the
sliding windows of :mod:`wardgate.ratelimit.window`: one hash per key holds its live
one-second slots (``r<slot>`` requests, ``t<slot>`` tokens); a check drops the slots that no
longer count, and the hash expires when its newest slot does, so Redis memory tracks active
keys (at most 122 small fields each).

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
from wardgate.ratelimit.window import SLOTS, WINDOW_S, Outcome, decision

log = logging.getLogger(__name__)

# KEYS[1]: the key's hash. ARGV: rpm, tpm, tokens (check: the prompt estimate; consume: the
# correction, negative for a refund), mode (1: check and admit; 0: consume), window seconds,
# slots per window, min TTL ms. Numbers go back as strings: Redis truncates Lua numbers.
_SCRIPT = """
-- Redis < 5 needs effects replication to write after reading TIME; later versions always do.
if redis.replicate_commands then redis.replicate_commands() end
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local mode = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local slots = tonumber(ARGV[6])
local min_ttl_ms = tonumber(ARGV[7])

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local current = math.floor(now * slots / window)
local oldest = current - slots

local raw = redis.call('HGETALL', KEYS[1])
local req, tok, seen, order, dead = {}, {}, {}, {}, {}
local used_r, used_t = 0, 0
for i = 1, #raw, 2 do
  local field = raw[i]
  local slot = tonumber(string.sub(field, 2))
  local amount = tonumber(raw[i + 1])
  if slot < oldest then
    dead[#dead + 1] = field
  else
    if not seen[slot] then seen[slot] = true; order[#order + 1] = slot end
    if string.sub(field, 1, 1) == 'r' then
      req[slot] = amount; used_r = used_r + amount
    else
      tok[slot] = amount; used_t = used_t + amount
    end
  end
end
if #dead > 0 then redis.call('HDEL', KEYS[1], unpack(dead)) end
table.sort(order)

local function expires(slot) return (slot + slots + 1) * window / slots end
local function wait(amounts, used, need, limit)
  local excess = used + need - limit
  if excess <= 0 then return 0 end
  for _, slot in ipairs(order) do
    excess = excess - (amounts[slot] or 0)
    if excess <= 0 then return math.max(0, expires(slot) - now) end
  end
  return window
end
local function add(prefix, amounts, slot, amount)
  redis.call('HINCRBY', KEYS[1], prefix .. slot, amount)
  amounts[slot] = (amounts[slot] or 0) + amount
  if not seen[slot] then seen[slot] = true; order[#order + 1] = slot end
end

local allowed, r_wait, t_wait = 1, 0, 0
if mode == 1 then
  if rpm > 0 then r_wait = wait(req, used_r, 1, rpm) end
  if tpm > 0 then t_wait = wait(tok, used_t, math.min(math.max(0, tokens), tpm), tpm) end
  if r_wait > 0 or t_wait > 0 then allowed = 0 end
  if allowed == 1 then
    if rpm > 0 then add('r', req, current, 1); used_r = used_r + 1 end
    if tpm > 0 and tokens > 0 then add('t', tok, current, tokens); used_t = used_t + tokens end
  end
elseif tokens > 0 then
  add('t', tok, current, tokens); used_t = used_t + tokens
else
  -- A refund comes off the newest slots and never below zero: no credit.
  local left = -tokens
  for i = #order, 1, -1 do
    local slot = order[i]
    local taken = math.min(tok[slot] or 0, left)
    if taken > 0 then
      redis.call('HINCRBY', KEYS[1], 't' .. slot, -taken)
      used_t = used_t - taken
      left = left - taken
    end
    if left <= 0 then break end
  end
end

local reset = 0
if #order > 0 then
  table.sort(order)
  reset = math.max(0, expires(order[#order]) - now)
  redis.call('PEXPIRE', KEYS[1], math.max(min_ttl_ms, math.ceil(reset * 1000)))
end
local function fmt(x) return string.format('%.17g', x) end
return {allowed, fmt(used_r), fmt(used_t), fmt(r_wait), fmt(t_wait), fmt(reset)}
"""


class RedisRateLimiter:
    """Token buckets in Redis; see the module docstring for semantics and failure mode."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "wardgate:rl:",
        ttl_s: float = 1.0,
        window_s: float = WINDOW_S,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._min_ttl_ms = max(1, int(ttl_s * 1000))
        self._window_s = window_s
        self._script = client.register_script(_SCRIPT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "wardgate:rl:",
        ttl_s: float = 1.0,
        socket_timeout_s: float = 0.5,
        max_connections: int = 64,
        window_s: float = WINDOW_S,
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
        return cls(client, prefix=prefix, ttl_s=ttl_s, window_s=window_s)

    async def check(self, key_id: str, rpm: int, tpm: int, tokens: int) -> LimitDecision:
        rpm, tpm = max(0, rpm), max(0, tpm)
        if rpm == 0 and tpm == 0:
            return unlimited()
        raw = await self._run(key_id, rpm, tpm, max(0, tokens), check=True)
        outcome = Outcome(
            allowed=int(raw[0]) == 1,
            requests_used=float(raw[1]),
            tokens_used=float(raw[2]),
            request_wait_s=float(raw[3]),
            token_wait_s=float(raw[4]),
            reset_s=float(raw[5]),
        )
        return decision(outcome, rpm, tpm)

    async def consume_tokens(self, key_id: str, tpm: int, tokens: int) -> None:
        if tpm <= 0 or tokens == 0:
            return
        try:
            await self._run(key_id, 0, tpm, tokens, check=False)
        except Overloaded as exc:
            log.warning(
                "rate limiter unavailable; %d tokens were not charged (%s)",
                tokens,
                type(exc.__cause__).__name__,
            )

    async def aclose(self) -> None:
        await self._client.aclose(close_connection_pool=True)

    async def _run(self, key_id: str, rpm: int, tpm: int, tokens: int, *, check: bool) -> list[Any]:
        try:
            result: list[Any] = await self._script(
                keys=[self._prefix + key_id],
                args=[
                    rpm,
                    tpm,
                    tokens,
                    1 if check else 0,
                    repr(self._window_s),
                    SLOTS,
                    self._min_ttl_ms,
                ],
            )
        except (RedisError, OSError) as exc:
            raise Overloaded(
                "the rate limiter is unavailable; request refused",
                code="rate_limiter_unavailable",
                headers={"retry-after": "1"},
            ) from exc
        return result
