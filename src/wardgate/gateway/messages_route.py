"""``POST /v1/messages``: the Anthropic Messages API, served by the chat pipeline.

The key comes as ``x-api-key`` (the SDK's default) or ``Authorization: Bearer``; it is
checked before the body is read, as on every route. The body is translated to Chat
Completions (:mod:`wardgate.gateway.anthropic_wire`), run through
:func:`~wardgate.gateway.chat_route.run_chat`, and the answer, stream or error translated
back, so guards, routing, limits and audit are the chat route's, unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from wardgate.errors import WardgateError
from wardgate.gateway import anthropic_wire as wire
from wardgate.gateway.body import read_json_body
from wardgate.gateway.chat_route import run_chat
from wardgate.gateway.responses import EventStreamResponse, JSONBytesResponse
from wardgate.gateway.service import Gateway


def _authorization(request: Request) -> str | None:
    api_key = request.headers.get("x-api-key")
    return f"Bearer {api_key.strip()}" if api_key else request.headers.get("authorization")


async def messages(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    authorization = _authorization(request)
    try:
        # Authenticate before reading; run_chat checks again (cached) and audits.
        await gateway.auth.authenticate(authorization)
        body = await read_json_body(request, gateway.config.server.max_body_bytes)
        chat_body = wire.to_chat_body(body)
    except WardgateError as error:
        # Refused before the chat pipeline: let it answer (and audit) the refusal itself.
        return _anthropic(await run_chat(request, authorization=authorization, refused=error))
    model = str(chat_body.get("model") or "")
    response = await run_chat(request, body=chat_body, authorization=authorization)
    if isinstance(response, StreamingResponse):
        return EventStreamResponse(
            _events(response.body_iterator, model),  # type: ignore[arg-type]
            media_type="text/event-stream",
            headers={k: v for k, v in response.headers.items() if k.lower() != "content-length"},
        )
    return _anthropic(response, model)


def _anthropic(response: Response, model: str = "") -> Response:
    data = orjson.loads(bytes(response.body))
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-length", "content-type")
    }
    if response.status_code >= 400:
        body = wire.error_body(response.status_code, data)
    else:
        body = wire.to_message(data, model)
    return JSONBytesResponse(body, status_code=response.status_code, headers=headers)


async def _events(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for event in wire.to_events(chunks, model):
            yield event
