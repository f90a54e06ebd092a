"""What the detectors see of a request: a few fields of the audit record, never its content."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: Error codes that mean "this model is not yours to use" (enumeration probes).
MODEL_REFUSALS = frozenset({"model_not_found", "model_not_allowed"})
#: Record kinds that describe a client's request (alerts and gaps are not fed back).
REQUEST_KINDS = frozenset({"request", "admin", "console"})


@dataclass(frozen=True, slots=True)
class Event:
    ts: float
    key_id: str | None
    ip: str | None
    status: int
    error_code: str | None = None
    tokens: int = 0
    model: str | None = None
    guard_blocked: bool = False
    admin: bool = False

    @property
    def auth_failed(self) -> bool:
        return self.status == 401

    @property
    def model_refused(self) -> bool:
        return self.error_code in MODEL_REFUSALS


def event_from_record(record: Any) -> Event | None:
    """The event for one :class:`~wardgate.store.audit.AuditRecord`; ``None`` for records that
    are not client requests (alerts, gaps)."""
    if record.kind not in REQUEST_KINDS:
        return None
    blocked = any(
        isinstance(d, dict) and d.get("action") == "block" for d in record.guard_decisions or ()
    )
    return Event(
        ts=record.ts.timestamp(),
        key_id=record.key_id,
        ip=record.client_ip,
        status=record.status,
        error_code=record.error_code,
        tokens=(record.prompt_tokens or 0) + (record.completion_tokens or 0),
        model=record.model_asked or _path_model(record.routing),
        guard_blocked=blocked,
        admin=record.kind in ("admin", "console"),
    )


#: Addresses whose network is remembered: a gateway sees the same few clients over and over,
#: and parsing an address and building its network costs ~20 µs; bounded, least recently used
#: first out, so a scan from many addresses cannot grow it.
NETWORK_CACHE_SIZE = 4096


@lru_cache(maxsize=NETWORK_CACHE_SIZE)
def network_of(ip: str) -> str:
    """The network an address belongs to for "new network" purposes: IPv4 /24, IPv6 /48."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _path_model(routing: Any) -> str | None:
    """``GET /v1/models/{id}`` keeps the id in the record's routing field."""
    if isinstance(routing, dict):
        value = routing.get("model_id")
        return str(value) if value else None
    return None
