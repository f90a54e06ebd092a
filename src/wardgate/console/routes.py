"""The console's pages and forms, mounted at ``/console``.

Every page goes through :func:`_page`: it resolves the session from the cookie *before* any
body is read, re-checks that the session's key is still an active admin key, and for a POST
reads at most ``console.max_form_bytes`` and compares the form's CSRF token with the
session's (403 ``csrf_failed`` on mismatch). Every POST is an audit record
(``kind: console``), as is every log-in attempt; failed log-ins count as 401s for the
monitor's ``auth_failures`` rule, so guessing admin keys here gets the address blocked too.

Responses carry a strict Content-Security-Policy (scripts and styles from ``/console/static``
only; no inline script can run, so a value that slipped through escaping stays inert), and
pages are ``no-store``. Templates autoescape everything.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from wardgate.console import queries
from wardgate.console.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    RedisSessionStore,
    Session,
    Sessions,
    SessionStore,
    same,
)
from wardgate.errors import ClientClosedRequest, PayloadTooLarge, WardgateError
from wardgate.gateway.service import Gateway
from wardgate.monitor.monitor import action_record
from wardgate.store.auditlog import AuditRecord, verify_chain
from wardgate.store.keys import KeyNotFound

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Red-team reports are shown in a sandbox: their own scripts never run in our origin.
REPORT_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[["Ctx"], Awaitable[Response]]


class Console:
    """The console's state for one gateway: templates and sessions."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        cfg = gateway.config.console
        self.config = cfg
        # Shared through Redis when the gateway has one, so any process serves a session.
        self.sessions: Sessions = (
            RedisSessionStore(gateway.config.redis_url, idle_s=cfg.idle_timeout_s,
                              max_age_s=cfg.max_age_s, prefix=cfg.redis_prefix)
            if gateway.config.redis_url
            else SessionStore(idle_s=cfg.idle_timeout_s, max_age_s=cfg.max_age_s,
                              max_sessions=cfg.max_sessions)
        )
        self.env = Environment(
            loader=PackageLoader("wardgate.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["json"] = lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2).decode()
        self.env.globals["bars"] = bars


class Ctx:
    """One console request: the session, the parsed form, and helpers to answer."""

    def __init__(self, console: Console, request: Request, session: Session | None) -> None:
        self.console = console
        self.request = request
        self.session = session
        self.form: dict[str, str] = {}
        self.gateway = console.gateway
        #: The session token, and whether this request changed the session (its flash
        #: messages), so a shared store gets the change written back.
        self.token: str | None = request.cookies.get(COOKIE) if session is not None else None
        self.session_changed = False

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        flash = []
        if self.session is not None:
            flash, self.session.flash = self.session.flash, []
            self.session_changed = self.session_changed or bool(flash)
        html = self.console.env.get_template(template).render(
            session=self.session, flash=flash, path=self.request.url.path, **values
        )
        return Response(html, status_code=status, media_type="text/html", headers=_HEADERS)

    def redirect(self, to: str, message: str | None = None) -> Response:
        if message and self.session is not None:
            self.session.flash.append(message)
            self.session_changed = True
        return RedirectResponse(to, status_code=303, headers=_HEADERS)

    def audit(
        self,
        action: str,
        *,
        status: int = 200,
        target: str | None = None,
        key_id: str | None = None,
        error_code: str | None = None,
    ) -> None:
        client = self.request.client
        record = AuditRecord(
            kind="console",
            request_id="console-" + secrets.token_hex(12),
            key_id=key_id or (self.session.key_id if self.session else None),
            client_ip=client.host if client else None,
            status=status,
            error_code=error_code,
            routing={"action": action, **({"target": target[:64]} if target else {})},
        )
        if not self.gateway.audit.submit(record):
            self.gateway.metrics.audit_dropped.inc()


async def _read_form(request: Request, limit: int) -> dict[str, str]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"form larger than {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"form larger than {limit} bytes")
    except OSError as exc:
        raise ClientClosedRequest("the client went away") from exc
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadTooLarge("malformed form") from exc
    return {k: v[0] for k, v in parsed.items()}


def _page(
    console: Console, handler: Handler, *, login: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        ctx = Ctx(console, request, None)
        try:
            response = await _serve(ctx)
        except WardgateError as exc:  # the shared session store is down: fail closed
            ctx.session = None
            return ctx.render("error.html", status=exc.status, message=exc.message)
        if ctx.session is not None and ctx.session_changed:
            await asyncio.to_thread(console.sessions.save, ctx.token, ctx.session)
        return response

    async def _serve(ctx: Ctx) -> Response:
        request = ctx.request
        session = await asyncio.to_thread(console.sessions.get, request.cookies.get(COOKIE))
        if session is not None:
            key = await asyncio.to_thread(console.gateway.keys.get, session.key_id)
            if key is None or not key.admin or not key.is_active():
                await asyncio.to_thread(console.sessions.end, request.cookies.get(COOKIE))
                session = None
        ctx.session = session
        ctx.token = request.cookies.get(COOKIE) if session is not None else None
        if login and session is None:
            if request.method == "POST":
                return ctx.render(
                    "error.html", status=401, message="Your session has ended; log in again."
                )
            return RedirectResponse("/console/login", status_code=303, headers=_HEADERS)
        if request.method == "POST" and login:
            try:
                ctx.form = await _read_form(request, console.config.max_form_bytes)
            except WardgateError as exc:
                return ctx.render("error.html", status=exc.status, message=exc.message)
            assert session is not None
            if not same(ctx.form.get("csrf"), session.csrf):
                ctx.audit(handler.__name__, status=403, error_code="csrf_failed")
                return ctx.render(
                    "error.html", status=403, message="The form's CSRF token is missing or wrong."
                )
        try:
            return await handler(ctx)
        except WardgateError as exc:
            if request.method == "POST":
                ctx.audit(handler.__name__, status=exc.status, error_code=exc.code)
            return ctx.render("error.html", status=exc.status, message=exc.message)

    return endpoint


# -- log-in ---------------------------------------------------------------------------------


async def login_page(ctx: Ctx) -> Response:
    token = secrets.token_urlsafe(24)
    response = ctx.render("login.html", login_csrf=token)
    _cookie(ctx, response, LOGIN_COOKIE, token, max_age=900)
    return response


async def login(ctx: Ctx) -> Response:
    request = ctx.request
    try:
        form = await _read_form(request, 4096)
    except WardgateError as exc:
        return ctx.render("error.html", status=exc.status, message=exc.message)
    if not same(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        ctx.audit("login", status=403, error_code="csrf_failed")
        return ctx.render(
            "error.html",
            status=403,
            message="The form's CSRF token is missing or wrong; reload the page.",
        )
    try:
        key = await ctx.gateway.auth.authenticate_admin("Bearer " + form.get("key", "").strip())
    except WardgateError as exc:
        ctx.audit(
            "login", status=exc.status, error_code=exc.code, key_id=getattr(exc, "key_id", None)
        )
        token = secrets.token_urlsafe(24)
        response = ctx.render(
            "login.html",
            status=exc.status,
            login_csrf=token,
            error="That is not an active admin key.",
        )
        _cookie(ctx, response, LOGIN_COOKIE, token, max_age=900)
        return response
    token, session = await asyncio.to_thread(ctx.console.sessions.create, key.id, key.owner)
    ctx.session, ctx.token = session, token
    ctx.audit("login", key_id=key.id)
    response = ctx.redirect("/console/", f"Logged in as {key.owner} ({key.id}).")
    _cookie(ctx, response, COOKIE, token, max_age=int(ctx.console.sessions.max_age_s))
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


async def logout(ctx: Ctx) -> Response:
    ctx.audit("logout")
    await asyncio.to_thread(ctx.console.sessions.end, ctx.request.cookies.get(COOKIE))
    ctx.session = None
    response = RedirectResponse("/console/login", status_code=303, headers=_HEADERS)
    response.delete_cookie(COOKIE, path="/console")
    return response


def _cookie(ctx: Ctx, response: Response, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=ctx.request.url.scheme == "https",
    )


# -- pages ----------------------------------------------------------------------------------


async def overview(ctx: Ctx) -> Response:
    gw = ctx.gateway
    series = await asyncio.to_thread(queries.hourly, gw.engine)
    states = gw.failover.circuit_states()
    backends = [
        {
            "name": n,
            "circuit": states.get(n, "?"),
            "queue": b.queue_depth(),
            "deployment": gw.model_configs[n].deployment,
            "backend": gw.model_configs[n].backend,
        }
        for n, b in gw.backends.items()
    ]
    stats = gw.audit.stats()
    return ctx.render(
        "overview.html",
        series=series,
        backends=backends,
        audit=stats,
        monitor=gw.monitor,
        ready=gw.ready,
    )


async def keys_page(ctx: Ctx) -> Response:
    gw = ctx.gateway
    keys = await asyncio.to_thread(gw.keys.list, True)
    usage = await asyncio.to_thread(queries.usage_by_key, gw.engine)
    suspended = gw.monitor.enforcement.suspended
    return ctx.render(
        "keys.html", keys=keys, usage=usage, suspended=suspended, now=datetime.now(UTC)
    )


def _int_or_none(text: str | None) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise WardgateError("limits are whole numbers", code="invalid_request", status=400)
    return int(text)


async def key_create(ctx: Ctx) -> Response:
    f = ctx.form
    models = [m.strip() for m in f.get("models", "*").split(",") if m.strip()] or ["*"]
    key, raw = await asyncio.to_thread(
        ctx.gateway.keys.create,
        owner=f.get("owner", "").strip(),
        models=models,
        tier=f.get("tier", "standard").strip() or "standard",
        rpm=_int_or_none(f.get("rpm")),
        tpm=_int_or_none(f.get("tpm")),
    )
    ctx.audit("key_create", target=key.id)
    return ctx.render("key_secret.html", key=key, raw=raw, what="created")


async def key_action(ctx: Ctx) -> Response:
    gw = ctx.gateway
    key_id = ctx.request.path_params["key_id"][:64]
    action = ctx.request.path_params["action"]
    try:
        if action == "revoke":
            await asyncio.to_thread(gw.keys.revoke, key_id)
            await gw.key_changed(key_id)
            await asyncio.to_thread(ctx.console.sessions.end_for_key, key_id)
            ctx.audit("key_revoke", target=key_id)
            return ctx.redirect("/console/keys", f"Revoked {key_id}.")
        if action == "rotate":
            key, raw = await asyncio.to_thread(gw.keys.rotate, key_id)
            await gw.key_changed(key_id)
            ctx.audit("key_rotate", target=key_id)
            return ctx.render("key_secret.html", key=key, raw=raw, what="rotated")
        if action == "limits":
            f = ctx.form
            await asyncio.to_thread(
                gw.keys.update,
                key_id,
                rpm=_int_or_none(f.get("rpm")),
                tpm=_int_or_none(f.get("tpm")),
            )
            await gw.key_changed(key_id)
            ctx.audit("key_limits", target=key_id)
            return ctx.redirect("/console/keys", f"Updated the limits of {key_id}.")
        if action == "lift":
            lifted = await asyncio.to_thread(gw.monitor.enforcement.lift, key_id)
            gw.audit.submit(
                action_record(
                    "suspension_lifted",
                    key_id=key_id,
                    actor=ctx.session.key_id if ctx.session else None,
                )
            )
            ctx.audit("key_lift", target=key_id)
            return ctx.redirect(
                "/console/keys",
                f"Lifted the suspension of {key_id}." if lifted else f"{key_id} was not suspended.",
            )
    except KeyNotFound as exc:
        ctx.audit(f"key_{action}", status=404, target=key_id, error_code=exc.code)
        return ctx.render("error.html", status=404, message=exc.message)
    return ctx.render("error.html", status=404, message="unknown action")


async def key_usage(ctx: Ctx) -> Response:
    key_id = ctx.request.path_params["key_id"][:64]
    key = await asyncio.to_thread(ctx.gateway.keys.get, key_id)
    if key is None:
        return ctx.render("error.html", status=404, message=f"no key {key_id}")
    series = await asyncio.to_thread(queries.hourly, ctx.gateway.engine, 24, key_id)
    return ctx.render("key_usage.html", key=key, series=series)


async def audit_page(ctx: Ctx) -> Response:
    f = queries.AuditFilter.from_query(ctx.request.query_params)
    rows = await asyncio.to_thread(queries.search_audit, ctx.gateway.engine, f)
    export = "/console/audit/export?" + urlencode(f.as_query())
    return ctx.render("audit.html", rows=rows, f=f, export=export)


async def audit_export(ctx: Ctx) -> Response:
    f = queries.AuditFilter.from_query(ctx.request.query_params)
    rows = await asyncio.to_thread(queries.search_audit, ctx.gateway.engine, f, 10_000)
    ctx.audit("audit_export", target=str(len(rows)))
    body = b"".join(orjson.dumps(r) + b"\n" for r in reversed(rows))
    headers = dict(_HEADERS)
    headers["Content-Disposition"] = 'attachment; filename="wardgate-audit.jsonl"'
    return Response(body, media_type="application/x-ndjson", headers=headers)


async def chain_page(ctx: Ctx) -> Response:
    started = time.perf_counter()
    report = await asyncio.to_thread(verify_chain, ctx.gateway.engine)
    ctx.audit("audit_verify", target=str(report.last_seq))
    return ctx.render("chain.html", report=report, seconds=time.perf_counter() - started)


async def alerts_page(ctx: Ctx) -> Response:
    rows = await asyncio.to_thread(queries.alerts, ctx.gateway.engine)
    enforcement = ctx.gateway.monitor.enforcement
    return ctx.render(
        "alerts.html",
        rows=rows,
        blocked=dict(enforcement.blocked_ips),
        throttled=dict(enforcement.throttled),
        now=time.time(),
    )


async def alert_detail(ctx: Ctx) -> Response:
    seq = ctx.request.path_params["seq"]
    row = await asyncio.to_thread(queries.record, ctx.gateway.engine, seq)
    if row is None or row["kind"] not in ("alert", "action"):
        return ctx.render("error.html", status=404, message=f"no alert {seq}")
    return ctx.render("alert.html", row=row)


async def unblock(ctx: Ctx) -> Response:
    ip = ctx.form.get("ip", "")[:64]
    ctx.gateway.monitor.enforcement.unblock_ip(ip)
    ctx.gateway.audit.submit(
        action_record("ip_unblocked", ip=ip, actor=ctx.session.key_id if ctx.session else None)
    )
    ctx.audit("ip_unblock", target=ip)
    return ctx.redirect("/console/alerts", f"Unblocked {ip}.")


def _reports(ctx: Ctx) -> list[Path]:
    folder = Path(ctx.console.config.reports_dir)
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.iterdir() if p.suffix in (".html", ".json") and p.is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )[:200]


async def models_page(ctx: Ctx) -> Response:
    gw = ctx.gateway
    models = []
    for m in gw.config.models:
        v = m.verify
        if m.backend != "llamacpp":
            status = "vendor / remote: no weights here"
        elif v.signature:
            status = (
                "signature and digest verified at load"
                if v.sha256
                else ("signature verified at load")
            )
        elif v.sha256:
            status = "digest verified at load"
        else:
            status = "unverified: no pinned digest or signature"
        models.append(
            {
                "name": m.name,
                "backend": m.backend,
                "deployment": m.deployment,
                "path": m.path or ("embedded SmolLM2" if m.backend == "llamacpp" else m.base_url),
                "sha256": v.sha256,
                "signature": v.signature,
                "template_audit": v.template_audit,
                "status": status,
                "loaded": m.name in gw.backends and gw.ready,
            }
        )
    reports = [
        {
            "name": p.name,
            "size": p.stat().st_size,
            "mtime": datetime.fromtimestamp(p.stat().st_mtime, UTC),
        }
        for p in _reports(ctx)
    ]
    return ctx.render(
        "models.html", models=models, reports=reports, reports_dir=ctx.console.config.reports_dir
    )


async def report_file(ctx: Ctx) -> Response:
    name = ctx.request.path_params["name"]
    match = next((p for p in _reports(ctx) if p.name == name), None)
    if match is None:
        return ctx.render("error.html", status=404, message="no such report")
    headers = dict(_HEADERS)
    headers["Content-Security-Policy"] = REPORT_CSP
    return FileResponse(
        match,
        headers=headers,
        media_type="text/html" if match.suffix == ".html" else "application/json",
    )


def bars(
    values: list[int],
    labels: list[str],
    *,
    height: int = 80,
    width: int = 600,
    colour: str = "#36c",
) -> str:
    """A bar chart as inline SVG markup (numbers only, so nothing to escape)."""
    top = max(values) if values and max(values) > 0 else 1
    n = max(1, len(values))
    bw = width / n
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 14}" role="img">']
    for i, v in enumerate(values):
        h = v / top * height
        parts.append(
            f'<rect x="{i * bw + 1:.1f}" y="{height - h:.1f}" width="{bw - 2:.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{labels[i] if i < len(labels) else i}'
            f": {int(v)}</title></rect>"
        )
    for i in range(0, n, max(1, n // 6)):
        if i < len(labels):
            parts.append(
                f'<text x="{i * bw:.1f}" y="{height + 12}" font-size="10">{labels[i]}</text>'
            )
    parts.append(f'<text x="{width - 4}" y="10" font-size="10" text-anchor="end">max {top}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _static(folder: Path) -> Callable[[Request], Awaitable[Response]]:
    """The console's two static files (a plain route: no mounted app parses anything)."""
    files = {p.name: p for p in folder.iterdir() if p.suffix in (".css", ".js")}
    types = {".css": "text/css", ".js": "text/javascript"}

    async def endpoint(request: Request) -> Response:
        path = files.get(request.path_params["name"])
        if path is None:
            return Response("not found", status_code=404, headers=_HEADERS)
        headers = {**_HEADERS, "Cache-Control": "max-age=3600"}
        return FileResponse(path, media_type=types[path.suffix], headers=headers)

    return endpoint


def console_routes(gateway: Gateway) -> list[BaseRoute]:
    console = Console(gateway)

    def page(path: str, handler: Handler, methods: list[str], *, login: bool = True) -> Route:
        return Route(path, _page(console, handler, login=login), methods=methods)

    static = Path(__file__).parent / "static"
    return [
        Route("/console/static/{name}", _static(static), methods=["GET"]),
        page("/console/login", login_page, ["GET"], login=False),
        page("/console/login", login, ["POST"], login=False),
        page("/console/logout", logout, ["POST"]),
        page("/console/", overview, ["GET"]),
        page("/console/keys", keys_page, ["GET"]),
        page("/console/keys", key_create, ["POST"]),
        page("/console/keys/{key_id}/usage", key_usage, ["GET"]),
        page("/console/keys/{key_id}/{action}", key_action, ["POST"]),
        page("/console/audit", audit_page, ["GET"]),
        page("/console/audit/export", audit_export, ["GET"]),
        page("/console/audit/chain", chain_page, ["GET"]),
        page("/console/alerts", alerts_page, ["GET"]),
        page("/console/alerts/unblock", unblock, ["POST"]),
        page("/console/alerts/{seq:int}", alert_detail, ["GET"]),
        page("/console/models", models_page, ["GET"]),
        page("/console/reports/{name}", report_file, ["GET"]),
        Route("/console", lambda r: RedirectResponse("/console/", status_code=308)),
    ]
