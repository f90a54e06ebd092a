"""Reading and validating request bodies: bounded size, strict JSON, clear 4xx errors."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request

from wardgate.chat import ChatRequest
from wardgate.errors import ClientClosedRequest, InvalidRequest, PayloadTooLarge


async def read_json_body(request: Request, limit: int) -> Any:
    """The parsed JSON body, refusing more than ``limit`` bytes without buffering them.

    The one body reader of every route, called only once the key has been checked: the
    declared ``Content-Length`` is refused before a byte is read, and the running total while
    the body streams in (chunked bodies declare nothing). A client that goes away mid-body is
    a typed error, so the route still answers and audits it like any other refusal.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError as exc:
            raise InvalidRequest("invalid Content-Length header") from exc
        if declared_size > limit:
            raise PayloadTooLarge(f"request body is larger than the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is larger than the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ClientClosedRequest("the client closed the connection before its body ended") from exc
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object", code="invalid_json")
    try:
        # orjson also rejects invalid UTF-8 and lone surrogates, which we want as a 400.
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"request body is not valid JSON (UTF-8): {exc.msg} at byte {exc.pos}",
            code="invalid_json",
        ) from exc


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a chat body. Error messages name the field, never echo the submitted value."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(
            f"invalid request: {where}: {first['msg']}",
            param=where,
            code="invalid_request_body",
        ) from exc
