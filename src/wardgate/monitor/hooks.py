"""The three places the monitor touches the gateway, each a thin subclass or wrapper:

* :class:`ObservedAuditWriter` — every record the audit writer is given is also given to the
  monitor (the "same events" as the audit log, no second pass over the database);
* :class:`EnforcingAuthenticator` — after a key authenticates, refuse it if it is suspended
  or over its throttle;
* :class:`IpBlockMiddleware` — refuse a blocked client address before routing, before any
  body is read, and audit the refusal.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from wardgate.gateway.anthropic_wire import error_body as anthropic_error_body
from wardgate.gateway.auth import KeyAuthenticator
from wardgate.monitor.enforcement import Enforcement
from wardgate.store.auditlog import AuditRecord
from wardgate.store.keys import ApiKey, KeyStore
from wardgate.store.writer import AuditWriter

#: Paths never refused by an IP block (probes and scrapes are not clients).
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ObservedAuditWriter(AuditWriter):
    observer: Callable[[AuditRecord], None] | None = None

    def submit(self, record: AuditRecord) -> bool:
        accepted = super().submit(record)
        observer = self.observer
        if observer is not None:
            observer(record)
        return accepted


class EnforcingAuthenticator(KeyAuthenticator):
    def __init__(self, store: KeyStore, *, ttl_s: float, enforcement: Enforcement) -> None:
        super().__init__(store, ttl_s=ttl_s)
        self.enforcement = enforcement

    async def authenticate(self, authorization: str | None) -> ApiKey:
        key = await super().authenticate(authorization)
        self.enforcement.check_key(key)
        return key


class IpBlockMiddleware:
    def __init__(
        self, app: ASGIApp, *, enforcement: Enforcement, submit: Callable[[AuditRecord], bool]
    ) -> None:
        self.app = app
        self.enforcement = enforcement
        self.submit = submit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.enforcement.blocked_ips
            or scope.get("path") in _OPEN_PATHS
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else None
        error = self.enforcement.check_ip(ip)
        if error is None:
            await self.app(scope, receive, send)
            return
        self.submit(
            AuditRecord(
                request_id="blocked-" + secrets.token_hex(12),
                client_ip=ip,
                status=error.status,
                error_code=error.code,
                routing={"action": "ip_blocked", "path": str(scope.get("path", ""))[:64]},
            )
        )
        payload = error.to_body()
        if scope.get("path") == "/v1/messages":
            # Anthropic clients read Anthropic-shaped errors (the route's own contract).
            payload = anthropic_error_body(error.status, payload)
        body = orjson.dumps(payload)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
