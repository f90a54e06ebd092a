"""Each detector on hand-made event streams, against in-process and real Redis state."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator

import pytest
import redis

from wardgate.monitor.config import MonitorConfig, WorkingHours
from wardgate.monitor.detectors import build_detectors
from wardgate.monitor.events import Event, network_of
from wardgate.monitor.monitor import Monitor
from wardgate.monitor.state import MemoryState, RedisState, SharedState, State

REDIS_URL = "redis://127.0.0.1:6379/0"
DAY0 = 1_800_000_000.0 - (1_800_000_000.0 % 86400)  # a midnight UTC (a Friday)


@pytest.fixture(params=["memory", "redis", "shared"])
def state(request: pytest.FixtureRequest) -> Iterator[State]:
    if request.param == "memory":
        yield MemoryState()
        return
    prefix = f"wgtest:mon:{secrets.token_hex(4)}:"
    redis_state = RedisState(REDIS_URL, prefix=prefix)
    store: State = redis_state if request.param == "redis" else SharedState(redis_state)
    yield store
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    client.close()
    redis_state.close()


def monitor(state: State, **raw: object) -> Monitor:
    return Monitor(MonitorConfig.model_validate(raw), state=state)


def ev(ts: float, key: str | None = "key_a", ip: str = "10.0.0.1", **kw: object) -> Event:
    return Event(ts=ts, key_id=key, ip=ip, status=kw.pop("status", 200), **kw)  # type: ignore[arg-type]


def rules(alerts: list[dict]) -> list[str]:
    return [a["rule"] for a in alerts]


def test_auth_failures_fire_once_at_threshold_and_block_the_ip(state: State) -> None:
    m = monitor(state, rules={"auth_failures": {"threshold": 5, "window_s": 60}})
    raised = []
    for i in range(12):
        raised += m.process(
            ev(DAY0 + i, key=None, ip="203.0.113.9", status=401, error_code="invalid_api_key")
        )
        if i == 3:
            assert raised == []  # four failures are not a burst
    assert rules(raised) == ["auth_failures"]  # deduplicated after the first
    assert raised[0]["client_ip"] == "203.0.113.9" and raised[0]["action"] == "block_ip"
    assert m.enforcement.check_ip("203.0.113.9") is not None
    assert m.enforcement.check_ip("203.0.113.10") is None


def test_auth_failures_spread_out_are_not_a_burst(state: State) -> None:
    m = monitor(state, rules={"auth_failures": {"threshold": 5, "window_s": 60}})
    raised = [a for i in range(20) for a in m.process(ev(DAY0 + i * 20, key=None, status=401))]
    assert raised == []


def test_new_network_after_warmup_only(state: State) -> None:
    m = monitor(state, new_network={"warmup_requests": 10})
    raised = []
    for i in range(30):
        raised += m.process(ev(DAY0 + i, ip=f"10.0.0.{i % 7 + 1}"))
    assert raised == []  # one /24 all along
    raised = m.process(ev(DAY0 + 40, ip="198.51.100.23"))
    assert rules(raised) == ["new_network"]
    assert raised[0]["evidence"]["network"] == "198.51.100.0/24"
    # Networks first seen during the warm-up are known, not new.
    m2 = monitor(state, new_network={"warmup_requests": 10})
    raised = [
        a
        for i in range(10)
        for a in m2.process(ev(DAY0 + i, key="key_b", ip="10.1.0.1" if i % 2 else "10.2.0.1"))
    ]
    raised += m2.process(ev(DAY0 + 20, key="key_b", ip="10.2.0.99"))
    assert raised == []


def test_guard_block_burst_per_key_and_ip(state: State) -> None:
    m = monitor(state, rules={"guard_blocks": {"threshold": 4, "window_s": 120}})
    raised = []
    for i in range(6):
        raised += m.process(ev(DAY0 + i * 5, guard_blocked=True, status=400))
    assert sorted((a["subject"], a["rule"]) for a in raised) == [
        ("ip", "guard_blocks"),
        ("key", "guard_blocks"),
    ]


def test_model_enumeration_counts_distinct_refused_models(state: State) -> None:
    m = monitor(state, rules={"model_enumeration": {"threshold": 4, "window_s": 600}})
    same = [
        a
        for i in range(10)
        for a in m.process(ev(DAY0 + i, status=404, error_code="model_not_found", model="gpt-5"))
    ]
    assert same == []  # one wrong model name, retried, is a bug, not enumeration
    raised = [
        a
        for i in range(4)
        for a in m.process(
            ev(DAY0 + 20 + i, status=404, error_code="model_not_found", model=f"m{i}")
        )
    ]
    assert {a["subject"] for a in raised} == {"key", "ip"}


def test_many_ips_for_one_key(state: State) -> None:
    m = monitor(
        state, rules={"many_ips": {"threshold": 8, "window_s": 300}}, new_network={"enabled": False}
    )
    raised = [a for i in range(8) for a in m.process(ev(DAY0 + i, ip=f"192.0.2.{i + 1}"))]
    assert rules(raised) == ["many_ips"]


def test_key_rate_burst_inside_the_minute_after_warmup(state: State) -> None:
    m = monitor(state, key_rate={"warmup_minutes": 30, "min_count": 20})
    rng = random.Random(3)
    raised = []
    t = DAY0
    for minute in range(120):  # about 10 requests a minute, Poisson-ish
        for _ in range(rng.randint(6, 14)):
            raised += m.process(ev(DAY0 + minute * 60 + rng.random() * 59, tokens=100))
    assert raised == []
    t = DAY0 + 120 * 60
    first = None
    for i in range(60):  # 60 requests within 30 s: 6x the baseline
        got = m.process(ev(t + i * 0.5, tokens=100))
        if got and first is None:
            first = i * 0.5
        raised += got
    assert rules(raised) == ["key_rate"]
    assert first is not None and first < 30
    assert raised[0]["evidence"]["measure"] == "requests"


def test_key_tokens_slow_exfiltration(state: State) -> None:
    m = monitor(state, key_tokens={"warmup_requests": 50, "recent": 20})
    rng = random.Random(5)
    raised = [
        a
        for i in range(300)
        for a in m.process(ev(DAY0 + i * 10, tokens=int(rng.lognormvariate(5.0, 0.4))))
    ]
    assert raised == []
    raised = [
        a
        for i in range(60)
        for a in m.process(ev(DAY0 + 3000 + i * 10, tokens=3 * int(rng.lognormvariate(5.0, 0.4))))
    ]
    assert rules(raised) == ["key_tokens"]
    assert raised[0]["evidence"]["ratio"] > 2


def test_off_hours_only_when_configured() -> None:
    assert "off_hours" not in [d.rule for d in build_detectors(MonitorConfig())]
    m = Monitor(
        MonitorConfig(
            working_hours=WorkingHours(
                timezone="UTC", start="08:00", end="18:00", days=[0, 1, 2, 3, 4]
            )
        )
    )
    friday_noon, friday_night = DAY0 + 12 * 3600, DAY0 + 23 * 3600
    assert m.process(ev(friday_noon)) == []
    assert rules(m.process(ev(friday_night))) == ["off_hours"]


def test_suspend_and_throttle_actions() -> None:
    from wardgate.monitor.enforcement import KeySuspended, KeyThrottled
    from wardgate.store.keys import ApiKey  # noqa: F401 - only for the attribute names

    class Key:
        def __init__(self, id: str, admin: bool = False) -> None:
            self.id, self.admin = id, admin

    m = Monitor(
        MonitorConfig.model_validate(
            {
                "rules": {
                    "guard_blocks": {"threshold": 2, "action": "suspend"},
                    "model_enumeration": {"threshold": 2, "action": "throttle", "throttle_rpm": 2},
                }
            }
        )
    )
    m.process(ev(DAY0, key="key_s", guard_blocked=True, ip="10.9.0.1"))
    m.process(ev(DAY0 + 1, key="key_s", guard_blocked=True, ip="10.9.0.2"))
    with pytest.raises(KeySuspended) as info:
        m.enforcement.check_key(Key("key_s"))  # type: ignore[arg-type]
    assert info.value.status == 403 and info.value.code == "key_suspended"
    for i in range(2):
        m.process(
            ev(
                DAY0 + i,
                key="key_t",
                status=404,
                error_code="model_not_found",
                model=f"x{i}",
                ip=f"10.8.0.{i}",
            )
        )
    m.enforcement.check_key(Key("key_t"))  # type: ignore[arg-type]
    m.enforcement.check_key(Key("key_t"))  # type: ignore[arg-type]
    with pytest.raises(KeyThrottled) as limited:
        m.enforcement.check_key(Key("key_t"))  # type: ignore[arg-type]
    assert limited.value.code == "key_throttled" and limited.value.status == 429
    assert "Retry-After" in limited.value.headers and limited.value.key_id == "key_t"
    m.enforcement.check_key(Key("key_other"))  # type: ignore[arg-type]


def test_network_of() -> None:
    assert network_of("10.1.2.3") == "10.1.2.0/24"
    assert network_of("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_of("not-an-ip") == "not-an-ip"


def test_detector_cpu_per_event_is_small() -> None:
    m = monitor(MemoryState())
    rng = random.Random(1)
    for i in range(20_000):
        m.process(
            ev(
                DAY0 + i * 0.05,
                key=f"key_{i % 50}",
                ip=f"10.0.{i % 50}.{rng.randint(1, 3)}",
                tokens=rng.randint(50, 400),
            )
        )
    per_event_ms = m.cpu_s / m.processed * 1000
    assert per_event_ms < 0.1, per_event_ms


def test_two_replicas_sharing_redis_see_one_stuffing_attack() -> None:
    """Each replica sees half the failures; together they cross the threshold, and alert once."""
    prefix = f"wgtest:mon:{secrets.token_hex(4)}:"
    cfg = {"rules": {"auth_failures": {"threshold": 6, "window_s": 60}}}
    a = monitor(SharedState(RedisState(REDIS_URL, prefix=prefix)), **cfg)
    b = monitor(SharedState(RedisState(REDIS_URL, prefix=prefix)), **cfg)
    raised = []
    for i in range(10):
        replica = a if i % 2 else b
        raised += replica.process(ev(DAY0 + i, key=None, ip="198.51.100.7", status=401))
    assert rules(raised) == ["auth_failures"]
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    client.close()
