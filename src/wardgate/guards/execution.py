"""Run one guard on one text under its timeout, and fold the results into audit decisions.

Kept apart from the pipeline so the request path and the streaming scanner share exactly the
same failure semantics: an exception or a timeout is an ``error`` outcome, which blocks unless
the guard's spec says ``on_error: allow`` (fail closed by default).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from wardgate.errors import ConfigError, GuardBlocked
from wardgate.guards.base import Action, Guard, ScanContext, Verdict, worst
from wardgate.guards.metrics import GuardMetrics

UNAVAILABLE_CODE = "guard_unavailable"


class BlockedByGuard(GuardBlocked):
    """A :class:`GuardBlocked` that also carries the audit decisions made so far."""

    def __init__(self, message: str, *, code: str, decisions: list[dict[str, Any]],
                 guard: str, status: int | None = None) -> None:  # fmt: skip
        super().__init__(message, code=code, status=status)
        self.decisions = decisions
        self.guard = guard


@dataclass(slots=True)
class Outcome:
    """One guard on one text: its verdict, or why there is none."""

    verdict: Verdict | None
    latency_s: float
    error: str | None = None


async def run_guard(guard: Guard, text: str, ctx: ScanContext, executor: Executor) -> Outcome:
    """Run ``guard`` on ``text`` in the way its class asks for, bounded by ``timeout_s``."""
    timeout = guard.spec.timeout_s
    start = time.perf_counter()
    try:
        if guard.is_async:
            verdict = await asyncio.wait_for(guard.check(text, ctx), timeout)
        elif guard.blocking:
            quick = guard.scan_inline(text, ctx)
            if quick is not None:
                verdict = quick
            else:
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(executor, guard.scan, text, ctx)
                verdict = await asyncio.wait_for(future, timeout)
        else:
            verdict = guard.scan(text, ctx)
    except TimeoutError:
        return Outcome(None, time.perf_counter() - start, "timeout")
    except Exception as exc:  # a broken guard must not take the request down with it
        return Outcome(None, time.perf_counter() - start, f"exception:{type(exc).__name__}")
    return _checked(verdict, time.perf_counter() - start, timeout)


def run_guard_sync(guard: Guard, text: str, ctx: ScanContext) -> Outcome:
    """The synchronous variant for the streaming scanner's ``feed``; async guards are refused."""
    if guard.is_async:
        raise ConfigError(
            f"output guard {guard.name!r} is asynchronous; use 'await scanner.afeed()'"
        )
    start = time.perf_counter()
    try:
        verdict = guard.scan(text, ctx)
    except Exception as exc:
        return Outcome(None, time.perf_counter() - start, f"exception:{type(exc).__name__}")
    return _checked(verdict, time.perf_counter() - start, guard.spec.timeout_s)


def _checked(verdict: object, latency: float, timeout: float) -> Outcome:
    if not isinstance(verdict, Verdict):
        return Outcome(None, latency, "exception:BadVerdict")
    # Inline guards cannot be interrupted; one that overran still failed its deadline.
    if latency > timeout:
        return Outcome(None, latency, "timeout")
    if verdict.action is Action.BLOCK and not verdict.code:
        return Outcome(None, latency, "exception:BlockWithoutCode")
    if verdict.action is Action.REDACT and verdict.redacted is None:
        return Outcome(None, latency, "exception:RedactWithoutText")
    return Outcome(verdict, latency)


@dataclass(slots=True)
class DecisionLog:
    """Everything one guard decided about one request (or one response), for audit and metrics.

    Only kinds, counts, scores and timings are kept, never the matched text.
    """

    guard: str
    type: str
    stage: str
    actions: list[Action] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    scores: dict[str, float] = field(default_factory=dict)
    data_classes: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    latency_s: float = 0.0
    texts: int = 0
    recorded: bool = False

    @classmethod
    def for_guard(cls, guard: Guard, stage: str) -> DecisionLog:
        return cls(guard=guard.name, type=guard.spec.type, stage=stage)

    def add(self, outcome: Outcome, *, failed_action: Action) -> None:
        self.texts += 1
        self.latency_s += outcome.latency_s
        if outcome.error is not None:
            self.errors.append(outcome.error)
            self.actions.append(failed_action)
            return
        verdict = outcome.verdict
        assert verdict is not None
        self.actions.append(verdict.action)
        if verdict.code:
            self.codes.append(verdict.code)
        self.kinds.update(f.kind for f in verdict.findings)
        self.data_classes |= verdict.data_classes
        for name, value in verdict.scores.items():
            self.scores[name] = max(value, self.scores.get(name, float("-inf")))

    @property
    def action(self) -> Action:
        return worst(self.actions)

    @property
    def outcome(self) -> str:
        """Metric label: the action, or ``timeout``/``error`` when the guard failed."""
        if self.errors:
            return "timeout" if "timeout" in self.errors else "error"
        return self.action.value

    def as_dict(self) -> dict[str, Any]:
        return {
            "guard": self.guard,
            "type": self.type,
            "stage": self.stage,
            "action": self.action.value,
            "code": self.codes[0] if self.codes else None,
            "findings": dict(sorted(self.kinds.items())),
            "data_classes": sorted(self.data_classes),
            "scores": {k: round(v, 4) for k, v in sorted(self.scores.items())},
            "latency_ms": round(self.latency_s * 1000, 3),
            "texts": self.texts,
            "errors": list(self.errors),
        }

    def record(self, metrics: GuardMetrics | None) -> None:
        """Count this decision once in Prometheus (idempotent)."""
        if metrics is not None and not self.recorded and self.texts:
            metrics.record(self.guard, self.stage, self.outcome, self.latency_s)
        self.recorded = True


def blocked(
    guard: Guard, code: str, decisions: list[dict[str, Any]], stage: str = "input"
) -> BlockedByGuard:
    """The client-facing error: names the policy, never the content."""
    what = "response" if stage == "output" else "request"
    return BlockedByGuard(
        f"The {what} was blocked by the gateway's content policy ({code}).",
        code=code,
        decisions=decisions,
        guard=guard.name,
    )


def unavailable(guard: Guard, decisions: list[dict[str, Any]]) -> BlockedByGuard:
    """A guard failed and fails closed: refuse, with a server-side status."""
    return BlockedByGuard(
        "A safety check could not be completed, so the gateway refused to continue.",
        code=UNAVAILABLE_CODE,
        status=503,
        decisions=decisions,
        guard=guard.name,
    )
