"""OpenTelemetry traces for each request, following the GenAI semantic conventions.

One trace per HTTP request: a ``SERVER`` span for the request (W3C ``traceparent`` from the
caller is honoured), and inside it ``wardgate.auth``, ``wardgate.guards.input``,
``wardgate.routing``, one ``chat {model}`` ``CLIENT`` span per upstream attempt (retries and
fallbacks each get their own, with ``gen_ai.*`` attributes: operation, provider, request and
response model, max tokens, temperature, finish reasons, input and output tokens),
``wardgate.guards.output`` and ``wardgate.audit``.

Spans never carry prompts, answers or raw keys: only ids, names, counts and codes.

How it is attached: :func:`install` wraps a handful of the gateway's component methods on
their instances (the authenticator, guard pipeline, routing policy, each backend, the audit
writer) and :class:`TracingMiddleware` opens the request span. With tracing off nothing is
wrapped and OpenTelemetry is never imported: zero cost.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wardgate.telemetry.config import TelemetryConfig

if TYPE_CHECKING:
    from wardgate.gateway.service import Gateway

_PROVIDERS = {"llamacpp": "llama_cpp", "openai": "openai", "anthropic": "anthropic"}


class Tracing:
    def __init__(self, config: TelemetryConfig, exporter: SpanExporter | None = None) -> None:
        resource = Resource.create({"service.name": config.service_name})
        self.provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(config.sample_ratio))
        )
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint)
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("wardgate")

    def shutdown(self) -> None:
        self.provider.shutdown()


def _fail(span: trace.Span, exc: BaseException) -> None:
    code = getattr(exc, "code", None)
    span.set_status(Status(StatusCode.ERROR, str(code or type(exc).__name__)))
    span.set_attribute("error.type", str(code or type(exc).__name__))


def _async_span(
    tracer: trace.Tracer,
    name: str,
    fn: Callable[..., Any],
    attrs: Callable[[Any, tuple[Any, ...]], dict[str, Any]] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(
            name, kind=kind, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                _fail(span, exc)
                raise
            if attrs is not None:
                for k, v in attrs(result, args).items():
                    if v is not None:
                        span.set_attribute(k, v)
            return result

    return wrapper


def _request_attrs(model: str, provider: str, request: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.temperature": request.temperature,
    }


def _wrap_backend(tracer: trace.Tracer, name: str, wire: str, provider: str, backend: Any) -> None:
    complete, stream = backend.complete, backend.stream
    # Failover streams through ``stream_batches`` when a backend has it (see backends.base).
    stream_batches: Callable[[Any], AsyncIterator[Any]] | None = getattr(
        backend, "stream_batches", None
    )

    async def traced_complete(request: Any) -> Any:
        with tracer.start_as_current_span(
            f"chat {wire}",
            kind=SpanKind.CLIENT,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            for k, v in _request_attrs(wire, provider, request).items():
                if v is not None:
                    span.set_attribute(k, v)
            span.set_attribute("wardgate.model", name)
            try:
                completion = await complete(request)
            except BaseException as exc:
                _fail(span, exc)
                raise
            span.set_attribute("gen_ai.response.model", wire)
            span.set_attribute("gen_ai.response.finish_reasons", [completion.finish_reason])
            span.set_attribute("gen_ai.usage.input_tokens", completion.usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", completion.usage.completion_tokens)
            return completion

    def stream_span(request: Any) -> trace.Span:
        span = tracer.start_span(f"chat {wire}", kind=SpanKind.CLIENT)
        for k, v in _request_attrs(wire, provider, request).items():
            if v is not None:
                span.set_attribute(k, v)
        span.set_attribute("wardgate.model", name)
        span.set_attribute("wardgate.stream", True)
        return span

    def observe(span: trace.Span, delta: Any) -> None:
        if delta.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [delta.finish_reason])
            if delta.usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", delta.usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", delta.usage.completion_tokens)

    def spanned(request: Any, inner: AsyncIterator[Any],
                deltas_of: Callable[[Any], Iterable[Any]]) -> AsyncIterator[Any]:
        """``inner``'s items, the span ending with them; ``deltas_of`` an item's deltas."""
        span = stream_span(request)

        async def items() -> AsyncIterator[Any]:
            try:
                async for item in inner:
                    for delta in deltas_of(item):
                        observe(span, delta)
                    yield item
            except BaseException as exc:
                _fail(span, exc)
                raise
            finally:
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
                span.end()

        return items()

    def traced_stream(request: Any) -> AsyncIterator[Any]:
        return spanned(request, stream(request), lambda delta: (delta,))

    def traced_stream_batches(request: Any) -> AsyncIterator[Any]:
        assert stream_batches is not None
        return spanned(request, stream_batches(request), lambda batch: batch)

    backend.complete = traced_complete
    backend.stream = traced_stream
    if stream_batches is not None:
        backend.stream_batches = traced_stream_batches


def install(
    gateway: Gateway, config: TelemetryConfig, exporter: SpanExporter | None = None
) -> Tracing:
    """Wrap the gateway's components so each request leaves a trace."""
    tracing = Tracing(config, exporter)
    tracer = tracing.tracer
    auth = gateway.auth
    auth.authenticate = _async_span(  # type: ignore[method-assign]
        tracer,
        "wardgate.auth",
        auth.authenticate,
        lambda key, _a: {"wardgate.key_id": key.id, "wardgate.key_tier": key.tier},
    )
    guards = gateway.guards
    guards.check_request = _async_span(  # type: ignore[method-assign]
        tracer,
        "wardgate.guards.input",
        guards.check_request,
        lambda r, _a: {
            "wardgate.guards.decisions": len(r.decisions),
            "wardgate.guards.data_classes": sorted(r.data_classes),
        },
    )
    guards.check_response = _async_span(  # type: ignore[method-assign]
        tracer,
        "wardgate.guards.output",
        guards.check_response,
        lambda r, _a: {"wardgate.guards.decisions": len(r[1])},
    )
    policy = gateway.policy
    decide = policy.decide

    @functools.wraps(decide)
    def traced_decide(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(
            "wardgate.routing", record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                route = decide(*args, **kwargs)
            except BaseException as exc:
                _fail(span, exc)
                raise
            span.set_attribute("wardgate.route.candidates", list(route.candidates))
            return route

    policy.decide = traced_decide  # type: ignore[method-assign]
    for name, backend in gateway.backends.items():
        cfg = gateway.model_configs[name]
        _wrap_backend(
            tracer, name, cfg.wire_model, _PROVIDERS.get(cfg.backend, cfg.backend), backend
        )
    audit = gateway.audit
    submit = audit.submit

    @functools.wraps(submit)
    def traced_submit(record: Any) -> bool:
        with tracer.start_as_current_span("wardgate.audit") as span:
            accepted = submit(record)
            span.set_attribute("wardgate.audit.kind", record.kind)
            span.set_attribute("wardgate.audit.accepted", accepted)
            if record.error_code:
                span.set_attribute("error.type", record.error_code)
            return accepted

    audit.submit = traced_submit  # type: ignore[method-assign]
    return tracing


class TracingMiddleware:
    """The request's ``SERVER`` span; the components' spans nest inside it."""

    def __init__(self, app: ASGIApp, *, tracing: Tracing) -> None:
        self.app = app
        self.tracer = tracing.tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", [])
            if k in (b"traceparent", b"tracestate")
        }
        parent = extract(carrier) if carrier else otel_context.get_current()
        method, path = scope.get("method", "GET"), scope.get("path", "")
        route = (
            path
            if path.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))
            else (path.split("/", 2)[1] if "/" in path else path)
        )
        with self.tracer.start_as_current_span(
            f"{method} {route[:80]}",
            context=parent,
            kind=SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", path[:200])
            client = scope.get("client")
            if client:
                span.set_attribute("client.address", client[0])

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_wrapper)
