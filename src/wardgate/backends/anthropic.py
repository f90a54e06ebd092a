"""Claude models through the Anthropic Messages API, translated to and from OpenAI's shape.

``base_url`` follows the Anthropic SDK convention (``https://api.anthropic.com``, no
version); requests go to ``{base_url}/v1/messages`` with ``x-api-key`` and
``anthropic-version: 2023-06-01``. The key is mandatory.

The two request shapes differ in ways that matter:

* system and developer messages become the top-level ``system`` string (Anthropic has no
  system role inside ``messages``);
* consecutive messages of the same role are merged into one message of several content
  blocks, and OpenAI ``tool`` results become ``tool_result`` blocks in a user message,
  assistant ``tool_calls`` become ``tool_use`` blocks;
* ``max_tokens`` is required, so it defaults to ``max_output_tokens``; ``stop`` becomes
  ``stop_sequences``; ``user`` becomes ``metadata.user_id`` (when enabled); ``seed`` does
  not exist and is dropped; ``temperature`` is capped at 1.0 (Anthropic's maximum), and when both
  ``temperature`` and ``top_p`` are given only ``temperature`` is sent (newer Claude models
  refuse both at once).

Tools translate both ways: OpenAI ``tools`` become ``{name, description, input_schema}``,
``tool_choice`` ``auto``/``required``/a named function/``none`` becomes ``auto``/``any``/
``tool``/``none``, and ``parallel_tool_calls: false`` becomes ``disable_parallel_tool_use``.
Answers' ``tool_use`` blocks become ``tool_calls`` (streamed: ``content_block_start`` opens
a call, each ``input_json_delta`` is one ``arguments`` fragment, as OpenAI streams them).
Anthropic has no JSON mode, so ``response_format`` (``json_object`` or ``json_schema``) is
served the way Anthropic documents for structured output: one forced tool whose
``input_schema`` is the schema, its input returned as the answer's text (streamed as text).
``response_format`` together with ``tools`` is refused (400): the forced tool would take
the client's tools away.

Back the other way ``stop_reason`` maps to OpenAI's finish reasons and ``input_tokens``
(plus cache reads and writes) / ``output_tokens`` to usage. Streams are the Messages event
sequence; an ``error`` event mid-stream (e.g. ``overloaded_error``) raises, and so does a
stream that ends before ``message_stop``.

``options`` understood: ``forward_user`` (default false: the client's ``user`` id stays with
the gateway unless the operator opts in) and ``proxy`` (an HTTP proxy URL).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from wardgate.backends.base import output_token_limit
from wardgate.backends.remote import HTTPUpstream, RemoteBackend
from wardgate.chat import (
    ChatMessage,
    ChatRequest,
    Completion,
    Delta,
    FinishReason,
    NamedToolChoice,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from wardgate.config import ModelConfig
from wardgate.errors import InvalidRequest, UnsupportedParameter, UpstreamError

ANTHROPIC_VERSION = "2023-06-01"
_PATH = "/v1/messages"
_MAX_TEMPERATURE = 1.0
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
#: Error types an ``error`` event can carry that another attempt may get past.
_RETRYABLE_ERRORS = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
)

_STREAM_ERROR_CODES = {"overloaded_error": "upstream_overloaded"}


def _api_key(key: str | None) -> dict[str, str]:
    return {"x-api-key": key} if key else {}


def _matched_stop(data: dict[str, Any], request: ChatRequest) -> str | None:
    """The ``stop_sequence`` Anthropic reports, when it is one of the request's."""
    value = data.get("stop_sequence")
    if data.get("stop_reason") == "stop_sequence" and value in request.stop_list:
        return str(value)
    return None


def _finish(value: object) -> FinishReason:
    return _FINISH.get(value, "stop") if isinstance(value, str) else "stop"


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _prompt_tokens(usage: dict[str, Any]) -> int:
    # input_tokens excludes cached prefix tokens; the client was still billed for a prompt
    # that long, so count all three.
    return (
        _int(usage.get("input_tokens"))
        + _int(usage.get("cache_creation_input_tokens"))
        + _int(usage.get("cache_read_input_tokens"))
    )


def _tool_use_block(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            "tool_calls[].function.arguments must be a JSON object", param="messages"
        ) from exc
    if not isinstance(tool_input, dict):
        raise InvalidRequest(
            "tool_calls[].function.arguments must be a JSON object", param="messages"
        )
    return {
        "type": "tool_use",
        "id": str(call.get("id") or ""),
        "name": str(function.get("name") or ""),
        "input": tool_input,
    }


def _blocks(message: ChatMessage) -> tuple[str, list[dict[str, Any]]]:
    """The Anthropic role and content blocks for one non-system message."""
    text = message.text
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequest("a tool message needs tool_call_id", param="messages")
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        if text:
            block["content"] = text
        return "user", [block]
    blocks: list[dict[str, Any]] = []
    # Anthropic rejects empty text blocks, so an empty message contributes nothing.
    if text:
        blocks.append({"type": "text", "text": text})
    if message.role == "assistant":
        blocks.extend(_tool_use_block(call) for call in message.tool_calls or ())
        return "assistant", blocks
    return "user", blocks  # user, and the legacy "function" role (a result, seen by the user)


def translate_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI messages → (``system`` text, Anthropic ``messages``)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            if message.text:
                system.append(message.text)
            continue
        role, blocks = _blocks(message)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    if not out:
        raise InvalidRequest(
            "the request needs at least one user or assistant message", param="messages"
        )
    return "\n\n".join(system), out


#: Name of the forced tool that carries a ``response_format`` answer.
JSON_TOOL = "json_answer"
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def translate_tools(request: ChatRequest) -> dict[str, Any]:
    """``tools``/``tool_choice`` (and ``response_format``) in the Messages API's shape."""
    schema = request.json_schema
    if schema is not None:
        if request.tools:
            raise UnsupportedParameter(
                "response_format together with tools is not supported for Anthropic models",
                param="response_format",
            )
        if schema.get("type", "object") != "object":
            raise UnsupportedParameter(
                "Anthropic models can only be asked for a JSON object (schema type 'object')",
                param="response_format",
            )
        fmt = request.response_format
        description = "Answer by calling this tool with the answer as its input."
        if fmt is not None and fmt.json_schema is not None and fmt.json_schema.description:
            description = fmt.json_schema.description
        return {
            "tools": [{"name": JSON_TOOL, "description": description, "input_schema": schema}],
            "tool_choice": {"type": "tool", "name": JSON_TOOL},
        }
    if not request.tools:
        return {}
    tools = []
    for tool in request.tools:
        entry: dict[str, Any] = {
            "name": tool.function.name,
            "input_schema": tool.function.parameters or _EMPTY_SCHEMA,
        }
        if tool.function.description:
            entry["description"] = tool.function.description
        tools.append(entry)
    choice: dict[str, Any] | None = None
    if isinstance(request.tool_choice, NamedToolChoice):
        choice = {"type": "tool", "name": request.tool_choice.function.name}
    elif request.tool_choice is not None:
        choice = {"type": {"auto": "auto", "required": "any", "none": "none"}[request.tool_choice]}
    if request.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    out: dict[str, Any] = {"tools": tools}
    if choice is not None:
        out["tool_choice"] = choice
    return out


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


class AnthropicBackend(RemoteBackend):
    """A Claude model behind the Anthropic Messages API."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(
            config,
            HTTPUpstream(
                config,
                vendor="anthropic",
                auth_headers=_api_key,
                key_required=True,
                extra_headers={"anthropic-version": ANTHROPIC_VERSION},
            ),
        )

    # -- requests ------------------------------------------------------------------------

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The Messages API body for ``request`` (public so tests and docs can show it)."""
        limit = output_token_limit(self.config, request)
        system, messages = translate_messages(request.messages)
        body: dict[str, Any] = {
            "model": self.config.wire_model,
            "max_tokens": limit,
            "messages": messages,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, _MAX_TEMPERATURE)
        elif request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop_list:
            body["stop_sequences"] = request.stop_list
        if request.user and self._forward_user:
            body["metadata"] = {"user_id": request.user}
        body.update(translate_tools(request))
        if stream:
            body["stream"] = True
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self._http.post_json(_PATH, self.build_body(request, stream=False))
        content = data.get("content")
        if data.get("type") != "message" or not isinstance(content, list):
            raise self._http.protocol_error("not a message")
        json_mode = request.json_schema is not None
        pieces: list[str] = []
        calls: list[ToolCall] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                pieces.append(str(block.get("text") or ""))
            elif block.get("type") == "tool_use":
                tool_input = block.get("input")
                if not isinstance(tool_input, dict) or not isinstance(block.get("name"), str):
                    raise self._http.protocol_error("tool_use block without name or input")
                if json_mode:
                    # The structured answer is the forced tool's input; preamble text is not.
                    pieces = [_dumps(tool_input)]
                    break
                calls.append(
                    ToolCall(
                        id=str(block.get("id") or ""),
                        name=block["name"],
                        arguments=_dumps(tool_input),
                    )
                )
        raw_usage = data.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        finish = _finish(data.get("stop_reason"))
        if json_mode and finish == "tool_calls":
            finish = "stop"
        return Completion(
            text="".join(pieces),
            finish_reason=finish,
            usage=Usage(
                prompt_tokens=_prompt_tokens(usage),
                completion_tokens=_int(usage.get("output_tokens")),
            ),
            tool_calls=calls,
            stop_sequence=_matched_stop(data, request),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        body = self.build_body(request, stream=True)
        usage = Usage()
        finish: FinishReason | None = None
        stop_sequence: str | None = None
        stopped = False
        json_mode = request.json_schema is not None
        #: Content-block index → OpenAI tool-call index (0, 1, ... in order of appearance).
        tool_index: dict[int, int] = {}
        events = self._http.stream_events(_PATH, body)
        async with contextlib.aclosing(events):
            async for event in events:
                if stopped:
                    continue  # drain to the end so the connection can be reused
                data = self._http.decode_object(event.data)
                kind = data.get("type", event.event)
                if kind == "content_block_delta":
                    delta = data.get("delta")
                    if isinstance(delta, dict) and delta.get("type") == "text_delta":
                        text = delta.get("text")
                        if isinstance(text, str) and text and not json_mode:
                            yield Delta(text=text)
                    elif isinstance(delta, dict) and delta.get("type") == "input_json_delta":
                        partial = delta.get("partial_json")
                        index = tool_index.get(_int(data.get("index")))
                        if index is None:
                            raise self._http.protocol_error("input_json_delta outside tool_use")
                        if isinstance(partial, str) and partial:
                            if json_mode:
                                yield Delta(text=partial)
                            else:
                                yield Delta(tool_calls=[ToolCallDelta(index, arguments=partial)])
                elif kind == "content_block_start":
                    block = data.get("content_block")
                    if isinstance(block, dict) and block.get("type") == "text":
                        initial = block.get("text")
                        if isinstance(initial, str) and initial and not json_mode:
                            yield Delta(text=initial)
                    elif isinstance(block, dict) and block.get("type") == "tool_use":
                        index = len(tool_index)
                        tool_index[_int(data.get("index"))] = index
                        if not json_mode:
                            yield Delta(
                                tool_calls=[
                                    ToolCallDelta(
                                        index,
                                        id=str(block.get("id") or ""),
                                        name=str(block.get("name") or ""),
                                    )
                                ]
                            )
                elif kind == "message_start":
                    message = data.get("message")
                    start_usage = message.get("usage") if isinstance(message, dict) else None
                    if isinstance(start_usage, dict):
                        usage.prompt_tokens = _prompt_tokens(start_usage)
                        usage.completion_tokens = _int(start_usage.get("output_tokens"))
                elif kind == "message_delta":
                    delta = data.get("delta")
                    if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                        finish = _finish(delta["stop_reason"])
                        stop_sequence = _matched_stop(delta, request)
                    delta_usage = data.get("usage")
                    if isinstance(delta_usage, dict):
                        # output_tokens here is cumulative, not an increment.
                        if "output_tokens" in delta_usage:
                            usage.completion_tokens = _int(delta_usage["output_tokens"])
                        if isinstance(delta_usage.get("input_tokens"), int):
                            usage.prompt_tokens = _prompt_tokens(delta_usage)
                elif kind == "message_stop":
                    stopped = True
                elif kind == "error":
                    raise self._stream_error(data.get("error"))
                # ping, content_block_stop and event types added later carry no text.
        if not stopped:
            raise self._http.connection_lost()
        if json_mode and finish == "tool_calls":
            finish = "stop"
        yield Delta(finish_reason=finish or "stop", usage=usage, stop_sequence=stop_sequence)

    def _stream_error(self, error: object) -> UpstreamError:
        error_type = error.get("type") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        detail = self._http.sanitise(message) if isinstance(message, str) else ""
        return UpstreamError(
            f"the upstream of model {self.config.name!r} failed mid-stream"
            + (f" ({error_type})" if isinstance(error_type, str) else "")
            + (f": {detail}" if detail else ""),
            retryable=error_type in _RETRYABLE_ERRORS,
            code=_STREAM_ERROR_CODES.get(str(error_type), "upstream_stream_error"),
        )
