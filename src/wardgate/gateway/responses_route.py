"""``POST /v1/responses``: OpenAI's Responses API (stateless subset) via the chat pipeline.

Authenticate, read, translate (:mod:`wardgate.gateway.responses_wire`), run
:func:`~wardgate.gateway.chat_route.run_chat`, translate the answer or stream back. Errors
keep OpenAI's envelope, which both APIs share.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from wardgate.errors import WardgateError
from wardgate.gateway import responses_wire as wire
from wardgate.gateway.body import read_json_body
from wardgate.gateway.chat_route import run_chat
from wardgate.gateway.responses import EventStreamResponse, JSONBytesResponse
from wardgate.gateway.service import Gateway


async def responses(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    authorization = request.headers.get("authorization")
    try:
        await gateway.auth.authenticate(authorization)
        body = await read_json_body(request, gateway.config.server.max_body_bytes)
        chat_body = wire.to_chat_body(body)
    except WardgateError as error:
        return await run_chat(request, authorization=authorization, refused=error)
    shell = wire.ResponseShell(body, chat_body)
    response = await run_chat(request, body=chat_body, authorization=authorization)
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-length", "content-type")
    }
    if isinstance(response, StreamingResponse):
        return EventStreamResponse(
            _events(response.body_iterator, shell),  # type: ignore[arg-type]
            media_type="text/event-stream",
            headers=headers,
        )
    if response.status_code >= 400:
        return response
    data = orjson.loads(bytes(response.body))
    return JSONBytesResponse(wire.to_response(data, shell), headers=headers)


async def _events(chunks: AsyncIterator[bytes], shell: wire.ResponseShell) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for event in wire.to_events(chunks, shell):
            yield event
