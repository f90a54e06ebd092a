"""Prometheus counters for guard decisions, registered on a registry the caller owns.

No default (global) registry: the gateway passes its own, tests pass a fresh one, and two
pipelines in one process never collide on metric names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class GuardMetrics:
    """``wardgate_guard_decisions_total{guard,stage,outcome}`` and a latency histogram.

    ``outcome`` is the action (``allow``, ``flag``, ``redact``, ``restrict_on_prem``, ``block``) or
    ``error``/``timeout`` when the guard itself failed.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.decisions = Counter(
            "wardgate_guard_decisions",
            "Guard decisions by guard, stage and outcome.",
            ["guard", "stage", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wardgate_guard_latency_seconds",
            "Time a guard spent on one request or response (all texts).",
            ["guard", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def record(self, guard: str, stage: str, outcome: str, latency_s: float) -> None:
        self.decisions.labels(guard=guard, stage=stage, outcome=outcome).inc()
        self.latency.labels(guard=guard, stage=stage).observe(latency_s)

    def count(self, guard: str, stage: str, outcome: str) -> float:
        """Current counter value (for tests and the admin API)."""
        value = self.registry.get_sample_value(
            "wardgate_guard_decisions_total",
            {"guard": guard, "stage": stage, "outcome": outcome},
        )
        return value or 0.0
