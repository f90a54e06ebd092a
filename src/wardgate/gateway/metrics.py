"""Prometheus metrics for one gateway instance, in its own registry (no global state).

Label values are bounded: model names come from config, status codes and error codes from a
fixed set, so a client cannot blow up cardinality by sending odd model names (unknown models
are counted under ``model="unknown"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _QueueDepthCollector(Collector):
    """Reads queue depths at scrape time instead of updating a gauge on every request."""

    def __init__(self, depths: Callable[[], dict[str, int]]) -> None:
        self._depths = depths

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "wardgate_queue_depth",
            "Requests admitted and not yet finished, per model",
            labels=["model"],
        )
        for model, depth in sorted(self._depths().items()):
            family.add_metric([model], depth)
        yield family


class _CircuitCollector(Collector):
    def __init__(self, states: Callable[[], dict[str, str]]) -> None:
        self._states = states

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "wardgate_circuit_open",
            "1 when a model's circuit breaker is open",
            labels=["model", "state"],
        )
        for model, state in sorted(self._states().items()):
            family.add_metric([model, state], 1.0 if state == "open" else 0.0)
        yield family


class GatewayMetrics:
    """All counters and histograms the gateway exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "wardgate_requests",
            "Chat requests by model and HTTP status",
            ["model", "status"],
            registry=r,
        )
        self.errors = Counter(
            "wardgate_errors", "Error responses by stable error code", ["code"], registry=r
        )
        self.latency = Histogram(
            "wardgate_request_duration_seconds",
            "End-to-end request latency",
            ["model", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "wardgate_upstream_duration_seconds",
            "Time spent in the backend",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "wardgate_tokens", "Tokens by model and kind", ["model", "kind"], registry=r
        )
        self.audit_dropped = Counter(
            "wardgate_audit_dropped", "Audit records that could not be queued", registry=r
        )
        #: Labelled children by (metric, labels): ``labels()`` takes a lock and builds the
        #: key on every call; the label values are bounded (see module doc), so is this.
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per distinct label values."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def request_done(
        self,
        model: str,
        status: int,
        stream: bool,
        seconds: float,
        error_code: str | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Everything one finished chat request counts towards."""
        self.child(self.requests, model, str(status)).inc()
        self.child(self.latency, model, "true" if stream else "false").observe(seconds)
        if error_code:
            self.child(self.errors, error_code).inc()
        if prompt_tokens or completion_tokens:
            self.child(self.tokens, model, "prompt").inc(prompt_tokens)
            self.child(self.tokens, model, "completion").inc(completion_tokens)

    def watch_queues(self, depths: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_QueueDepthCollector(depths))

    def watch_circuits(self, states: Callable[[], dict[str, str]]) -> None:
        self.registry.register(_CircuitCollector(states))

    def render(self) -> bytes:
        return generate_latest(self.registry)
