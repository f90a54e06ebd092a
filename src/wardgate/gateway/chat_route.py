"""``POST /v1/chat/completions``: the hot path.

Order matters and is deliberate: authenticate before reading the body (an anonymous client
cannot make us parse megabytes), validate, authorise the model, take a rate-limit token, run
input guards, let the routing policy pick where the request may go, call the backend through
failover, run output guards, and finally queue one audit record, whatever happened.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from wardgate.chat import ChatRequest, Completion, Delta, ToolCall, Usage
from wardgate.errors import KeyNotUsable, PermissionDenied, UpstreamError, WardgateError
from wardgate.gateway.body import parse_chat_request, read_json_body
from wardgate.gateway.responses import (
    ChunkEncoder,
    EventStreamResponse,
    FinalChunk,
    FinishingResponse,
    JSONBytesResponse,
    completion_body,
    error_response,
)
from wardgate.gateway.service import Gateway
from wardgate.gateway.tool_traffic import (
    ToolCallStream,
    audit_entries,
    completion_record,
    guard_tool_calls,
)
from wardgate.guards.execution import BlockedByGuard
from wardgate.guards.pipeline import InputResult
from wardgate.guards.pseudonymise import Pseudonymiser
from wardgate.provenance.receipts import messages_digest
from wardgate.routing.failover import RoutedStream
from wardgate.routing.policy import RoutingDecision, request_label
from wardgate.routing.trace import RouteTrace
from wardgate.store.audit import AuditRecord
from wardgate.store.keys import ApiKey
from wardgate.tools import check_declared

log = logging.getLogger(__name__)

#: Header a client may use to label the request's confidentiality for the routing policy.
DATA_CLASS_HEADER = "x-wardgate-data-class"
#: Response header carrying the answer's signed receipt (non-streaming answers).
RECEIPT_HEADER = "x-wardgate-receipt"


@dataclass
class Exchange:
    """Everything known about one request, gathered for the audit record and metrics."""

    request_id: str
    client_ip: str | None
    started: float = field(default_factory=time.perf_counter)
    #: When the answer was ready, if it is sent before the exchange is finished (the
    #: recorded latency stays the time to the answer, not to the end of its sending).
    answered: float | None = None
    key: ApiKey | None = None
    #: Id of a known key that was refused (revoked, expired), for the audit record.
    refused_key_id: str | None = None
    chat: ChatRequest | None = None
    model_asked: str | None = None
    trace: RouteTrace | None = None
    usage: Usage = field(default_factory=Usage)
    status: int = 200
    error_code: str | None = None
    completion: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: Tool names the request may receive calls for (None: any), from the tool policy.
    allowed_tools: frozenset[str] | None = None
    guard_decisions: list[dict[str, Any]] = field(default_factory=list)
    routing: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The signed receipt the answer carried (JWS compact form).
    receipt: str | None = None

    def fail(self, error: WardgateError) -> None:
        self.status = error.status
        self.error_code = error.code


async def chat_completions(request: Request) -> Response:
    return await run_chat(request, finish_after_send=True)


async def run_chat(
    request: Request,
    *,
    body: Any = None,
    authorization: str | None = None,
    refused: WardgateError | None = None,
    finish_after_send: bool = False,
) -> Response:
    """The chat pipeline. Other ingress formats (``/v1/messages``) authenticate, read and
    translate their own body, then pass it here as ``body`` with the key as ``authorization``
    (or, when translation failed, the error as ``refused``: raised once the key is checked,
    so it is answered and audited like any refusal).

    With ``finish_after_send`` (the caller sends the returned response as it is), a whole
    answer's metrics and audit record are done once it has been sent; callers that read
    the response and send another (the translating routes) get them done before it returns.
    Streams do theirs after the last event either way."""
    gateway: Gateway = request.app.state.gateway
    exchange = Exchange(
        request_id="chatcmpl-" + secrets.token_hex(12),
        client_ip=request.client.host if request.client else None,
    )
    try:
        return await _handle(
            gateway, request, exchange, body, authorization, refused, finish_after_send
        )
    except Exception as exc:
        error = exc if isinstance(exc, WardgateError) else _internal(exc, exchange)
        exchange.fail(error)
        if isinstance(error, BlockedByGuard):
            exchange.guard_decisions.extend(error.decisions)
        if isinstance(error, KeyNotUsable):
            exchange.refused_key_id = error.key_id
        _finish(gateway, exchange)
        error.headers.update(exchange.headers)
        return error_response(error)


def _internal(exc: Exception, exchange: Exchange) -> WardgateError:
    """A bug, not a refusal: logged by type only (messages can carry request content), and
    answered and audited like any other error so no request goes unrecorded."""
    log.error("unhandled %s in chat completion %s", type(exc).__name__, exchange.request_id)
    return WardgateError("internal error")


async def _handle(
    gateway: Gateway,
    request: Request,
    exchange: Exchange,
    body: Any = None,
    authorization: str | None = None,
    refused: WardgateError | None = None,
    finish_after_send: bool = False,
) -> Response:
    key = await gateway.auth.authenticate(authorization or request.headers.get("authorization"))
    exchange.key = key
    if refused is not None:
        raise refused
    if body is None:
        body = await read_json_body(request, gateway.config.server.max_body_bytes)
    chat = parse_chat_request(body)
    exchange.chat = chat
    exchange.model_asked = chat.model

    if not key.allows_model(chat.model):
        gateway.policy.require_known(chat.model)
        raise PermissionDenied(f"this API key may not use model {chat.model!r}")
    exchange.allowed_tools = gateway.config.tools.allowed(
        model=chat.model, key_id=key.id, owner=key.owner
    )
    check_declared(exchange.allowed_tools, chat.tool_names)

    prompt_estimate = sum(len(m.text) for m in chat.messages) // 4 + 1
    decision = await gateway.limiter.check(
        key.id,
        key.rpm or gateway.config.rate_limits.default_rpm,
        key.tpm or gateway.config.rate_limits.default_tpm,
        prompt_estimate,
    )
    exchange.headers.update(decision.headers())
    if not decision.allowed:
        raise decision.error()

    checked = await gateway.guards.check_request(chat)
    exchange.guard_decisions.extend(checked.decisions)
    route = gateway.policy.decide(
        chat.model,
        checked.data_classes,
        key.tier,
        request_label(
            request.headers.get(DATA_CLASS_HEADER), (chat.model_extra or {}).get("metadata")
        ),
        restrict_on_prem=checked.restrict_on_prem,
        key_models=key.models,
    )
    exchange.routing = route.as_dict()
    upstream_request = checked.request
    pseudonymiser = None
    if _needs_pseudonymisation(gateway, route):
        pseudonymiser = gateway.guards.pseudonymiser()
        upstream_request = pseudonymiser.apply(upstream_request)

    if chat.stream:
        return await _stream(
            gateway, exchange, route, upstream_request, checked, prompt_estimate, pseudonymiser
        )

    upstream_started = time.perf_counter()
    exchange.trace = RouteTrace(requested=chat.model)
    completion, trace = await gateway.failover.complete(
        route.candidates,
        upstream_request,
        allowed=route.allowed,
        trace=exchange.trace,
        key_scope=route.key_scope,
    )
    gateway.metrics.child(gateway.metrics.upstream_latency, trace.served_by or "none").observe(
        time.perf_counter() - upstream_started
    )
    # Charge the tokens before output guards run: a blocked answer still cost them.
    exchange.usage = completion.usage
    await gateway.limiter.consume_tokens(
        key.id,
        key.tpm or gateway.config.rate_limits.default_tpm,
        completion.usage.total_tokens - prompt_estimate,
    )
    text, decisions = await gateway.guards.check_response(completion.text, checked)
    exchange.guard_decisions.extend(decisions)
    if pseudonymiser is not None:
        text = pseudonymiser.restore(text)
    calls = completion.tool_calls
    if calls:
        exchange.tool_calls = calls
        calls, decisions = await guard_tool_calls(
            gateway, calls, checked, exchange.allowed_tools, pseudonymiser
        )
        exchange.guard_decisions.extend(decisions)
        exchange.tool_calls = calls
    completion = Completion(
        text=text, finish_reason=completion.finish_reason, usage=completion.usage,
        tool_calls=calls, stop_sequence=completion.stop_sequence,
    )
    exchange.completion = completion_record(completion.text, calls)
    body = completion_body(
        request_id=exchange.request_id,
        created=int(time.time()),
        model=chat.model,
        completion=completion,
    )
    receipt = _receipt(gateway, exchange, completion.text, completion.finish_reason)
    if receipt is not None:
        # An extra top-level field: the OpenAI SDK keeps it (``model_extra``) and ignores it.
        body["wardgate"] = {"receipt": receipt}
        exchange.headers[RECEIPT_HEADER] = receipt
    if finish_after_send:
        exchange.answered = time.perf_counter()
        return FinishingResponse(
            body, headers=exchange.headers, finish=lambda: _finish(gateway, exchange)
        )
    _finish(gateway, exchange)
    return JSONBytesResponse(body, headers=exchange.headers)


async def _stream(
    gateway: Gateway,
    exchange: Exchange,
    route: RoutingDecision,
    upstream_request: ChatRequest,
    checked: InputResult,
    prompt_estimate: int,
    pseudonymiser: Pseudonymiser | None,
) -> Response:
    assert exchange.chat is not None and exchange.key is not None
    chat, key = exchange.chat, exchange.key
    upstream = gateway.failover.stream(
        route.candidates, upstream_request, allowed=route.allowed, key_scope=route.key_scope
    )
    exchange.trace = upstream.trace
    # Pull the first delta before answering: failures before any output (all backends down,
    # queue full, context too long) still get a proper HTTP status instead of a 200 stream.
    try:
        first = await upstream.next_batch()
    except StopAsyncIteration as exc:
        raise UpstreamError("the model returned an empty stream", retryable=False) from exc
    except BaseException:
        await upstream.aclose()
        raise
    # No output guard on this route: the deltas go out as they come, without the scanner's
    # per-chunk work (it would release every chunk whole anyway).
    scanner = (
        gateway.guards.output_scanner(checked)
        if gateway.guards.output_guards(checked.route)
        else None
    )
    restorer = pseudonymiser.restore_stream() if pseudonymiser is not None else None
    encoder = ChunkEncoder(request_id=exchange.request_id, model=chat.model)

    async def events() -> AsyncIterator[bytes]:
        pieces: list[str] = []
        held_calls = ToolCallStream()
        finish = "stop"
        stop_sequence: str | None = None
        usage: Usage | None = None
        # The events of one batch of deltas (those that arrived together) go out as one
        # write: the same bytes as one write per event, with one pass through the ASGI
        # stack and one syscall instead of one per event.
        out: list[bytes] = [encoder.role()]
        try:
            batch: list[Delta] | None = first
            while batch is not None:
                for delta in batch:
                    if delta.text:
                        released = (
                            delta.text if scanner is None else await scanner.afeed(delta.text)
                        )
                        if restorer is not None:
                            released = restorer.feed(released)
                        if released:
                            pieces.append(released)
                            out.append(encoder.content(released))
                    if delta.tool_calls:
                        held_calls.add(delta.tool_calls)
                    if delta.finish_reason:
                        finish = delta.finish_reason
                        usage = delta.usage
                        stop_sequence = delta.stop_sequence
                # A batch that ends the answer keeps its events for the final write.
                if out and batch[-1].finish_reason is None:
                    yield b"".join(out)
                    out.clear()
                batch = await _next_or_none(upstream)
            tail = "" if scanner is None else await scanner.afinish()
            if restorer is not None:
                tail = restorer.feed(tail) + restorer.finish()
            if tail:
                pieces.append(tail)
                out.append(encoder.content(tail))
            if held_calls:
                exchange.tool_calls = held_calls.calls()
                try:
                    calls, decisions = await guard_tool_calls(
                        gateway, exchange.tool_calls, checked, exchange.allowed_tools, pseudonymiser
                    )
                except BlockedByGuard as blocked:
                    exchange.guard_decisions.extend(blocked.decisions)
                    raise
                exchange.guard_decisions.extend(decisions)
                exchange.tool_calls = calls
                out.extend(encoder.tool_calls(group) for group in held_calls.replay(calls))
            exchange.usage = usage or Usage()
            # The receipt rides on the last chunk before [DONE]: the usage chunk when the
            # client asked for one, else the finish chunk (a chunk with no choices would
            # break clients that read choices[0] of every chunk).
            receipt = _receipt(gateway, exchange, "".join(pieces), finish)
            if chat.include_usage:
                out.append(encoder.finish(finish, stop_sequence=stop_sequence))
                out.append(encoder.usage(exchange.usage, receipt))
            else:
                out.append(encoder.finish(finish, receipt, stop_sequence=stop_sequence))
            out.append(encoder.done())
            # The end of the body: the client has its answer before the clean-up below.
            yield FinalChunk(b"".join(out))
        except WardgateError as error:
            exchange.fail(error)
            # What was released before the failure still reaches the client, then the error.
            out.append(encoder.error(error))
            yield FinalChunk(b"".join(out))
        except asyncio.CancelledError:
            exchange.status, exchange.error_code = 499, "client_disconnected"
            raise
        finally:
            await upstream.aclose()
            if scanner is not None:
                exchange.guard_decisions.extend(scanner.decisions)
            exchange.completion = completion_record("".join(pieces), exchange.tool_calls)
            await gateway.limiter.consume_tokens(
                key.id,
                key.tpm or gateway.config.rate_limits.default_tpm,
                exchange.usage.total_tokens - prompt_estimate,
            )
            _finish(gateway, exchange)

    headers = dict(exchange.headers)
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return EventStreamResponse(events(), headers=headers)


async def _next_or_none(upstream: RoutedStream) -> list[Delta] | None:
    try:
        return await upstream.next_batch()
    except StopAsyncIteration:
        return None


def _needs_pseudonymisation(gateway: Gateway, route: RoutingDecision) -> bool:
    """Pseudonymise when any model the request may reach must not see raw PII or secrets."""
    if route.pseudonymise:
        return True
    if not gateway.config.guards.pseudonymise:
        return False
    return any(
        gateway.model_configs[name].deployment == "vendor"
        for name in route.allowed or route.candidates
    )


def _receipt(gateway: Gateway, exchange: Exchange, content: str, finish: str) -> str | None:
    """Sign what was answered: the content exactly as the client receives it, bound to the
    backend that produced it. ``None`` when receipts are off."""
    signer = gateway.receipts
    if signer is None or exchange.chat is None:
        return None
    served_by = exchange.trace.served_by if exchange.trace else None
    receipt = signer.sign(
        audit_request_id=exchange.request_id,
        model=exchange.model_asked,
        backend=served_by,
        weights=gateway.weights_of(served_by) if served_by else None,
        request_sha256=messages_digest([(m.role, m.text) for m in exchange.chat.messages]),
        content=content,
        finish_reason=finish,
        usage=exchange.usage.as_dict(),
        watermark=gateway.watermark_of(served_by) if served_by else None,
        tool_calls=[c.as_dict() for c in exchange.tool_calls] or None,
    )
    exchange.receipt = receipt
    return receipt


def _finish(gateway: Gateway, exchange: Exchange) -> None:
    """Metrics and one audit record; never raises into the response path."""
    elapsed = (exchange.answered or time.perf_counter()) - exchange.started
    asked = exchange.model_asked
    model = asked if asked is not None and gateway.policy.known(asked) else "unknown"
    stream = bool(exchange.chat and exchange.chat.stream)
    metrics = gateway.metrics
    usage = exchange.usage
    metrics.request_done(
        model,
        exchange.status,
        stream,
        elapsed,
        exchange.error_code,
        usage.prompt_tokens if usage.total_tokens else 0,
        usage.completion_tokens if usage.total_tokens else 0,
    )
    chat = exchange.chat
    record = AuditRecord(
        request_id=exchange.request_id,
        key_id=exchange.key.id if exchange.key else exchange.refused_key_id,
        user=chat.user if chat else None,
        client_ip=exchange.client_ip,
        model_asked=exchange.model_asked,
        backend_used=exchange.trace.served_by if exchange.trace else None,
        prompt_tokens=exchange.usage.prompt_tokens,
        completion_tokens=exchange.usage.completion_tokens,
        latency_ms=round(elapsed * 1000, 3),
        status=exchange.status,
        error_code=exchange.error_code,
        stream=stream,
        guard_decisions=exchange.guard_decisions,
        routing={
            **(exchange.routing or {}),
            "attempts": exchange.trace.as_list() if exchange.trace else [],
            **({"tool_calls": audit_entries(exchange.tool_calls)} if exchange.tool_calls else {}),
        },
        # Not built when the log keeps no content (the default): the writer would drop it.
        prompt=_prompt_text(chat) if chat and gateway.config.audit.store_prompts != "none"
        else None,
        completion=exchange.completion,
        receipt=exchange.receipt,
    )
    if not gateway.audit.submit(record):
        metrics.audit_dropped.inc()


def _prompt_text(chat: ChatRequest) -> str:
    """Canonical prompt serialisation for the audit log (hashed or stored per config)."""
    return orjson.dumps(
        [
            {
                "role": m.role,
                "content": m.text,
                **({"tool_calls": m.tool_calls} if m.tool_calls else {}),
            }
            for m in chat.messages
        ]
    ).decode()
