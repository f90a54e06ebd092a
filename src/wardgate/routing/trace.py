"""What failover did for one request: every attempt in order and who answered.

Kept apart from the failover engine because the audit log, the gateway and the red-team
harness read traces without needing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AttemptOutcome = Literal["ok", "error", "circuit_open", "skipped"]

#: Why a candidate was not tried (stable strings, safe for the audit log).
SKIP_VENDOR_FALLBACK = "vendor_fallback_not_allowed"
SKIP_ROUTING = "not_allowed_by_routing"
SKIP_KEY_SCOPE = "not_allowed_for_key"
SKIP_NO_BACKEND = "backend_unavailable"
#: Details on error attempts.
DETAIL_RETRY_AFTER_TOO_LONG = "retry_after_exceeds_max_wait"
DETAIL_MID_STREAM = "after_first_chunk"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One step of a route: a call to a backend, or a candidate not called and why."""

    model: str
    outcome: AttemptOutcome
    error_code: str | None = None
    latency_s: float = 0.0
    upstream_status: int | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "outcome": self.outcome,
            "error_code": self.error_code,
            "latency_s": round(self.latency_s, 6),
            "upstream_status": self.upstream_status,
            "detail": self.detail,
        }


@dataclass(slots=True)
class RouteTrace:
    """How a request was served: every attempt in order and the model that answered."""

    requested: str
    attempts: list[Attempt] = field(default_factory=list)
    served_by: str | None = None

    def as_list(self) -> list[dict[str, object]]:
        """The attempts as JSON-ready dicts, for the audit record."""
        return [attempt.as_dict() for attempt in self.attempts]
