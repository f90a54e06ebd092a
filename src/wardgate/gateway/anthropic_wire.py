"""The Anthropic Messages API on the way in: request, answer and stream translation.

``POST /v1/messages`` lets the official ``anthropic`` SDK (and anything built on it) use the
gateway unchanged, onto any backend: a Messages request becomes the equivalent Chat
Completions request, runs through exactly the chat pipeline (keys, limits, guards, routing,
failover, audit), and the OpenAI-shaped answer is translated back. One pipeline means one set
of guards and one audit trail, whichever SDK the client speaks.

Translated: ``system`` (a string or text blocks), ``messages`` with ``text``, ``tool_use``
and ``tool_result`` blocks, ``max_tokens``, ``stop_sequences``, ``temperature``, ``top_p``,
``metadata.user_id``, ``stream``, ``tools`` and ``tool_choice`` (``auto``/``any``/``tool``/
``none``, ``disable_parallel_tool_use``), ``output_config.format`` (structured output, as
``response_format: json_schema``). Accepted and not acted on: ``cache_control``,
``service_tier``, ``speed``, ``diagnostics``. Refused with a 400 naming the field: ``top_k``,
``thinking``, ``output_config.effort``, ``inference_geo`` (a residency request the gateway
would not honour must not pass silently), image and document blocks, server tools, and any
field the API does not have.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson

from wardgate.errors import InvalidRequest, UnsupportedParameter, WardgateError
from wardgate.gateway.responses import STOP_REASON

_FIELDS = {
    "model", "messages", "max_tokens", "system", "temperature", "top_p", "stop_sequences",
    "stream", "metadata", "tools", "tool_choice", "output_config",
}  # fmt: skip
#: Hints about the vendor's own service, accepted and not acted on (as on the chat route).
_TOLERATED = {"cache_control", "service_tier", "speed", "diagnostics"}
_REFUSED = {
    "top_k", "thinking", "container", "mcp_servers", "context_management", "inference_geo",
    "user_profile_id", "workspace_id",
}  # fmt: skip
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_request_body")


def _text_of(content: Any, where: str) -> str:
    """Text of a ``tool_result`` content or a ``system`` value: a string or text blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of text blocks", where)
    parts = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else None
            raise UnsupportedParameter(
                f"{where}.{j}: only text blocks are supported here, not {str(kind)[:32]!r}",
                param=f"{where}.{j}.type",
            )
        parts.append(str(block.get("text") or ""))
    return "".join(parts)


def to_chat_body(body: Any) -> dict[str, Any]:
    """The Chat Completions body equivalent to a Messages API body (raises on what has none)."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    for name in body:
        if name in _REFUSED:
            raise UnsupportedParameter(
                f"{name!r} is not supported by this gateway; send the request without it",
                param=name,
            )
        if name not in _FIELDS and name not in _TOLERATED:
            raise UnsupportedParameter(
                f"{name[:64]}: Extra inputs are not permitted",
                param=name[:64],
                code="unrecognized_parameter",
            )
    if "max_tokens" not in body:
        raise _bad("max_tokens: Field required", "max_tokens")
    messages: list[dict[str, Any]] = []
    if body.get("system") is not None:
        messages.append({"role": "system", "content": _text_of(body["system"], "system")})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _bad("messages: at least one message is required", "messages")
    for i, message in enumerate(raw):
        messages.extend(_message(message, f"messages.{i}"))
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    out["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "stream"):
        if name in body:
            out[name] = body[name]
    if body.get("stop_sequences") is not None:
        out["stop"] = body["stop_sequences"]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id") is not None:
        out["user"] = metadata["user_id"]
    if body.get("stream") is True:
        out["stream_options"] = {"include_usage": True}
    out.update(_tools(body))
    out.update(_output_config(body.get("output_config")))
    return out


def _output_config(config: Any) -> dict[str, Any]:
    """Structured outputs (``output_config.format``) as ``response_format: json_schema``."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise _bad("output_config: Input should be an object", "output_config")
    if config.get("effort") is not None:
        raise UnsupportedParameter(
            "'output_config.effort' is not supported by this gateway", param="output_config.effort"
        )
    fmt = config.get("format")
    if fmt is None:
        return {}
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _bad("output_config.format.type: Input should be 'json_schema'", "output_config")
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt.get("schema") or {"type": "object"}},
        }
    }


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _bad(f"{where}.role: Input should be 'user' or 'assistant'", f"{where}.role")
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content: Input should be a string or a list", f"{where}.content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}.content.{j}"
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use" and role == "assistant":
            calls.append(
                {
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name") or ""),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind == "tool_result" and role == "user":
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": str(block.get("tool_use_id") or ""),
                    "content": _text_of(block.get("content") or "", f"{at}.content"),
                }
            )
        else:
            raise UnsupportedParameter(
                f"{at}: content blocks of type {str(kind)[:32]!r} are not supported here",
                param=f"{at}.type",
            )
    out: list[dict[str, Any]] = list(results)
    if role == "assistant":
        out.append({"role": "assistant", "content": "".join(texts) or None,
                    **({"tool_calls": calls} if calls else {})})  # fmt: skip
    elif texts:
        out.append({"role": "user", "content": "".join(texts)})
    return out


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools")
    out: dict[str, Any] = {}
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools: Input should be a valid list", "tools")
        converted = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
                raise UnsupportedParameter(
                    f"tools.{i}: only client tools (name, description, input_schema) are "
                    "supported", param=f"tools.{i}",
                )  # fmt: skip
            function: dict[str, Any] = {"name": tool.get("name")}
            if tool.get("description") is not None:
                function["description"] = tool["description"]
            if tool.get("input_schema") is not None:
                function["parameters"] = tool["input_schema"]
            converted.append({"type": "function", "function": function})
        out["tools"] = converted
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict):
            raise _bad("tool_choice: Input should be an object", "tool_choice")
        kind = choice.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in ("auto", "any", "none"):
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
        else:
            raise _bad("tool_choice.type: Input should be auto, any, tool or none", "tool_choice")
        if choice.get("disable_parallel_tool_use") is True and kind != "none":
            out["parallel_tool_calls"] = False
    return out


# -- answers ---------------------------------------------------------------------------------


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def to_message(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as an Anthropic ``message``."""
    choice = completion["choices"][0]
    message = choice["message"]
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        content.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": call["function"]["name"],
                "input": _arguments(call["function"]["arguments"]),
            }
        )
    usage = completion.get("usage") or {}
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        **_stop_fields(choice.get("finish_reason"), choice.get(STOP_REASON)),
        "usage": {
            "input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0),
        },
    }


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def error_body(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style error body in Anthropic's envelope (the stable code kept beside)."""
    error = body.get("error") or {}
    return {
        "type": "error",
        "error": {
            "type": _ERROR_TYPES.get(status, "api_error"),
            "message": error.get("message", "error"),
            "code": error.get("code"),
        },
    }


def error_event(error: WardgateError) -> bytes:
    return _event("error", error_body(error.status, error.to_body()))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def to_events(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    """Chat Completions SSE bytes (the gateway's own) → the Messages API event sequence."""
    block: int = -1
    open_kind: str | None = None
    tool_blocks: dict[int, int] = {}
    finish: str | None = None
    stop_sequence: Any = None
    usage: dict[str, Any] = {}
    buffer = b""
    yield _event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id(), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        },
    )  # fmt: skip

    def close() -> bytes:
        return _event("content_block_stop", {"type": "content_block_stop", "index": block})

    async for raw in chunks:
        # A chunk may hold many events (the chat route writes each batch at once): split
        # it once rather than once per event.
        *frames, buffer = (buffer + raw).split(b"\n\n")
        for frame in frames:
            if not frame.startswith(b"data: "):
                continue
            payload = frame[6:]
            if payload == b"[DONE]":
                continue
            data = orjson.loads(payload)
            if "error" in data:
                body = error_body(_status_of(data["error"]), data)
                yield _event("error", body)
                return
            if data.get("usage"):
                usage = data["usage"]
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    if open_kind != "text":
                        if open_kind is not None:
                            yield close()
                        block, open_kind = block + 1, "text"
                        yield _start(block, {"type": "text", "text": ""})
                    yield _delta(block, {"type": "text_delta", "text": text})
                for fragment in delta.get("tool_calls") or []:
                    if fragment.get("id"):
                        if open_kind is not None:
                            yield close()
                        block, open_kind = block + 1, "tool_use"
                        tool_blocks[fragment["index"]] = block
                        name = fragment["function"]["name"]
                        yield _start(
                            block,
                            {"type": "tool_use", "id": fragment["id"], "name": name, "input": {}},
                        )
                    arguments = (fragment.get("function") or {}).get("arguments")
                    if arguments:
                        yield _delta(
                            tool_blocks.get(fragment["index"], block),
                            {"type": "input_json_delta", "partial_json": arguments},
                        )
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                    stop_sequence = choice.get(STOP_REASON)
    if open_kind is not None:
        yield close()
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": _stop_fields(finish or "stop", stop_sequence),
            "usage": {"input_tokens": usage.get("prompt_tokens", 0),
                      "output_tokens": usage.get("completion_tokens", 0)},
        },
    )  # fmt: skip
    yield _event("message_stop", {"type": "message_stop"})


def _stop_fields(finish: Any, stop_sequence: Any) -> dict[str, Any]:
    """``stop_reason`` and ``stop_sequence`` from the chat answer's finish reason and the
    stop sequence the backend says ended it (``stop_sequence`` when one did, as Anthropic
    answers; a backend that cannot say, such as OpenAI itself, gives ``end_turn``)."""
    if finish == "stop" and isinstance(stop_sequence, str):
        return {"stop_reason": "stop_sequence", "stop_sequence": stop_sequence}
    return {"stop_reason": _STOP_REASONS.get(finish, "end_turn"), "stop_sequence": None}


def _start(index: int, block: dict[str, Any]) -> bytes:
    return _event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _status_of(error: dict[str, Any]) -> int:
    kind = error.get("type")
    return {"invalid_request_error": 400, "rate_limit_error": 429}.get(str(kind), 500)
