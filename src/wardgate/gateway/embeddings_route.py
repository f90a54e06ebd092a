"""``POST /v1/embeddings``: the retrieval half of a RAG application, guarded like chat.

The order is the chat route's: authenticate before reading the body, validate, authorise
the model, take a rate-limit token, run the input guards over every input (as documents:
what a RAG app embeds is what it will later retrieve into a prompt, so a poisoned document
is best caught here), let the routing policy pick where the inputs may go (text with PII or
secrets stays on-prem, or is pseudonymised for a vendor model when the policy says so),
embed on the first allowed model that makes embeddings, audit once, whatever happened.

A pseudonymised input is embedded as pseudonymised text: the vector is then that of the
text with placeholders (``<PERSON_1>``), which retrieves a little less precisely but never
shows the vendor the data. Routing such inputs to an on-prem embedding model instead
(``backend: minilm``) keeps both.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from wardgate.chat import ChatRequest
from wardgate.embeddings import (
    EmbeddingRequest,
    Embeddings,
    embeddings_body,
    parse_embedding_request,
)
from wardgate.errors import (
    InvalidRequest,
    KeyNotUsable,
    PermissionDenied,
    UpstreamError,
    WardgateError,
)
from wardgate.gateway.body import read_json_body
from wardgate.gateway.chat_route import DATA_CLASS_HEADER
from wardgate.gateway.responses import JSONBytesResponse, error_response
from wardgate.gateway.service import Gateway
from wardgate.guards.execution import BlockedByGuard
from wardgate.routing.policy import RoutingDecision, request_label
from wardgate.store.audit import AuditRecord

log = logging.getLogger(__name__)


async def embeddings(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    started = time.perf_counter()
    record = AuditRecord(
        request_id="emb-" + secrets.token_hex(12),
        client_ip=request.client.host if request.client else None,
        routing={"action": "embeddings"},
    )
    try:
        response = await _handle(gateway, request, record)
    except Exception as exc:
        if isinstance(exc, WardgateError):
            error = exc
        else:
            log.error("unhandled %s in embeddings %s", type(exc).__name__, record.request_id)
            error = WardgateError("internal error")
        if isinstance(error, BlockedByGuard):
            record.guard_decisions.extend(error.decisions)
        if isinstance(error, KeyNotUsable):
            record.key_id = error.key_id
        record.error_code = error.code
        response = error_response(error)
    record.status = response.status_code
    record.latency_ms = round((time.perf_counter() - started) * 1000, 3)
    model = record.model_asked if gateway.policy.known(record.model_asked or "") else "unknown"
    gateway.metrics.requests.labels(model, str(record.status)).inc()
    if record.error_code:
        gateway.metrics.errors.labels(record.error_code).inc()
    if not gateway.audit.submit(record):
        gateway.metrics.audit_dropped.inc()
    return response


async def _handle(gateway: Gateway, request: Request, record: AuditRecord) -> Response:
    key = await gateway.auth.authenticate(request.headers.get("authorization"))
    record.key_id = key.id
    body = await read_json_body(request, gateway.config.server.max_body_bytes)
    embed = parse_embedding_request(body)
    record.model_asked, record.user = embed.model, embed.user
    record.prompt = orjson.dumps(embed.texts).decode()
    if not key.allows_model(embed.model):
        gateway.policy.require_known(embed.model)
        raise PermissionDenied(f"this API key may not use model {embed.model!r}")

    estimate = sum(len(text) for text in embed.texts) // 4 + 1
    tpm = key.tpm or gateway.config.rate_limits.default_tpm
    decision = await gateway.limiter.check(
        key.id, key.rpm or gateway.config.rate_limits.default_rpm, tpm, estimate
    )
    if not decision.allowed:
        raise decision.error()

    # The guards read chat requests; the inputs travel as its documents.
    probe = ChatRequest.model_construct(model=embed.model, messages=[])
    checked = await gateway.guards.check_request(probe, documents=embed.texts)
    record.guard_decisions.extend(checked.decisions)
    route = gateway.policy.decide(
        embed.model,
        checked.data_classes,
        key.tier,
        request_label(request.headers.get(DATA_CLASS_HEADER), None),
        restrict_on_prem=checked.restrict_on_prem,
        key_models=key.models,
    )
    texts = checked.documents
    result, served_by, attempts = await _embed(gateway, route, embed, texts)
    record.backend_used = served_by
    record.prompt_tokens = result.prompt_tokens
    record.routing = {"action": "embeddings", **route.as_dict(), "attempts": attempts}
    await gateway.limiter.consume_tokens(key.id, tpm, result.prompt_tokens - estimate)
    return JSONBytesResponse(embeddings_body(embed, result), headers=decision.headers())


async def _embed(
    gateway: Gateway, route: RoutingDecision, embed: EmbeddingRequest, texts: list[str]
) -> tuple[Embeddings, str, list[dict[str, Any]]]:
    """Try the allowed candidates in order; the first that makes embeddings answers."""
    attempts: list[dict[str, Any]] = []
    last: WardgateError | None = None
    for name in route.candidates:
        if route.allowed and name not in route.allowed:
            continue
        backend = gateway.backends.get(name)
        embed_fn = getattr(backend, "embed", None)
        if embed_fn is None:
            attempts.append({"model": name, "outcome": "no_embeddings"})
            continue
        inputs = texts
        config = gateway.model_configs[name]
        if route.requires_pseudonymisation(name) or (
            gateway.config.guards.pseudonymise and config.deployment == "vendor"
        ):
            pseudonymiser = gateway.guards.pseudonymiser()
            inputs = [pseudonymiser.pseudonymise(text) for text in texts]
        call = embed if inputs == embed.texts else embed.model_copy(update={"input": inputs})
        try:
            result: Embeddings = await embed_fn(call)
        except UpstreamError as error:
            attempts.append({"model": name, "outcome": error.code})
            last = error
            if error.retryable:
                continue
            raise
        attempts.append({"model": name, "outcome": "ok"})
        return result, name, attempts
    if last is not None:
        raise last
    raise InvalidRequest(
        f"no model that {embed.model!r} may be served by makes embeddings",
        param="model",
        code="model_not_embedding",
    )
