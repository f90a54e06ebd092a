"""The monitor's worker takes records in batches: bounded, counted when full, drained at stop."""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry

from wardgate.monitor.config import MonitorConfig
from wardgate.monitor.events import NETWORK_CACHE_SIZE, network_of
from wardgate.monitor.monitor import BATCH_INTERVAL_S, Monitor
from wardgate.store.auditlog import AuditRecord


def record(i: int = 0, **kw: object) -> AuditRecord:
    fields: dict[str, object] = {"key_id": "key_a", "client_ip": f"10.0.0.{i % 200}"}
    fields.update(kw)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_the_default_interval_is_about_50_ms() -> None:
    assert BATCH_INTERVAL_S == 0.05


def test_records_wait_for_the_interval_then_go_as_one_batch() -> None:
    m = Monitor(MonitorConfig(), batch_interval_s=1.0)
    m.start()
    try:
        for i in range(20):
            m.observe(record(i))
        time.sleep(0.1)
        assert m.processed == 0 and m.pending() == 20  # still gathering
        deadline = time.monotonic() + 5
        while m.processed < 20:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert m.pending() == 0
    finally:
        m.stop()


def test_stop_judges_everything_queued_without_waiting_the_interval() -> None:
    m = Monitor(MonitorConfig(), batch_interval_s=30.0)
    m.start()
    for i in range(50):
        m.observe(record(i))
    started = time.monotonic()
    m.stop()
    assert time.monotonic() - started < 5
    assert m.processed == 50 and m.pending() == 0 and m.dropped == 0
    m.observe(record())  # after stop: refused and counted, never left pending
    assert m.dropped == 1 and m.pending() == 0


def test_drain_hurries_the_batch() -> None:
    m = Monitor(MonitorConfig(), batch_interval_s=30.0)
    m.start()
    try:
        for i in range(10):
            m.observe(record(i))
        started = time.monotonic()
        assert m.drain(timeout=5)
        assert time.monotonic() - started < 5
        assert m.processed == 10
        # The next records wait for the interval again (drain does not leave it hurried).
        m.observe(record())
        time.sleep(0.1)
        assert m.processed == 10
        assert m.drain(timeout=5) and m.processed == 11
    finally:
        m.stop()


def test_a_full_buffer_drops_and_counts_in_the_metric() -> None:
    registry = CollectorRegistry()
    m = Monitor(MonitorConfig(queue_size=100), registry=registry)  # not started: nothing drains
    for i in range(150):
        m.observe(record(i))
    assert m.dropped == 50 and m.pending() == 100
    assert registry.get_sample_value("wardgate_monitor_events_dropped_total") == 50
    m.start()
    assert m.drain(timeout=5)
    assert m.processed == 100
    m.stop()
    assert registry.get_sample_value("wardgate_monitor_events_total") == 100


def test_records_that_are_not_requests_are_not_queued() -> None:
    m = Monitor(MonitorConfig())
    m.observe(record(kind="alert"))
    m.observe(record(kind="gap"))
    assert m.pending() == 0 and m.dropped == 0


def test_a_stop_without_a_start_counts_what_was_queued_as_dropped() -> None:
    m = Monitor(MonitorConfig())
    for i in range(3):
        m.observe(record(i))
    m.stop()
    assert m.dropped == 3 and m.pending() == 0 and m.processed == 0


def test_a_record_arriving_while_the_worker_sleeps_wakes_it() -> None:
    m = Monitor(MonitorConfig(), batch_interval_s=0.01)
    m.enforcement.refresh_s = 3600  # the worker sleeps until woken, not on a timer
    m.start()
    try:
        for n in range(1, 30):
            time.sleep(0.002 * (n % 3))  # land both while it sleeps and while it works
            m.observe(record(n))
            deadline = time.monotonic() + 5
            while m.processed < n:
                assert time.monotonic() < deadline, f"record {n} left behind a sleeping worker"
                time.sleep(0.001)
    finally:
        m.stop()


def test_producers_on_several_threads_lose_nothing() -> None:
    m = Monitor(MonitorConfig(), batch_interval_s=0.005)
    m.start()

    def produce() -> None:
        for i in range(500):
            m.observe(record(i))

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.drain(timeout=10)
    m.stop()
    assert m.processed == 2000 and m.dropped == 0


def test_the_network_cache_is_bounded() -> None:
    network_of.cache_clear()
    assert network_of.cache_info().maxsize == NETWORK_CACHE_SIZE == 4096
    for i in range(NETWORK_CACHE_SIZE + 1000):
        assert network_of(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}").endswith(".0/24")
    assert network_of.cache_info().currsize == NETWORK_CACHE_SIZE
    assert network_of("10.1.2.3") == network_of("10.1.2.3") == "10.1.2.0/24"
    assert network_of("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert network_of.cache_info().hits >= 1
