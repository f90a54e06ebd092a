"""Every route but chat: authenticate first, then run the handler, then one audit record.

The chat route has its own pipeline (``chat_route.py``); the others — the model list and the
admin API — share this one, so none of them can read a body before the key is checked (the
handler only runs after it, and bodies are read by :func:`wardgate.gateway.body.read_json_body`
under ``server.max_body_bytes``), and every request that reached authentication is recorded
once, whatever happened after: refused, failed, or the client gone mid-body.

These are plain Starlette routes on purpose: a FastAPI route would parse a declared body
parameter before its handler, that is, before authentication.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wardgate.errors import KeyNotUsable, PermissionDenied, WardgateError
from wardgate.gateway.responses import error_response
from wardgate.gateway.service import Gateway
from wardgate.store.audit import AuditRecord
from wardgate.store.keys import ApiKey

log = logging.getLogger(__name__)

Handler = Callable[[Request, Gateway, ApiKey], Awaitable[Response]]


def audited_route(
    path: str, handler: Handler, *, methods: list[str], action: str, admin: bool
) -> Route:
    """A route whose ``handler`` runs only for an authenticated (admin, if asked) key."""
    kind = "admin" if admin else "request"

    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        started = time.perf_counter()
        record = AuditRecord(
            kind=kind,
            request_id=f"{kind}-{secrets.token_hex(12)}",
            client_ip=request.client.host if request.client else None,
            routing={"action": action, **{k: str(v)[:64] for k, v in request.path_params.items()}},
        )
        try:
            key = await gateway.auth.authenticate(request.headers.get("authorization"))
            record.key_id = key.id
            if admin and not key.admin:
                raise PermissionDenied("this endpoint needs an admin key", code="admin_required")
            response = await handler(request, gateway, key)
        except WardgateError as error:
            record.error_code = error.code
            if isinstance(error, KeyNotUsable):
                # A revoked or expired key still being presented: say which, as chat does.
                record.key_id = error.key_id
            response = error_response(error)
        except Exception as exc:
            # The type only: messages of arbitrary exceptions can carry request content.
            log.error("unhandled %s in %s (%s)", type(exc).__name__, action, record.request_id)
            internal = WardgateError("internal error")
            record.error_code = internal.code
            response = error_response(internal)
        record.status = response.status_code
        record.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if not gateway.audit.submit(record):
            gateway.metrics.audit_dropped.inc()
        return response

    endpoint.__name__ = action
    return Route(path, endpoint, methods=methods)
