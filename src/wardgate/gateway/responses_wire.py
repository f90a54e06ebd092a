"""OpenAI's Responses API on the way in (the stateless subset), translated to chat.

``POST /v1/responses`` serves newer OpenAI clients and agent frameworks through the chat
pipeline, like ``/v1/messages`` does for Anthropic's: one set of guards, one audit trail.

Supported: ``input`` as a string or a list of items (messages with ``input_text`` /
``output_text`` parts, ``function_call`` and ``function_call_output`` items),
``instructions``, function ``tools``, ``tool_choice``, ``parallel_tool_calls``,
``max_output_tokens``, ``temperature``, ``top_p``, ``text.format`` (``text``,
``json_object``, ``json_schema``), ``user`` / ``safety_identifier``, ``metadata``, ``stream``
(the full event sequence the SDK's ``responses.stream()`` helper checks), and ``store:
false``.

Not supported, answered with a 400 naming the field (the gateway keeps no conversation
state, and answering without a feature is a 200 that is not what was asked for):
``previous_response_id``, ``conversation``, ``store: true``, ``background``, ``reasoning``,
``include``, ``prompt`` (stored prompts), built-in tools (``web_search``, ``file_search``,
``code_interpreter``, ``computer_use``, ``mcp``, ...), image/file/audio inputs,
``truncation: auto``, ``top_logprobs``. Note that OpenAI's own default is ``store: true``;
here a request without ``store`` is simply not stored.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from wardgate.errors import InvalidRequest, UnsupportedParameter

_FIELDS = {
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
    "max_output_tokens", "temperature", "top_p", "text", "user", "safety_identifier",
    "metadata", "stream", "store", "truncation", "service_tier", "prompt_cache_key",
    "stream_options",
}  # fmt: skip
_REFUSED = {
    "previous_response_id", "conversation", "background", "reasoning", "include", "prompt",
    "top_logprobs", "max_tool_calls", "context_management",
}  # fmt: skip


def _refuse(name: str, why: str = "is not supported by this gateway") -> UnsupportedParameter:
    return UnsupportedParameter(f"{name!r} {why}; send the request without it", param=name)


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_request_body")


def to_chat_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    for name, value in body.items():
        if name in _REFUSED:
            if value is None or value == [] or (name == "include" and not value):
                continue
            raise _refuse(name)
        if name not in _FIELDS:
            raise UnsupportedParameter(
                f"Unrecognized request argument supplied: {name[:64]}",
                param=name[:64],
                code="unrecognized_parameter",
            )
    if body.get("store") is True:
        raise _refuse("store", "true is not supported: this gateway keeps no responses")
    if body.get("truncation") not in (None, "disabled"):
        raise _refuse("truncation")
    messages: list[dict[str, Any]] = []
    if body.get("instructions") is not None:
        if not isinstance(body["instructions"], str):
            raise _bad("instructions must be a string", "instructions")
        messages.append({"role": "developer", "content": body["instructions"]})
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    elif isinstance(raw, list) and raw:
        for i, item in enumerate(raw):
            _item(item, f"input.{i}", messages)
    else:
        raise _bad("input must be a string or a non-empty list of items", "input")
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "metadata", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    user = body.get("user") or body.get("safety_identifier")
    if user is not None:
        out["user"] = user
    if body.get("stream") is True:
        out["stream_options"] = {"include_usage": True}
    out.update(_tools(body))
    fmt = _text_format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    return out


def _parts_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of parts", where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text"):
            raise UnsupportedParameter(
                f"{where}.{j}: content parts of type {str(kind)[:32]!r} are not supported; "
                "only text",
                param=f"{where}.{j}.type",
            )
        texts.append(str(part.get("text") or ""))
    return "".join(texts)


def _item(item: Any, where: str, messages: list[dict[str, Any]]) -> None:
    if not isinstance(item, dict):
        raise _bad(f"{where} must be an object", where)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise _bad(
                f"{where}.role must be user, system, developer or assistant", f"{where}.role"
            )
        messages.append(
            {"role": role, "content": _parts_text(item.get("content"), f"{where}.content")}
        )
    elif kind == "function_call":
        call = {
            "id": str(item.get("call_id") or ""),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
            last["tool_calls"].append(call)  # parallel calls share one assistant turn
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        messages.append(
            {
                "role": "tool",
                "tool_call_id": str(item.get("call_id") or ""),
                "content": _parts_text(output, f"{where}.output"),
            }
        )
    else:
        raise UnsupportedParameter(
            f"{where}: input items of type {str(kind)[:32]!r} are not supported",
            param=f"{where}.type",
        )


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools:
        converted = []
        for i, tool in enumerate(tools if isinstance(tools, list) else [None]):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise UnsupportedParameter(
                    f"tools.{i}: tools of type {str(kind)[:32]!r} are not supported; only "
                    "function tools",
                    param=f"tools.{i}.type",
                )
            function = {k: tool[k] for k in ("name", "description", "parameters", "strict")
                        if tool.get(k) is not None}  # fmt: skip
            converted.append({"type": "function", "function": function})
        out["tools"] = converted
    choice = body.get("tool_choice")
    if choice is not None:
        if isinstance(choice, dict):
            if choice.get("type") != "function":
                raise _refuse("tool_choice", f"of type {str(choice.get('type'))[:32]!r}")
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        else:
            out["tool_choice"] = choice
    return out


def _text_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text.format.type must be text, json_object or json_schema", "text.format")


# -- answers ---------------------------------------------------------------------------------


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


class ResponseShell:
    """The fields of a response object that echo the request, shared by both modes."""

    def __init__(self, body: dict[str, Any], chat_body: dict[str, Any]) -> None:
        self.id = _id("resp")
        self.created_at = int(time.time())
        self.body, self.chat_body = body, chat_body

    def object(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None,
        finish: str | None,
    ) -> dict[str, Any]:
        body = self.body
        incomplete = {"reason": "max_output_tokens"} if finish == "length" else None
        if finish == "content_filter":
            incomplete = {"reason": "content_filter"}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": "incomplete" if incomplete and status == "completed" else status,
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body.get("model"),
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": _usage(usage) if usage is not None else None,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(
    call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "fc_" + call_id.removeprefix("call_"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def to_response(completion: dict[str, Any], shell: ResponseShell) -> dict[str, Any]:
    choice = completion["choices"][0]
    message = choice["message"]
    output: list[dict[str, Any]] = []
    if message.get("content"):
        output.append(_message_item(_id("msg"), message["content"]))
    for call in message.get("tool_calls") or []:
        output.append(
            _call_item(call["id"], call["function"]["name"], call["function"]["arguments"])
        )
    return shell.object(
        "completed", output, completion.get("usage") or {}, choice.get("finish_reason")
    )


def error_event(shell: ResponseShell, error: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "error",
        "code": error.get("code"),
        "message": error.get("message"),
        "param": error.get("param"),
    }


async def to_events(chunks: AsyncIterator[bytes], shell: ResponseShell) -> AsyncIterator[bytes]:
    """The gateway's chat SSE → the Responses API event sequence."""
    sequence = 0

    def event(kind: str, **data: Any) -> bytes:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **data}
        sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    output: list[dict[str, Any]] = []
    text_item: dict[str, Any] | None = None
    calls: dict[int, dict[str, Any]] = {}
    call_positions: dict[int, int] = {}
    usage: dict[str, Any] = {}
    finish: str | None = None

    def close_text() -> list[bytes]:
        nonlocal text_item
        if text_item is None:
            return []
        index, item = len(output) - 1, text_item
        text = item["content"][0]["text"]
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item["status"] = "completed"
        text_item = None
        return [
            event("response.output_text.done", item_id=item["id"], output_index=index,
                  content_index=0, text=text, logprobs=[]),
            event("response.content_part.done", item_id=item["id"], output_index=index,
                  content_index=0, part=part),
            event("response.output_item.done", output_index=index, item=item),
        ]  # fmt: skip

    yield event("response.created", response=shell.object("in_progress", [], None, None))
    yield event("response.in_progress", response=shell.object("in_progress", [], None, None))
    buffer = b""
    async for raw in chunks:
        # A chunk may hold many events (the chat route writes each batch at once): split
        # it once rather than once per event.
        *frames, buffer = (buffer + raw).split(b"\n\n")
        for frame in frames:
            if not frame.startswith(b"data: ") or frame[6:] == b"[DONE]":
                continue
            data = orjson.loads(frame[6:])
            if "error" in data:
                yield event("error", **error_event(shell, data["error"]))
                failed = shell.object("failed", output, None, None)
                failed["error"] = {
                    "code": data["error"].get("code"),
                    "message": data["error"].get("message"),
                }
                yield event("response.failed", response=failed)
                return
            if data.get("usage"):
                usage = data["usage"]
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    if text_item is None:
                        text_item = _message_item(_id("msg"), "", "in_progress")
                        text_item["content"] = []
                        output.append(text_item)
                        index = len(output) - 1
                        yield event(
                            "response.output_item.added",
                            output_index=index,
                            item=dict(text_item, content=[]),
                        )
                        part = {
                            "type": "output_text",
                            "text": "",
                            "annotations": [],
                            "logprobs": [],
                        }
                        text_item["content"].append(part)
                        yield event("response.content_part.added", item_id=text_item["id"],
                                    output_index=index, content_index=0, part=part)  # fmt: skip
                    text_item["content"][0]["text"] += delta["content"]
                    yield event("response.output_text.delta", item_id=text_item["id"],
                                output_index=len(output) - 1, content_index=0,
                                delta=delta["content"], logprobs=[])  # fmt: skip
                for fragment in delta.get("tool_calls") or []:
                    for done in close_text():
                        yield done
                    position = fragment["index"]
                    if fragment.get("id"):
                        item = _call_item(
                            fragment["id"], fragment["function"]["name"], "", "in_progress"
                        )
                        calls[position] = item
                        output.append(item)
                        call_positions[position] = len(output) - 1
                        yield event(
                            "response.output_item.added",
                            output_index=len(output) - 1,
                            item=dict(item),
                        )
                    item = calls[position]
                    piece = (fragment.get("function") or {}).get("arguments") or ""
                    if piece:
                        item["arguments"] += piece
                        yield event("response.function_call_arguments.delta", item_id=item["id"],
                                    output_index=call_positions[position], delta=piece)  # fmt: skip
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
    for done in close_text():
        yield done
    for position, item in calls.items():
        item["status"] = "completed"
        index = call_positions[position]
        yield event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                    arguments=item["arguments"], name=item["name"])  # fmt: skip
        yield event("response.output_item.done", output_index=index, item=item)
    final = shell.object("completed", output, usage, finish)
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield event(kind, response=final)
