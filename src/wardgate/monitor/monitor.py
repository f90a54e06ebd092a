"""The monitor: audit events in, findings out, each finding an alert and maybe an action.

The gateway hands every audit record to :meth:`Monitor.observe` as it hands it to the audit
writer (a non-blocking append to a bounded buffer; no second pass over the database). One
worker thread sleeps until records arrive, lets them gather for ``BATCH_INTERVAL_S`` (50 ms)
and judges the batch, so a busy gateway pays one thread wake-up per batch, not one per
request; a full buffer drops the record and counts it, and ``stop()`` judges what is left.
The worker runs the detectors, de-duplicates findings (same rule, same subject: once per
``dedup_s``, shared through Redis when configured), applies the rule's action, writes an
audit record of ``kind: alert`` for each, counts it in Prometheus, and queues the webhooks.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from wardgate.monitor.config import MonitorConfig
from wardgate.monitor.detectors import Detector, Finding, build_detectors
from wardgate.monitor.enforcement import Enforcement, Suspensions
from wardgate.monitor.events import REQUEST_KINDS, Event, event_from_record
from wardgate.monitor.state import MemoryState, RedisState, SharedState, State
from wardgate.monitor.webhooks import WebhookSender
from wardgate.store.auditlog import AuditRecord

log = logging.getLogger(__name__)


#: How long the worker lets events gather before it judges them: one thread wake-up per
#: batch instead of one per request, so an alert (and its action) may come this much later.
BATCH_INTERVAL_S = 0.05
#: Within a batch, the worker gives up the GIL every this many records, for this long.
_YIELD_EVERY = 8
_YIELD_S = 0.0001


class Monitor:
    def __init__(
        self,
        config: MonitorConfig,
        *,
        state: State | None = None,
        enforcement: Enforcement | None = None,
        submit: Callable[[AuditRecord], bool] | None = None,
        registry: CollectorRegistry | None = None,
        is_admin: Callable[[str], bool] | None = None,
        workers: int = 1,
        batch_interval_s: float = BATCH_INTERVAL_S,
    ) -> None:
        self.config = config
        self.state: State = state or MemoryState()
        self.enforcement = enforcement or Enforcement(None, exempt_admin=config.exempt_admin)
        self.detectors: list[Detector] = build_detectors(config)
        self._submit = submit
        self._is_admin = is_admin or (lambda key_id: False)
        # One bounded buffer per worker; a subject (key, else IP) always goes to the same
        # worker, so its events are judged in order. The states here are not thread-safe: the
        # gateway runs one worker (a custom thread-safe State may use more). ``deque`` appends
        # and pops are atomic; the lock only guards the counters.
        self._size = max(1, config.queue_size // workers)
        self._buffers: list[deque[AuditRecord]] = [deque() for _ in range(workers)]
        self._wakes = [threading.Event() for _ in range(workers)]
        #: Per worker: True while it sleeps with nothing queued (the next record wakes it).
        self._idle = [False] * workers
        #: Set by drain() and stop(): judge what is queued now, without waiting the interval.
        self._hurry = threading.Event()
        self._interval = batch_interval_s
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._done = threading.Condition(threading.Lock())
        #: Records queued, and records settled (judged, or failed to judge, or lost at stop).
        self._queued = 0
        self._settled = 0
        self.dropped = 0
        self.processed = 0
        self.cpu_s = 0.0
        self.alerts: Counter | None = None
        self.deliveries: Counter | None = None
        if registry is not None:
            self.alerts = Counter(
                "wardgate_monitor_alerts",
                "Monitor alerts by rule and action",
                ["rule", "action"],
                registry=registry,
            )
            self.deliveries = Counter(
                "wardgate_webhook_deliveries",
                "Webhook deliveries by result (ok, failed, rate_limited, dropped)",
                ["result"],
                registry=registry,
            )
            registry.register(_MonitorCollector(self))
        self.webhooks = WebhookSender(config.webhooks, count=self._count_delivery)

    # -- producer side (request path) ----------------------------------------------------

    def observe(self, record: AuditRecord) -> None:
        """Queue a record for the detectors: an append, no thread wake-up unless the worker
        sleeps with nothing queued. A full buffer drops the record and counts it
        (``wardgate_monitor_events_dropped``); the record becomes an event on the worker."""
        if record.kind not in REQUEST_KINDS:
            return
        buffers = self._buffers
        index = hash(record.key_id or record.client_ip) % len(buffers) if len(buffers) > 1 else 0
        buffer = buffers[index]
        with self._done:  # under the lock stop() takes: a record is judged, or counted lost
            if len(buffer) >= self._size or self._stopping:
                self.dropped += 1
                return
            self._queued += 1
            buffer.append(record)
        # The worker publishes ``_idle`` before its last look at the buffer, so a record is
        # never left behind a sleeping worker (the audit writer's protocol).
        if self._idle[index]:
            self._wakes[index].set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stopping = False
        self.enforcement.refresh()
        self.webhooks.start()
        for index in range(len(self._buffers)):
            thread = threading.Thread(
                target=self._run, args=(index, index == 0), name=f"wardgate-monitor-{index}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def pending(self) -> int:
        """Records queued but not yet judged."""
        with self._done:
            return self._queued - self._settled

    def drain(self, timeout: float = 5.0) -> bool:
        """Judge what is queued now and wait until every observed event has been judged
        (tests and shutdown; the gateway's request path never waits)."""
        self._hurry.set()
        for wake in self._wakes:
            wake.set()
        try:
            with self._done:
                return self._done.wait_for(lambda: self._queued == self._settled, timeout)
        finally:
            if not self._stopping:
                self._hurry.clear()

    def stop(self) -> None:
        """Judge everything still queued, then stop the workers (records observed after this
        are dropped and counted)."""
        with self._done:
            self._stopping = True
        self._hurry.set()
        for wake in self._wakes:
            wake.set()
        for thread in self._threads:
            thread.join(10)
        self._threads = []
        # Whatever no worker judged (never started, or one that did not finish in time) is
        # counted as dropped, never left silently pending.
        for buffer in self._buffers:
            lost = len(buffer)  # nothing appends now: observe() sees _stopping
            buffer.clear()
            if lost:
                with self._done:
                    self.dropped += lost
                    self._settled += lost
                    self._done.notify_all()
        self.webhooks.close()
        self.enforcement.close()
        self.state.close()

    def _run(self, index: int, refresher: bool) -> None:
        buffer, wake, hurry = self._buffers[index], self._wakes[index], self._hurry
        refresh_s = self.enforcement.refresh_s
        next_refresh = time.monotonic() + refresh_s
        while True:
            # Clear, then look at the buffer, then sleep: a wake-up that lands in between is
            # seen by the look, never lost.
            wake.clear()
            if not buffer:
                if self._stopping:
                    return
                self._idle[index] = True
                if not buffer and not self._stopping:  # re-checked after publishing _idle
                    wake.wait(max(0.0, next_refresh - time.monotonic()) if refresher else None)
                self._idle[index] = False
            if buffer and not self._stopping:
                # Let the interval's records gather: one wake-up judges them all.
                hurry.wait(self._interval)
            if refresher and time.monotonic() >= next_refresh:
                try:
                    self.enforcement.refresh()
                except Exception as exc:  # a database or Redis outage must not end the thread
                    log.warning("monitor: refresh failed (%s)", type(exc).__name__)
                next_refresh = time.monotonic() + refresh_s
            if buffer:
                self._judge(buffer)

    def _judge(self, buffer: deque[AuditRecord]) -> None:
        """Judge the records queued now, in order (later ones wait for the next batch)."""
        count = len(buffer)
        judged = 0
        started = time.thread_time()
        for n in range(count):
            if n and n % _YIELD_EVERY == 0:
                # Let the event loop have the GIL: a batch judged in one go would hold it for
                # a millisecond or more, and a request waiting for it that long shows in p99.
                time.sleep(_YIELD_S)
            record = buffer.popleft()
            try:
                event = event_from_record(record)
                if event is not None:
                    self._detect(event)
                    judged += 1
            except Exception as exc:  # a detector bug or Redis outage must not end the thread
                log.warning("monitor: event not judged (%s)", type(exc).__name__)
        spent = time.thread_time() - started
        with self._done:
            self.cpu_s += spent
            self.processed += judged
            self._settled += count
            if self._settled == self._queued:
                self._done.notify_all()

    # -- judging -------------------------------------------------------------------------

    def process(self, event: Event) -> list[dict[str, Any]]:
        """Run every detector on one event; returns the alerts raised (after dedup)."""
        started = time.thread_time()
        alerts = self._detect(event)
        spent = time.thread_time() - started
        with self._done:
            self.cpu_s += spent
            self.processed += 1
        return alerts

    def _detect(self, event: Event) -> list[dict[str, Any]]:
        findings: list[Finding] = []
        state = self.state
        for detector in self.detectors:
            findings += detector.observe(event, state)
        if not findings:
            return []
        return [a for f in findings if (a := self._raise(f)) is not None]

    def _raise(self, finding: Finding) -> dict[str, Any] | None:
        rule = self.config.rule(finding.rule)
        dedup = f"{finding.rule}:{finding.subject}:{finding.subject_id}"
        if not self.state.once(dedup, finding.ts, rule.dedup_s):
            return None
        action = rule.action
        if (
            finding.subject == "key"
            and action in ("throttle", "suspend")
            and (self.config.exempt_admin and self._is_admin(finding.subject_id))
        ):
            action = "alert"
        if action == "block_ip" and finding.subject != "ip":
            ip = finding.evidence.get("ip")
            if not ip:
                action = "alert"
        alert = {
            "id": "alert-" + secrets.token_hex(8),
            "rule": finding.rule,
            "severity": rule.severity,
            "subject": finding.subject,
            "key_id": finding.subject_id if finding.subject == "key" else None,
            "client_ip": finding.subject_id if finding.subject == "ip" else None,
            "message": finding.message,
            "action": action,
            "evidence": finding.evidence,
            "ts": datetime.fromtimestamp(finding.ts, UTC).isoformat(timespec="seconds"),
        }
        self._act(action, finding, rule.action_ttl_s, rule.throttle_rpm)
        if self.alerts is not None:
            self.alerts.labels(finding.rule, action).inc()
        if self._submit is not None:
            self._submit(alert_record(alert))
        self.webhooks.send(alert)
        return alert

    def _act(self, action: str, finding: Finding, ttl_s: float, rpm: int) -> None:
        enforcement = self.enforcement
        if action == "block_ip":
            ip = finding.subject_id if finding.subject == "ip" else finding.evidence["ip"]
            enforcement.block_ip(ip, ttl_s)
        elif action == "throttle" and finding.subject == "key":
            enforcement.throttle(finding.subject_id, rpm, ttl_s)
        elif action == "suspend" and finding.subject == "key":
            enforcement.suspend(finding.subject_id, finding.rule, finding.message)

    def _count_delivery(self, result: str) -> None:
        if self.deliveries is not None:
            self.deliveries.labels(result).inc()


def alert_record(alert: dict[str, Any]) -> AuditRecord:
    """An alert as the audit log keeps it: ``kind: alert``, the rule as its code, evidence in
    ``routing`` (the audit record's free-form JSON column)."""
    return AuditRecord(
        kind="alert",
        request_id=alert["id"],
        key_id=alert["key_id"],
        client_ip=alert["client_ip"],
        status=0,
        error_code=alert["rule"],
        routing={
            k: alert[k] for k in ("rule", "severity", "subject", "message", "action", "evidence")
        },
    )


def action_record(
    action: str,
    *,
    key_id: str | None = None,
    ip: str | None = None,
    actor: str | None = None,
    reason: str = "",
) -> AuditRecord:
    """An operator's action on the monitor's state (lift a suspension, unblock an IP)."""
    return AuditRecord(
        kind="action",
        request_id="action-" + secrets.token_hex(8),
        key_id=key_id,
        client_ip=ip,
        status=0,
        error_code=action,
        routing={"action": action, "actor": actor, "reason": reason[:256]},
    )


class _MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self._m = monitor

    def collect(self) -> Iterable[Metric]:
        m, e = self._m, self._m.enforcement
        gauge = GaugeMetricFamily(
            "wardgate_monitor_enforced",
            "Subjects currently under a monitor action",
            labels=["action"],
        )
        now = time.time()
        gauge.add_metric(["block_ip"], sum(1 for u in e.blocked_ips.values() if u > now))
        gauge.add_metric(["throttle"], sum(1 for u, _ in e.throttled.values() if u > now))
        gauge.add_metric(["suspend"], len(e.suspended))
        yield gauge
        refused = CounterMetricFamily(
            "wardgate_monitor_refused", "Requests refused by a monitor action", labels=["code"]
        )
        for code in ("ip_blocked", "key_throttled", "key_suspended"):
            refused.add_metric([code], e.refused.get(code, 0))
        yield refused
        yield CounterMetricFamily(
            "wardgate_monitor_events_dropped",
            "Events the monitor queue could not take",
            value=m.dropped,
        )
        yield CounterMetricFamily(
            "wardgate_monitor_events", "Events judged by the monitor", value=m.processed
        )
        yield CounterMetricFamily(
            "wardgate_monitor_cpu_seconds", "CPU time spent in the detectors", value=m.cpu_s
        )


def build_monitor(
    config: MonitorConfig,
    *,
    engine: Engine,
    redis_url: str | None,
    submit: Callable[[AuditRecord], bool],
    registry: CollectorRegistry,
    is_admin: Callable[[str], bool],
) -> Monitor:
    """The gateway's monitor: state and shared actions in Redis when ``redis_url`` is set."""
    state: State = SharedState(RedisState(redis_url)) if redis_url else MemoryState()
    enforcement = Enforcement(
        Suspensions(engine), redis_url=redis_url, exempt_admin=config.exempt_admin
    )
    return Monitor(
        config,
        state=state,
        enforcement=enforcement,
        submit=submit,
        registry=registry,
        is_admin=is_admin,
    )
