"""In-process rate limiter: exact for one gateway process, no dependencies.

Sliding windows (see :mod:`wardgate.ratelimit.window`): per key, one-second slots holding
the requests and tokens admitted in them. Each check is a few operations under a lock with no
``await`` inside, so concurrent tasks (and threads) see one consistent window. Memory stays
bounded: a key whose window has emptied is indistinguishable from no key, so idle keys are
dropped on a periodic sweep without changing any decision. Only when more than ``max_keys``
keys are *active* at once is the least recently used one forgotten (which lets that key start
again from an empty window) — keys are issued by an administrator, so that bound is a sizing
knob, not an attack surface.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from wardgate.ratelimit.base import LimitDecision, unlimited
from wardgate.ratelimit.window import (
    WINDOW_S,
    Outcome,
    decision,
    first_live_slot,
    slot_expires_at,
    slot_of,
    token_need,
    wait_for,
)


class _KeyWindow:
    """One key's live slots, oldest first, as ``[slot, requests, tokens]``, with totals."""

    __slots__ = ("requests", "slots", "tokens")

    def __init__(self) -> None:
        # A list, not a deque: at most 61 entries, and an empty deque costs ten times more.
        self.slots: list[list[float]] = []
        self.requests = 0.0
        self.tokens = 0.0

    def advance(self, current: int) -> None:
        """Forget slots that no longer count at ``current``."""
        oldest = first_live_slot(current)
        slots = self.slots
        dead = 0
        while dead < len(slots) and slots[dead][0] < oldest:
            self.requests -= slots[dead][1]
            self.tokens -= slots[dead][2]
            dead += 1
        if dead:
            del slots[:dead]
        if not slots:
            self.requests = self.tokens = 0.0  # no float drift survives an empty window

    def add(self, current: int, requests: float, tokens: float) -> None:
        slots = self.slots
        if slots and slots[-1][0] == current:
            slots[-1][1] += requests
            slots[-1][2] += tokens
        else:
            slots.append([current, requests, tokens])
        self.requests += requests
        self.tokens += tokens

    def refund(self, tokens: float) -> None:
        """Take ``tokens`` off the newest slots, none below zero (never a credit)."""
        for slot in reversed(self.slots):
            taken = min(slot[2], tokens)
            slot[2] -= taken
            self.tokens -= taken
            tokens -= taken
            if tokens <= 0:
                return

    def reset_s(self, now: float, window_s: float) -> float:
        return (
            max(0.0, slot_expires_at(int(self.slots[-1][0]), window_s) - now) if self.slots else 0.0
        )


class LocalRateLimiter:
    """Sliding windows in a dict; see the module docstring for the memory bound."""

    def __init__(
        self,
        *,
        max_keys: int = 100_000,
        sweep_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = WINDOW_S,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._window_s = window_s
        self._windows: OrderedDict[str, _KeyWindow] = OrderedDict()
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def __len__(self) -> int:
        """Keys currently holding state (for tests and metrics)."""
        return len(self._windows)

    async def check(self, key_id: str, rpm: int, tpm: int, tokens: int) -> LimitDecision:
        rpm, tpm = max(0, rpm), max(0, tpm)
        if rpm == 0 and tpm == 0:
            return unlimited()
        with self._lock:
            now = self._clock()
            current = slot_of(now, self._window_s)
            window = self._window(key_id, current)
            need = token_need(tokens, tpm)
            # The slot walk runs only for a refusal (to say how long to wait).
            request_wait = 0.0
            if rpm and window.requests + 1 > rpm:
                request_wait = wait_for(
                    ((int(s[0]), s[1]) for s in window.slots),
                    window.requests,
                    1,
                    rpm,
                    now,
                    self._window_s,
                )
            token_wait = 0.0
            if tpm and window.tokens + need > tpm:
                token_wait = wait_for(
                    ((int(s[0]), s[2]) for s in window.slots),
                    window.tokens,
                    need,
                    tpm,
                    now,
                    self._window_s,
                )
            allowed = request_wait == 0.0 and token_wait == 0.0
            if allowed:
                window.add(current, 1 if rpm else 0, max(0, tokens) if tpm else 0)
            outcome = Outcome(
                allowed,
                window.requests,
                window.tokens,
                request_wait,
                token_wait,
                window.reset_s(now, self._window_s),
            )
            self._maybe_sweep(now, current)
        return decision(outcome, rpm, tpm)

    async def consume_tokens(self, key_id: str, tpm: int, tokens: int) -> None:
        if tpm <= 0 or tokens == 0:
            return
        with self._lock:
            now = self._clock()
            current = slot_of(now, self._window_s)
            window = self._window(key_id, current)
            if tokens > 0:
                window.add(current, 0, tokens)
            else:
                window.refund(-tokens)
            self._maybe_sweep(now, current)

    async def aclose(self) -> None:
        with self._lock:
            self._windows.clear()

    def _window(self, key_id: str, current: int) -> _KeyWindow:
        window = self._windows.get(key_id)
        if window is None:
            window = self._windows[key_id] = _KeyWindow()
        else:
            window.advance(current)
            self._windows.move_to_end(key_id)
        return window

    def _maybe_sweep(self, now: float, current: int) -> None:
        # The O(n) sweep runs at most once per interval; between sweeps an overflow costs
        # one O(1) LRU eviction, so a burst of new keys cannot make every check O(n).
        if now - self._last_sweep >= self._sweep_interval_s:
            self._last_sweep = now
            for key_id, window in list(self._windows.items()):
                window.advance(current)
                if not window.slots:
                    del self._windows[key_id]
        while len(self._windows) > self._max_keys:
            self._windows.popitem(last=False)
