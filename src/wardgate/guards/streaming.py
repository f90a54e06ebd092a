"""Output guards over a stream, without buffering the whole answer.

The scanner keeps two strings: ``pending`` (received, not yet released) and ``tail`` (the last
``hold`` characters already released, kept only as context so a pattern split across a release
boundary is still seen whole). Once ``pending`` holds ``hold + step_chars`` characters the
guards scan ``tail + pending``; everything but the last ``hold`` of ``pending`` is then
released. So the client is never more than ``hold + step_chars`` characters behind the model,
and any pattern shorter than ``hold`` (a canary, an API key, an e-mail address) is seen whole
before any character of it leaves the gateway, however the chunks split it.

``hold`` is the largest :attr:`~wardgate.guards.base.Guard.hold_chars` among the guards (each
declares what its own patterns need; docs/guards.md has the measurement), unless the config
sets ``streaming.hold_chars``. Fewer guards, or shorter patterns, mean earlier first tokens.

A guard that blocks raises :class:`~wardgate.guards.execution.BlockedByGuard` from ``feed``; the
gateway ends the stream with an error event. Redactions are applied to ``pending`` only; a
redaction that would have to reach into text already released blocks instead (fail closed).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from wardgate.guards.base import Action, Guard, RequestState, ScanContext, Verdict
from wardgate.guards.execution import (
    DecisionLog,
    Outcome,
    blocked,
    run_guard,
    run_guard_sync,
    unavailable,
)
from wardgate.guards.metrics import GuardMetrics

if TYPE_CHECKING:
    from wardgate.guards.config import StreamingConfig


class OutputScanner:
    """Scan a streamed answer chunk by chunk. One instance per response.

    ``feed(text) -> str`` returns the text safe to send now (possibly empty);
    ``finish() -> str`` scans and returns the rest. ``afeed``/``afinish`` do the same and also
    run asynchronous guards (an LLM judge) and enforce timeouts of executor-bound guards.
    ``decisions`` is the JSON-able audit summary, one entry per guard.
    """

    def __init__(
        self,
        guards: Sequence[Guard],
        state: RequestState,
        config: StreamingConfig,
        *,
        metrics: GuardMetrics | None = None,
        executor: Executor | None = None,
    ) -> None:
        self._guards = list(guards)
        self._state = state
        self._hold = stream_hold(self._guards, config)
        self._step = config.step_chars
        self._metrics = metrics
        self._own_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(max_workers=1)
        self._tail = ""
        self._pending = ""
        self._done = False
        self._logs = {g.name: DecisionLog.for_guard(g, "output") for g in self._guards}

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return [log.as_dict() for log in self._logs.values() if log.texts]

    @property
    def hold(self) -> int:
        """Characters this scanner holds back (see :func:`stream_hold`)."""
        return self._hold

    @property
    def held(self) -> int:
        """Characters received but not yet released (bounded by hold + step + one chunk)."""
        return len(self._pending)

    def _due(self) -> bool:
        return bool(self._guards) and len(self._pending) >= self._hold + self._step

    # -- synchronous API -------------------------------------------------------------------

    def feed(self, text: str) -> str:
        if self._done:  # after a block or finish() nothing more is released
            return ""
        self._pending += text
        if not self._guards:
            return self._release(final=True)
        if not self._due():
            return ""
        return self._scan_sync(final=False)

    def finish(self) -> str:
        if self._done:
            return ""
        released = self._scan_sync(final=True) if self._pending else ""
        self._close()
        return released

    def _scan_sync(self, *, final: bool) -> str:
        window, offset = self._tail + self._pending, len(self._tail)
        ctx = self._context(final)
        for guard in self._guards:
            window = self._apply(guard, run_guard_sync(guard, window, ctx), window, offset, final)
        self._pending = window[offset:]
        return self._release(final=final)

    # -- asynchronous API ------------------------------------------------------------------

    async def afeed(self, text: str) -> str:
        if self._done:
            return ""
        self._pending += text
        if not self._guards:
            return self._release(final=True)
        if not self._due():
            return ""
        return await self._scan_async(final=False)

    async def afinish(self) -> str:
        if self._done:
            return ""
        released = await self._scan_async(final=True) if self._pending else ""
        self._close()
        return released

    async def scan_whole(self, text: str) -> str:
        """Non-streaming: scan the whole answer once and return it (possibly redacted)."""
        self._pending = text
        released = await self._scan_async(final=True) if text else ""
        self._close()
        return released

    async def _scan_async(self, *, final: bool) -> str:
        window, offset = self._tail + self._pending, len(self._tail)
        ctx = self._context(final)
        for guard in self._guards:
            outcome = await run_guard(guard, window, ctx, self._executor)
            window = self._apply(guard, outcome, window, offset, final)
        self._pending = window[offset:]
        return self._release(final=final)

    # -- shared ----------------------------------------------------------------------------

    def _context(self, final: bool) -> ScanContext:
        return ScanContext(stage="output", source="response", state=self._state, partial=not final)

    def _apply(self, guard: Guard, outcome: Outcome, window: str, offset: int, final: bool) -> str:
        """Fold one guard's outcome into the window; raise when it blocks or fails closed."""
        log = self._logs[guard.name]
        failed = Action.BLOCK if guard.spec.on_error == "block" else Action.ALLOW
        log.add(outcome, failed_action=failed)
        verdict = outcome.verdict
        if verdict is None:
            if failed is Action.BLOCK:
                raise self._abort(unavailable(guard, []))
            return window
        if verdict.action is Action.BLOCK:
            raise self._abort(blocked(guard, verdict.code or guard.block_code, [], "output"))
        if verdict.action is not Action.REDACT or verdict.redacted is None:
            return window
        release_end = len(window) - self._hold
        if not final and _open_and_too_long(verdict, len(window), release_end):
            # A match that runs to the end of the window and already reaches text due for
            # release is longer than the hold-back: its rest is still to come, so it cannot
            # be redacted whole. Stop instead of leaking its tail.
            raise self._abort(blocked(guard, verdict.code or guard.block_code, [], "output"))
        if not final and not _reaches_release_zone(verdict, release_end):
            # Everything found lies in the held-back part: more text may extend the match, so
            # decide on the next scan, which sees this part again.
            return window
        if not verdict.redacted.startswith(window[:offset]):
            raise self._abort(blocked(guard, verdict.code or guard.block_code, [], "output"))
        return verdict.redacted

    def _release(self, *, final: bool) -> str:
        if final:
            out, self._pending = self._pending, ""
        else:
            cut = max(0, len(self._pending) - self._hold)
            out, self._pending = self._pending[:cut], self._pending[cut:]
        # Only the last ``hold`` characters are context for the next scan (none without a hold).
        self._tail = (self._tail + out)[-self._hold :] if self._hold else ""
        return out

    def _abort(self, error: Exception) -> Exception:
        """Stop the stream: nothing more is released, decisions are recorded once."""
        self._pending = ""
        self._close()
        if hasattr(error, "decisions"):
            error.decisions = self.decisions
        return error

    def _close(self) -> None:
        if not self._done:
            self._done = True
            for log in self._logs.values():
                log.record(self._metrics)
            if self._own_executor:
                self._executor.shutdown(wait=False)


def stream_hold(guards: Sequence[Guard], config: StreamingConfig) -> int:
    """The configured ``hold_chars``, else the largest hold among ``guards`` (0 for none)."""
    if config.hold_chars is not None:
        return config.hold_chars
    return max((guard.hold_chars for guard in guards), default=0)


def _open_and_too_long(verdict: Verdict, window_end: int, release_end: int) -> bool:
    return any(
        f.has_span and f.end >= window_end and f.start < release_end for f in verdict.findings
    )


def _reaches_release_zone(verdict: Verdict, release_end: int) -> bool:
    return any(not f.has_span or f.start < release_end for f in verdict.findings)
