"""Any OpenAI-compatible server: vLLM, llama.cpp's server, Ollama, OpenAI itself.

``base_url`` follows the OpenAI SDK convention and includes the version prefix
(``https://api.openai.com/v1``, ``http://vllm:8000/v1``); requests go to
``{base_url}/chat/completions``. The key (optional: local servers often need none) is
sent as ``Authorization: Bearer``. Only what the gateway has validated is forwarded:
messages as plain text (non-text parts never reach a vendor the guards did not see),
``max_tokens`` (bounded by ``max_output_tokens``), ``temperature``, ``top_p``, ``stop``,
``seed``, the tool-calling parameters (``tools``, ``tool_choice``, ``parallel_tool_calls``,
``response_format``) as validated, and (when enabled) ``user``. Streams always ask for
``stream_options.include_usage`` so token accounting works for streamed answers too.

``options`` understood: ``max_tokens_param`` (``max_tokens`` or ``max_completion_tokens``,
for OpenAI reasoning models that reject the former), ``forward_user`` (default false: the
client's ``user`` id stays with the gateway unless the operator opts in to sending it, e.g.
for the vendor's abuse tracking) and ``proxy`` (an HTTP proxy URL).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from wardgate.backends.base import output_token_limit
from wardgate.backends.remote import HTTPUpstream, RemoteBackend
from wardgate.chat import (
    ChatMessage,
    ChatRequest,
    Completion,
    Delta,
    FinishReason,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from wardgate.config import ModelConfig
from wardgate.embeddings import EmbeddingRequest, Embeddings
from wardgate.errors import ConfigError, UpstreamError, WardgateError

_PATH = "/chat/completions"
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
_TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")


def _bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def matched_stop(choice: dict[str, Any], request: ChatRequest) -> str | None:
    """Which stop sequence ended the answer, where the server says: vLLM (and the gateway
    itself) put it in ``choices[].stop_reason``; OpenAI does not say (None)."""
    value = choice.get("stop_reason")
    if choice.get("finish_reason") == "stop" and isinstance(value, str) and (
            value in request.stop_list):
        return value
    return None


def _finish(value: object) -> FinishReason:
    # Unknown reasons (e.g. vLLM's "abort") end the answer; "stop" is the honest default.
    return _FINISH.get(value, "stop") if isinstance(value, str) else "stop"


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else 0,
        completion_tokens=completion if isinstance(completion, int) else 0,
    )


def wire_message(message: ChatMessage) -> dict[str, Any]:
    """One message as sent upstream: text only, ``developer`` spoken as ``system``.

    ``developer`` is what newer OpenAI models call the system role; most compatible servers
    reject it, and OpenAI itself treats ``system`` the same way, so ``system`` is portable.
    """
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": message.text}
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = message.tool_calls
        if not out["content"]:
            out["content"] = None
    return out


def tool_parameters(request: ChatRequest) -> dict[str, Any]:
    """The tool-calling and structured-output parameters, in OpenAI's own shape."""
    out: dict[str, Any] = {}
    if request.tools:
        out["tools"] = [t.model_dump(exclude_none=True) for t in request.tools]
    if request.tool_choice is not None and request.tools:
        choice = request.tool_choice
        out["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
    if request.parallel_tool_calls is not None and request.tools:
        out["parallel_tool_calls"] = request.parallel_tool_calls
    if request.response_format is not None:
        out["response_format"] = request.response_format.model_dump(
            exclude_none=True, by_alias=True
        )
    return out


class OpenAICompatBackend(RemoteBackend):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, config: ModelConfig) -> None:
        param = str(config.options.get("max_tokens_param", "max_tokens"))
        if param not in _TOKEN_PARAMS:
            raise ConfigError(
                f"model {config.name!r}: options.max_tokens_param must be one of {_TOKEN_PARAMS}"
            )
        self._token_param = param
        super().__init__(
            config, HTTPUpstream(config, vendor="openai", auth_headers=_bearer, key_required=False)
        )

    # -- requests ------------------------------------------------------------------------

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body sent upstream for ``request`` (public so tests and docs can show it)."""
        limit = output_token_limit(self.config, request)
        body: dict[str, Any] = {
            "model": self.config.wire_model,
            "messages": [wire_message(m) for m in request.messages],
            self._token_param: limit,
        }
        for name in ("temperature", "top_p", "seed"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.user is not None and self._forward_user:
            body["user"] = request.user
        if request.stop_list:
            body["stop"] = request.stop_list
        body.update(tool_parameters(request))
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self._http.post_json(_PATH, self.build_body(request, stream=False))
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._http.protocol_error("no choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise self._http.protocol_error("choice without message")
        content = message.get("content")
        if content is None:
            # A refusal (structured outputs) is still the model's answer to show.
            content = message.get("refusal")
        if content is not None and not isinstance(content, str):
            raise self._http.protocol_error("message content is not text")
        return Completion(
            text=content or "",
            finish_reason=_finish(choice.get("finish_reason")),
            usage=_usage(data.get("usage")) or Usage(),
            tool_calls=self._tool_calls(message.get("tool_calls")),
            stop_sequence=matched_stop(choice, request),
        )

    def _tool_calls(self, raw: object) -> list[ToolCall]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise self._http.protocol_error("tool_calls is not a list")
        calls = []
        for item in raw:
            function = item.get("function") if isinstance(item, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise self._http.protocol_error("tool call without a function name")
            arguments = function.get("arguments")
            calls.append(
                ToolCall(
                    id=str(item.get("id") or ""),
                    name=function["name"],
                    arguments=arguments if isinstance(arguments, str) else "{}",
                )
            )
        return calls

    def _tool_call_deltas(self, raw: object) -> list[ToolCallDelta]:
        if not isinstance(raw, list):
            return []
        fragments = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("index"), int):
                raise self._http.protocol_error("tool call fragment without an index")
            function = item.get("function")
            function = function if isinstance(function, dict) else {}
            name, arguments = function.get("name"), function.get("arguments")
            call_id = item.get("id")
            fragments.append(
                ToolCallDelta(
                    index=item["index"],
                    id=call_id if isinstance(call_id, str) else None,
                    name=name if isinstance(name, str) else None,
                    arguments=arguments if isinstance(arguments, str) else "",
                )
            )
        return fragments

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        batches = self.stream_batches(request)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for delta in batch:
                    yield delta

    async def stream_batches(self, request: ChatRequest) -> AsyncGenerator[list[Delta], None]:
        """The deltas of :meth:`stream`, a non-empty list per network read that carried any
        (the optional ``stream_batches`` of ``backends.base``); the last list ends with the
        delta that carries ``finish_reason``."""
        body = self.build_body(request, stream=True)
        finish: FinishReason | None = None
        stop_sequence: str | None = None
        usage: Usage | None = None
        done = False
        # The deltas of the read being decoded. Those that arrived with [DONE] wait for the
        # end of the body and go out with the finish delta (one write; nothing after [DONE]
        # is shown anyway). On a failure, what was decoded before it still goes out first,
        # as it did when every delta travelled alone.
        pending: list[Delta] = []
        batches = self._http.stream_batches(_PATH, body)
        decode = self._http.decode_object
        try:
            async with contextlib.aclosing(batches):
                async for events in batches:
                    if done:
                        continue  # drain to the end so the connection can be reused
                    # Once per event: the text and tool-call fragments of a choice are read
                    # inline, and usage only when the chunk has it (the last one).
                    for event in events:
                        data = event.data
                        if data.strip() == "[DONE]":
                            done = True
                            break
                        chunk = decode(data)
                        if "error" in chunk:
                            raise self._stream_error(chunk["error"])
                        raw_usage = chunk.get("usage")
                        if raw_usage is not None:
                            usage = _usage(raw_usage) or usage
                        for choice in chunk.get("choices") or ():
                            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                                continue  # n is always 1
                            delta = choice.get("delta")
                            if isinstance(delta, dict):
                                text = delta.get("content")
                                calls = delta.get("tool_calls")
                                fragments = self._tool_call_deltas(calls) if calls else []
                                if fragments or (isinstance(text, str) and text):
                                    text = text if isinstance(text, str) else ""
                                    pending.append(Delta(text, tool_calls=fragments))
                            reason = choice.get("finish_reason")
                            if reason is not None:
                                finish = _finish(reason)
                                stop_sequence = matched_stop(choice, request)
                    if pending and not done:
                        batch, pending = pending, []
                        yield batch
        except WardgateError:
            if pending:
                batch, pending = pending, []
                yield batch
            raise
        # A clean close without [DONE] and without a finish reason is a truncated answer.
        if not done and finish is None:
            raise self._http.connection_lost()
        pending.append(
            Delta(finish_reason=finish or "stop", usage=usage, stop_sequence=stop_sequence)
        )
        yield pending

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """``POST {base_url}/embeddings``; vectors always fetched as floats (the gateway
        re-encodes them for the client), ``dimensions`` passed on for models that take it."""
        body: dict[str, Any] = {
            "model": self.config.wire_model,
            "input": request.texts,
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user is not None and self._forward_user:
            body["user"] = request.user
        data = await self._http.post_json("/embeddings", body)
        items = data.get("data")
        if not isinstance(items, list) or len(items) != len(request.texts):
            raise self._http.protocol_error("embeddings do not match the inputs")
        vectors: list[list[float]] = [[] for _ in items]
        for position, item in enumerate(items):
            vector = item.get("embedding") if isinstance(item, dict) else None
            index = item.get("index", position) if isinstance(item, dict) else position
            if (
                not isinstance(vector, list)
                or not isinstance(index, int)
                or not 0 <= index < len(items)
                or not all(isinstance(x, int | float) for x in vector)
            ):
                raise self._http.protocol_error("malformed embedding")
            vectors[index] = [float(x) for x in vector]
        usage = _usage(data.get("usage"))
        return Embeddings(vectors=vectors, prompt_tokens=usage.prompt_tokens if usage else 0)

    def _stream_error(self, error: object) -> UpstreamError:
        """vLLM and others report failures after the 200 as ``data: {"error": {...}}``."""
        message = error.get("message") if isinstance(error, dict) else error
        detail = self._http.sanitise(message) if isinstance(message, str) else ""
        return UpstreamError(
            f"the upstream of model {self.config.name!r} failed mid-stream"
            + (f": {detail}" if detail else ""),
            retryable=True,
            code="upstream_stream_error",
        )
