"""Reading and validating request bodies: bounded size, strict JSON, clear 4xx errors."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request

from wardgate.chat import ChatRequest, reject_unsupported
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
        raise InvalidRequest(_json_problem(raw, exc), code="invalid_json") from exc


def _json_problem(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Where the body goes wrong, as a byte offset. orjson reports invalid UTF-8 at position
    0 and syntax errors as character offsets; both are translated (error path only)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"request body is not valid UTF-8: invalid byte at offset {bad.start}"
    offset = len(text[: exc.pos].encode("utf-8", "surrogatepass"))
    return f"request body is not valid JSON: {exc.msg} at byte {offset}"


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a chat body. Error messages name the field, never echo the submitted value."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    reject_unsupported(body)
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
