"""In-process rate limiter: exact for one gateway process, no dependencies.

Each check is a few float operations under a lock with no ``await`` inside, so concurrent
tasks (and threads) see a consistent bucket. Memory stays bounded: a bucket that has refilled
to capacity is indistinguishable from no bucket, so idle keys are dropped on a periodic sweep
without changing any decision. Only when more than ``max_keys`` keys are *active* at once is
the least recently used one forgotten (which lets that key start again from a full bucket) —
keys are issued by an administrator, so that bound is a sizing knob, not an attack surface.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from wardgate.ratelimit.base import LimitDecision, unlimited
from wardgate.ratelimit.bucket import Outcome, decision, refilled, seconds_until, token_need


@dataclass(slots=True)
class _KeyBuckets:
    """Both buckets of one key, as of ``updated``, with the limits they were last used with."""

    requests: float
    tokens: float
    rpm: int
    tpm: int
    updated: float

    def advance(self, now: float, rpm: int, tpm: int) -> None:
        """Refill to ``now`` under the given limits (a limit newly set starts full)."""
        elapsed = now - self.updated
        self.requests = refilled(self.requests, rpm, elapsed) if self.rpm > 0 else float(rpm)
        self.tokens = refilled(self.tokens, tpm, elapsed) if self.tpm > 0 else float(tpm)
        self.rpm, self.tpm, self.updated = rpm, tpm, now

    def idle(self, now: float) -> bool:
        """Full again, so forgetting it changes nothing."""
        elapsed = now - self.updated
        return (self.rpm <= 0 or refilled(self.requests, self.rpm, elapsed) >= self.rpm) and (
            self.tpm <= 0 or refilled(self.tokens, self.tpm, elapsed) >= self.tpm
        )


class LocalRateLimiter:
    """Token buckets in a dict; see the module docstring for the memory bound."""

    def __init__(
        self,
        *,
        max_keys: int = 100_000,
        sweep_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._buckets: OrderedDict[str, _KeyBuckets] = OrderedDict()
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def __len__(self) -> int:
        """Keys currently holding state (for tests and metrics)."""
        return len(self._buckets)

    async def check(self, key_id: str, rpm: int, tpm: int, tokens: int) -> LimitDecision:
        rpm, tpm = max(0, rpm), max(0, tpm)
        if rpm == 0 and tpm == 0:
            return unlimited()
        with self._lock:
            now = self._clock()
            state = self._state(key_id, now, rpm, tpm)
            request_wait = seconds_until(state.requests, 1, rpm) if rpm else 0.0
            token_wait = seconds_until(state.tokens, token_need(tokens, tpm), tpm) if tpm else 0.0
            allowed = request_wait == 0.0 and token_wait == 0.0
            if allowed:
                if rpm:
                    state.requests -= 1
                if tpm:
                    state.tokens -= max(0, tokens)
            outcome = Outcome(allowed, state.requests, state.tokens, request_wait, token_wait)
            self._maybe_sweep(now)
        return decision(outcome, rpm, tpm)

    async def consume_tokens(self, key_id: str, tpm: int, tokens: int) -> None:
        if tpm <= 0 or tokens == 0:
            return
        with self._lock:
            now = self._clock()
            existing = self._buckets.get(key_id)
            rpm = existing.rpm if existing is not None else 0
            state = self._state(key_id, now, rpm, tpm)
            state.tokens = min(float(tpm), state.tokens - tokens)
            self._maybe_sweep(now)

    async def aclose(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _state(self, key_id: str, now: float, rpm: int, tpm: int) -> _KeyBuckets:
        state = self._buckets.get(key_id)
        if state is None:
            state = _KeyBuckets(float(rpm), float(tpm), rpm, tpm, now)
            self._buckets[key_id] = state
        else:
            state.advance(now, rpm, tpm)
            self._buckets.move_to_end(key_id)
        return state

    def _maybe_sweep(self, now: float) -> None:
        # The O(n) sweep runs at most once per interval; between sweeps an overflow costs
        # one O(1) LRU eviction, so a burst of new keys cannot make every check O(n).
        if now - self._last_sweep >= self._sweep_interval_s:
            self._last_sweep = now
            for key_id in [k for k, state in self._buckets.items() if state.idle(now)]:
                del self._buckets[key_id]
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
