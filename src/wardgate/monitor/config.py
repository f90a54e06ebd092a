"""Monitor configuration: which detectors run, their thresholds, and what each one does.

Every rule has an ``action``:

* ``alert`` — an audit record (``kind: alert``), a Prometheus count, and the webhooks;
* ``throttle`` — the above, and the key is held to ``throttle_rpm`` for ``action_ttl_s``;
* ``suspend`` — the above, and the key is refused (403 ``key_suspended``) until an admin lifts
  it (``wardgate monitor lift KEY``, or the console);
* ``block_ip`` — the above, and the client IP is refused (429 ``ip_blocked``, ``Retry-After``)
  for ``action_ttl_s``.

Example::

    monitor:
      rules:
        auth_failures: {action: block_ip, threshold: 10, window_s: 60, action_ttl_s: 900}
        new_network: {action: alert}
        key_rate: {action: throttle, throttle_rpm: 30}
      working_hours: {timezone: Europe/Berlin, days: [0, 1, 2, 3, 4], start: "07:00", end: "20:00"}
      webhooks:
        - url: https://hooks.example.com/wardgate
          secret_env: WARDGATE_WEBHOOK_SECRET
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

Action = Literal["alert", "throttle", "suspend", "block_ip"]

_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleConfig(_Strict):
    enabled: bool = True
    action: Action = "alert"
    #: Events (or distinct values) within ``window_s`` that fire a burst rule.
    threshold: int = Field(default=10, ge=1, le=100_000)
    window_s: float = Field(default=60.0, gt=0, le=86_400)
    #: How long a throttle or IP block lasts.
    action_ttl_s: float = Field(default=900.0, gt=0, le=30 * 86_400)
    throttle_rpm: int = Field(default=10, ge=1)
    #: The same rule on the same subject alerts at most once per this many seconds.
    dedup_s: float = Field(default=900.0, ge=0)
    severity: Literal["info", "warning", "critical"] = "warning"


class RateRuleConfig(RuleConfig):
    """EWMA of per-minute counts with a mean-absolute-deviation band (``key_rate``)."""

    #: Weight of the newest minute in the baseline (0.05: a memory of about 20 minutes).
    alpha: float = Field(default=0.05, gt=0, lt=1)
    #: Fire when a minute exceeds mean + ``k`` × deviation (and ``ratio`` × mean).
    k: float = Field(default=8.0, gt=0)
    ratio: float = Field(default=3.0, ge=1)
    #: Below this many requests in a minute nothing fires (small numbers are all noise).
    min_count: int = Field(default=20, ge=1)
    #: Minutes of baseline a key needs before this rule judges it.
    warmup_minutes: int = Field(default=30, ge=1)


class TokenRuleConfig(RuleConfig):
    """Tokens per request against the key's own baseline (``key_tokens``: slow exfiltration)."""

    alpha: float = Field(default=0.01, gt=0, lt=1)
    #: Fire when the mean of the last ``recent`` requests exceeds ``ratio`` × the baseline.
    ratio: float = Field(default=2.0, gt=1)
    recent: int = Field(default=20, ge=2, le=1000)
    warmup_requests: int = Field(default=100, ge=1)


class NetworkRuleConfig(RuleConfig):
    """A key seen from a network (IPv4 /24, IPv6 /48) it never used during its warm-up."""

    warmup_requests: int = Field(default=50, ge=1)
    #: Networks remembered per key; the oldest is forgotten first.
    max_networks: int = Field(default=32, ge=1, le=10_000)


def _rules() -> dict[str, RuleConfig]:
    return {
        "auth_failures": RuleConfig(
            action="block_ip", threshold=10, window_s=60, severity="critical"
        ),
        "guard_blocks": RuleConfig(threshold=5, window_s=300),
        "many_ips": RuleConfig(threshold=20, window_s=600),
        "model_enumeration": RuleConfig(threshold=5, window_s=600),
        "off_hours": RuleConfig(severity="info", dedup_s=12 * 3600),
    }


class WorkingHours(_Strict):
    timezone: str = "UTC"
    #: Monday is 0.
    days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    start: str = Field(default="07:00", pattern=_HHMM)
    end: str = Field(default="20:00", pattern=_HHMM)
    #: Only these keys are judged (empty: every key).
    keys: list[str] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in value):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        return value


class WebhookConfig(_Strict):
    url: str = Field(pattern=r"^https?://")
    #: Environment variable holding the HMAC-SHA-256 signing secret (unset: unsigned).
    secret_env: str | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=4, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0)
    #: Alerts per rule per minute sent to this hook; the rest are counted and dropped.
    per_rule_per_minute: int = Field(default=10, ge=1)
    min_severity: Literal["info", "warning", "critical"] = "info"


class MonitorConfig(_Strict):
    enabled: bool = True
    key_rate: RateRuleConfig = Field(default_factory=RateRuleConfig)
    key_tokens: TokenRuleConfig = Field(default_factory=TokenRuleConfig)
    new_network: NetworkRuleConfig = Field(default_factory=NetworkRuleConfig)
    #: The burst rules: ``auth_failures`` (401s per IP), ``guard_blocks`` (per key and per IP),
    #: ``many_ips`` (distinct IPs per key), ``model_enumeration`` (distinct refused models per
    #: key or IP), ``off_hours`` (needs ``working_hours``).
    rules: dict[str, RuleConfig] = Field(default_factory=_rules)
    working_hours: WorkingHours | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    #: Admin keys are never throttled or suspended by a rule (their alerts still go out).
    exempt_admin: bool = True
    #: Events waiting for the detectors; beyond it they are dropped and counted.
    queue_size: int = Field(default=50_000, ge=100)

    @field_validator("rules", mode="before")
    @classmethod
    def _merge_defaults(cls, value: object) -> object:
        """A rule the file names keeps the defaults of the fields it leaves out (so
        ``auth_failures: {threshold: 5}`` still blocks the IP); unnamed rules keep theirs."""
        if not isinstance(value, dict):
            return value
        defaults = _rules()
        unknown = set(value) - set(defaults)
        if unknown:
            raise ValueError(f"unknown rule(s) {sorted(unknown)}; known: {sorted(defaults)}")
        merged: dict[str, object] = {n: r.model_dump() for n, r in defaults.items()}
        for name, given in value.items():
            if isinstance(given, dict):
                merged[name] = {**defaults[name].model_dump(), **given}
            else:
                merged[name] = given
        return merged

    def rule(self, name: str) -> RuleConfig:
        if name == "key_rate":
            return self.key_rate
        if name == "key_tokens":
            return self.key_tokens
        if name == "new_network":
            return self.new_network
        return self.rules[name]
