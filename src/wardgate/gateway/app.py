"""``create_app(config)``: the ASGI application, built by a factory, never at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from wardgate.config import GatewayConfig
from wardgate.errors import (
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    WardgateError,
)
from wardgate.gateway.admin import admin_routes
from wardgate.gateway.audited import audited_route
from wardgate.gateway.chat_route import chat_completions
from wardgate.gateway.embeddings_route import embeddings
from wardgate.gateway.messages_route import messages
from wardgate.gateway.openapi import openapi_document
from wardgate.gateway.responses import JSONBytesResponse, error_response
from wardgate.gateway.responses_route import responses
from wardgate.gateway.service import Gateway
from wardgate.gateway.watermark_route import detect_watermark
from wardgate.monitor.hooks import IpBlockMiddleware
from wardgate.store.keys import ApiKey

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


#: The API's POST endpoints, which take the direct path (see :class:`GatewayApp`).
DIRECT_ROUTES: dict[str, Endpoint] = {
    "/v1/chat/completions": chat_completions,
    "/v1/embeddings": embeddings,
    "/v1/messages": messages,
    "/v1/responses": responses,
}


class GatewayApp(FastAPI):
    """The FastAPI app, with a direct path to the API's POST endpoints.

    FastAPI and Starlette pass every request through about ten ASGI layers (server errors,
    telemetry, body limit, exception handlers, the async exit stack, the router, the
    endpoint wrapper), about a tenth of the CPU of a whole chat completion. The API
    endpoints use none of them: each authenticates before reading, bounds its body, answers
    and audits every error itself. Their POST requests go straight to the endpoint, behind
    the same gateway middleware (the monitor's IP blocks); anything else (other paths and
    methods, a ``root_path``, the lifespan) takes the full stack, and so does every request
    when tracing is on (its span must cover everything).
    """

    _direct: ASGIApp | None = None

    def enable_direct_routes(self, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Serve :data:`DIRECT_ROUTES` directly, through ``wrap`` (the gateway middleware)."""
        self._direct = wrap(_direct_endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = self._direct
        if (
            direct is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in DIRECT_ROUTES
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await direct(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _direct_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive, send)
    try:
        response = await DIRECT_ROUTES[scope["path"]](request)
    except Exception as exc:
        # As the app's catch-all handler answers it (the endpoints catch their own errors).
        log.error("unhandled %s on %s", type(exc).__name__, scope["path"])
        response = error_response(WardgateError("internal error"))
    await response(scope, receive, send)


def create_app(config: GatewayConfig, *, gateway: Gateway | None = None) -> FastAPI:
    """Build the gateway app. The returned app owns ``gateway`` for its lifespan."""
    runtime = gateway or Gateway(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.start()
        except Exception as exc:
            # One clear line (uvicorn then exits): e.g. a model whose weights did not verify.
            # The traceback is for `wardgate serve --debug` only.
            reason = (
                exc.message if isinstance(exc, WardgateError) else f"{type(exc).__name__}: {exc}"
            )
            log.error("cannot start: %s", reason)
            log.debug("start-up failure", exc_info=True)
            await runtime.stop()
            raise
        try:
            yield
        finally:
            await runtime.stop()

    app = GatewayApp(
        title="Wardgate",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = runtime
    # The hot path is a plain Starlette route: no dependency injection, no response model.
    # (Also served directly, without the framework's layers: see GatewayApp.)
    for path, endpoint in DIRECT_ROUTES.items():
        app.router.add_route(path, endpoint, methods=["POST"])
    app.router.routes.append(
        audited_route("/v1/models", list_models, methods=["GET"], action="list_models", admin=False)
    )
    app.router.routes.append(
        audited_route(
            "/v1/models/{model_id:path}",
            retrieve_model,
            methods=["GET"],
            action="retrieve_model",
            admin=False,
        )
    )
    document = openapi_document(app.version)

    async def openapi(request: Request) -> Response:
        return JSONBytesResponse(document)

    app.router.add_route("/openapi.json", openapi, methods=["GET"])
    app.router.routes.append(
        audited_route(
            "/v1/watermark/detect",
            detect_watermark,
            methods=["POST"],
            action="watermark_detect",
            admin=False,
        )
    )
    app.router.add_route("/.well-known/wardgate/keys", receipt_keys, methods=["GET"])
    app.router.add_route("/healthz", healthz, methods=["GET"])
    app.router.add_route("/readyz", readyz, methods=["GET"])
    app.router.add_route("/metrics", metrics, methods=["GET"])
    app.router.routes.extend(admin_routes())
    if config.console.enabled:
        from wardgate.console.routes import console_routes

        app.router.routes.extend(console_routes(runtime))
    enforcement, submit = runtime.monitor.enforcement, runtime.audit.submit
    app.add_middleware(IpBlockMiddleware, enforcement=enforcement, submit=submit)
    if runtime.tracing is not None:  # outermost: the request span covers everything
        from wardgate.telemetry.tracing import TracingMiddleware

        app.add_middleware(TracingMiddleware, tracing=runtime.tracing)
    else:
        app.enable_direct_routes(
            lambda inner: IpBlockMiddleware(inner, enforcement=enforcement, submit=submit)
        )

    @app.exception_handler(WardgateError)
    async def _wardgate_error(request: Request, exc: WardgateError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(InvalidRequest(f"invalid request: {where}: {first.get('msg')}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # OpenAI's wording for an unknown URL; the path is the client's own, cut short.
        where = f"{request.method} {request.url.path[:200]}"
        error: WardgateError
        if exc.status_code == 404:
            error = NotFound(f"Invalid URL ({where})")
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            error = MethodNotAllowed(
                f"method not allowed ({where}); allowed: {allowed or 'none'}",
                headers=dict(exc.headers or {}),
            )
        else:
            error = InvalidRequest(str(exc.detail), status=exc.status_code, code="http_error")
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Log the type only: messages of arbitrary exceptions can carry request content.
        log.error("unhandled %s on %s", type(exc).__name__, request.url.path)
        return error_response(WardgateError("internal error"))

    return app


def _model_object(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "wardgate"}


def _visible_models(gateway: Gateway, key: ApiKey) -> list[str]:
    """The models and logical models the presented key may use (in config order)."""
    return [
        n
        for n in [*gateway.model_configs, *gateway.config.routing.logical_models]
        if key.allows_model(n)
    ]


async def list_models(request: Request, gateway: Gateway, key: ApiKey) -> Response:
    names = _visible_models(gateway, key)
    return JSONBytesResponse({"object": "list", "data": [_model_object(n) for n in names]})


async def retrieve_model(request: Request, gateway: Gateway, key: ApiKey) -> Response:
    """``GET /v1/models/{id}`` (the SDK's ``models.retrieve``): like OpenAI, a model the key
    may not use is indistinguishable from one that does not exist."""
    model_id = request.path_params["model_id"]
    if model_id not in _visible_models(gateway, key):
        raise ModelNotFound(
            f"The model {model_id[:256]!r} does not exist or you do not have access to it.",
            param="model",
        )
    return JSONBytesResponse(_model_object(model_id))


async def receipt_keys(request: Request) -> Response:
    """The public keys that verify receipts (JWKS, RFC 7517); public by design."""
    gateway: Gateway = request.app.state.gateway
    jwks = gateway.receipts.keys.jwks() if gateway.receipts is not None else {"keys": []}
    return JSONBytesResponse(jwks, headers={"Cache-Control": "public, max-age=300"})


async def healthz(request: Request) -> Response:
    return JSONBytesResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if not gateway.ready:
        return JSONBytesResponse({"status": "starting"}, status_code=503)
    return JSONBytesResponse({"status": "ready", "models": sorted(gateway.backends)})


async def metrics(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")
