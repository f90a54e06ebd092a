"""The detectors: each one looks at one event and the shared state, and may return findings.

A detector never blocks anything itself; the monitor turns a finding into the rule's action.
Times are the events' own timestamps (seconds since the epoch), so a replayed day
(``bench/anomaly.py``) runs the exact code the gateway runs, at simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from wardgate.monitor.config import (
    MonitorConfig,
    NetworkRuleConfig,
    RateRuleConfig,
    RuleConfig,
    TokenRuleConfig,
    WorkingHours,
)
from wardgate.monitor.events import Event, network_of
from wardgate.monitor.state import Record, State

#: Idle minutes folded into a rate baseline at most (longer gaps: the baseline has decayed).
_MAX_IDLE_MINUTES = 240


@dataclass(frozen=True)
class Finding:
    rule: str
    #: ``key`` or ``ip``: what the action applies to.
    subject: str
    subject_id: str
    message: str
    ts: float
    evidence: dict[str, Any] = field(default_factory=dict)


class Detector:
    """Base class: ``rule`` names the rule (and its config); ``observe`` does the work."""

    rule: ClassVar[str]

    def __init__(self, config: RuleConfig) -> None:
        self.config = config

    def observe(self, event: Event, state: State) -> list[Finding]:
        raise NotImplementedError


class KeyRate(Detector):
    """Requests and tokens per minute against the key's own baseline.

    The baseline is an exponentially weighted mean and mean absolute deviation of per-minute
    counts (idle minutes count as zero). A minute fires when its running count passes
    ``max(min_count, mean + k·deviation, ratio·mean)``, so a burst is caught inside the minute
    it happens in, not at its end. Minutes fold into the baseline winsorised at that band, so
    an attack does not teach the baseline that it is normal.
    """

    rule = "key_rate"
    config: RateRuleConfig

    def observe(self, event: Event, state: State) -> list[Finding]:
        if event.key_id is None or event.auth_failed:
            return []
        cfg = self.config
        minute = int(event.ts // 60)

        def step(rec: Record | None) -> Record:
            if rec is None:
                rec = {
                    "m": minute,
                    "c": 0,
                    "t": 0,
                    "mr": 0.0,
                    "dr": 0.0,
                    "mt": 0.0,
                    "dt": 0.0,
                    "n": 0,
                    "f": -1,
                }
            if minute > rec["m"]:
                _fold(rec, cfg, min(minute - rec["m"], _MAX_IDLE_MINUTES))
                rec["m"], rec["c"], rec["t"] = minute, 0, 0
            rec["c"] += 1
            rec["t"] += event.tokens
            return rec

        rec = state.update("kr:" + event.key_id, step, ttl_s=6 * 3600)
        if rec["n"] < cfg.warmup_minutes or rec["f"] == minute:
            return []
        over = []
        band_r = _band(rec["mr"], rec["dr"], cfg, floor=cfg.min_count)
        if rec["c"] > band_r:
            over.append(("requests", rec["c"], rec["mr"], band_r))
        band_t = _band(rec["mt"], rec["dt"], cfg, floor=cfg.min_count * 10)
        if rec["t"] > band_t and rec["c"] >= cfg.min_count:
            over.append(("tokens", rec["t"], rec["mt"], band_t))
        if not over:
            return []

        def mark(r: Record | None) -> Record:
            assert r is not None
            r["f"] = minute
            return r

        state.update("kr:" + event.key_id, mark, ttl_s=6 * 3600)
        what, value, mean, band = over[0]
        return [
            Finding(
                self.rule,
                "key",
                event.key_id,
                f"{what} this minute {value} vs baseline {mean:.1f}/min (band {band:.1f})",
                event.ts,
                {
                    "measure": what,
                    "this_minute": value,
                    "baseline_per_min": round(mean, 2),
                    "band": round(band, 2),
                    "requests_this_minute": rec["c"],
                    "tokens_this_minute": rec["t"],
                },
            )
        ]


def _band(mean: float, dev: float, cfg: RateRuleConfig, *, floor: float) -> float:
    spread = max(dev, 0.1 * mean + 1.0)
    return max(float(floor), mean + cfg.k * spread, cfg.ratio * mean)


def _fold(rec: Record, cfg: RateRuleConfig, minutes: int) -> None:
    """Fold the closed minute, then ``minutes - 1`` idle ones, into the baseline."""
    a = cfg.alpha
    for i in range(minutes):
        c, t = (rec["c"], rec["t"]) if i == 0 else (0, 0)
        if rec["n"] >= cfg.warmup_minutes:  # winsorise: an attack is not a new normal
            c = min(c, _band(rec["mr"], rec["dr"], cfg, floor=cfg.min_count))
            t = min(t, _band(rec["mt"], rec["dt"], cfg, floor=cfg.min_count * 10))
        rec["dr"] = (1 - a) * rec["dr"] + a * abs(c - rec["mr"])
        rec["mr"] = (1 - a) * rec["mr"] + a * c
        rec["dt"] = (1 - a) * rec["dt"] + a * abs(t - rec["mt"])
        rec["mt"] = (1 - a) * rec["mt"] + a * t
        rec["n"] += 1
        if i > 0 and rec["mr"] < 1e-3 and rec["mt"] < 1e-2:
            rec["n"] += minutes - i - 1  # fully decayed: the rest changes nothing
            break


class KeyTokens(Detector):
    """Tokens per request: the mean of a key's last ``recent`` answered requests against its
    own long-run mean (slow exfiltration: normal request rate, much longer answers)."""

    rule = "key_tokens"
    config: TokenRuleConfig

    def observe(self, event: Event, state: State) -> list[Finding]:
        if event.key_id is None or event.tokens <= 0 or event.status != 200:
            return []
        cfg = self.config

        def step(rec: Record | None) -> Record:
            if rec is None:
                rec = {"b": float(event.tokens), "n": 0, "r": []}
            recent: list[int] = rec["r"]
            recent.append(event.tokens)
            del recent[: -cfg.recent]
            x = float(event.tokens)
            if rec["n"] >= cfg.warmup_requests:
                x = min(x, cfg.ratio * rec["b"])
            rec["b"] = (1 - cfg.alpha) * rec["b"] + cfg.alpha * x
            rec["n"] += 1
            return rec

        rec = state.update("kt:" + event.key_id, step, ttl_s=7 * 86_400)
        if rec["n"] < cfg.warmup_requests + cfg.recent or len(rec["r"]) < cfg.recent:
            return []
        mean = sum(rec["r"]) / len(rec["r"])
        if mean <= cfg.ratio * rec["b"]:
            return []
        return [
            Finding(
                self.rule,
                "key",
                event.key_id,
                f"{mean:.0f} tokens/request over the last {len(rec['r'])} requests vs "
                f"baseline {rec['b']:.0f}",
                event.ts,
                {
                    "recent_mean_tokens": round(mean, 1),
                    "baseline_tokens": round(rec["b"], 1),
                    "ratio": round(mean / max(rec["b"], 1e-9), 2),
                    "recent_requests": len(rec["r"]),
                },
            )
        ]


class NewNetwork(Detector):
    """A key used from a network it did not use during its first ``warmup_requests``."""

    rule = "new_network"
    config: NetworkRuleConfig

    def observe(self, event: Event, state: State) -> list[Finding]:
        if event.key_id is None or event.ip is None or event.auth_failed:
            return []
        cfg = self.config
        net = network_of(event.ip)

        def count(rec: Record | None) -> Record:
            rec = rec or {"n": 0}
            rec["n"] += 1
            return rec

        seen = state.update("nn:" + event.key_id, count, ttl_s=30 * 86_400)["n"]
        new, known = state.remember("nn:" + event.key_id, net, cfg.max_networks)
        if not new or seen <= cfg.warmup_requests:
            return []
        return [
            Finding(
                self.rule,
                "key",
                event.key_id,
                f"key used from a new network {net} (known networks: {known - 1})",
                event.ts,
                {
                    "network": net,
                    "ip": event.ip,
                    "known_networks": known - 1,
                    "requests_before": seen - 1,
                },
            )
        ]


class _Burst(Detector):
    """``threshold`` matching events within ``window_s`` for one subject."""

    def _burst(
        self, event: Event, state: State, subject: str, subject_id: str, what: str
    ) -> list[Finding]:
        cfg = self.config
        name = f"{self.rule}:{subject}:{subject_id}"
        if not state.burst(name, event.ts, cfg.threshold, cfg.window_s):
            return []
        return [
            Finding(
                self.rule,
                subject,
                subject_id,
                f"{cfg.threshold} {what} within {cfg.window_s:g} s from {subject} {subject_id}",
                event.ts,
                {
                    "count": cfg.threshold,
                    "window_s": cfg.window_s,
                    "last_status": event.status,
                    "last_code": event.error_code,
                    "ip": event.ip,
                    "key_id": event.key_id,
                },
            )
        ]


class AuthFailures(_Burst):
    """401s from one IP (key stuffing)."""

    rule = "auth_failures"

    def observe(self, event: Event, state: State) -> list[Finding]:
        if not event.auth_failed or event.ip is None:
            return []
        return self._burst(event, state, "ip", event.ip, "failed authentications")


class GuardBlocks(_Burst):
    """Guard blocks from one key, and from one IP (probing the guards)."""

    rule = "guard_blocks"

    def observe(self, event: Event, state: State) -> list[Finding]:
        if not event.guard_blocked:
            return []
        found = []
        if event.key_id is not None:
            found += self._burst(event, state, "key", event.key_id, "guard blocks")
        if event.ip is not None:
            found += self._burst(event, state, "ip", event.ip, "guard blocks")
        return found


class _Distinct(Detector):
    def _distinct(
        self, event: Event, state: State, subject: str, subject_id: str, member: str, what: str
    ) -> list[Finding]:
        cfg = self.config
        n = state.distinct(f"{self.rule}:{subject}:{subject_id}", member, event.ts, cfg.window_s)
        if n < cfg.threshold:
            return []
        return [
            Finding(
                self.rule,
                subject,
                subject_id,
                f"{n} distinct {what} within {cfg.window_s:g} s from {subject} {subject_id}",
                event.ts,
                {"distinct": n, "window_s": cfg.window_s, "latest": member[:256]},
            )
        ]


class ManyIps(_Distinct):
    """One key from many client IPs at once (a leaked key used by many)."""

    rule = "many_ips"

    def observe(self, event: Event, state: State) -> list[Finding]:
        if event.key_id is None or event.ip is None or event.auth_failed:
            return []
        return self._distinct(event, state, "key", event.key_id, event.ip, "client IPs")


class ModelEnumeration(_Distinct):
    """Many distinct refused model names (unknown, or not the key's) per key and per IP."""

    rule = "model_enumeration"

    def observe(self, event: Event, state: State) -> list[Finding]:
        if not event.model_refused or not event.model:
            return []
        found = []
        if event.key_id is not None:
            found += self._distinct(event, state, "key", event.key_id, event.model, "models")
        if event.ip is not None:
            found += self._distinct(event, state, "ip", event.ip, event.model, "models")
        return found


class OffHours(Detector):
    """A key used outside the configured working hours."""

    rule = "off_hours"

    def __init__(self, config: RuleConfig, hours: WorkingHours) -> None:
        super().__init__(config)
        self.hours = hours
        self.zone = ZoneInfo(hours.timezone)
        sh, sm = (int(x) for x in hours.start.split(":"))
        eh, em = (int(x) for x in hours.end.split(":"))
        self.start, self.end = sh * 60 + sm, eh * 60 + em
        self.keys = frozenset(hours.keys)

    def observe(self, event: Event, state: State) -> list[Finding]:
        if event.key_id is None or event.auth_failed:
            return []
        if self.keys and event.key_id not in self.keys:
            return []
        local = datetime.fromtimestamp(event.ts, self.zone)
        minute = local.hour * 60 + local.minute
        inside = local.weekday() in self.hours.days and self.start <= minute < self.end
        if inside:
            return []
        return [
            Finding(
                self.rule,
                "key",
                event.key_id,
                f"key used at {local:%a %H:%M} {self.hours.timezone}, outside working hours",
                event.ts,
                {"local_time": local.isoformat(timespec="seconds"), "ip": event.ip},
            )
        ]


def build_detectors(config: MonitorConfig) -> list[Detector]:
    """The enabled detectors, in a fixed order."""
    detectors: list[Detector] = []
    simple: list[type[Detector]] = [AuthFailures, GuardBlocks, ManyIps, ModelEnumeration]
    if config.key_rate.enabled:
        detectors.append(KeyRate(config.key_rate))
    if config.key_tokens.enabled:
        detectors.append(KeyTokens(config.key_tokens))
    if config.new_network.enabled:
        detectors.append(NewNetwork(config.new_network))
    for cls in simple:
        rule = config.rule(cls.rule)
        if rule.enabled:
            detectors.append(cls(rule))
    off = config.rule("off_hours")
    if off.enabled and config.working_hours is not None:
        detectors.append(OffHours(off, config.working_hours))
    return detectors
