"""A fake OpenAI Chat Completions server: real HTTP, exact wire shapes, scripted failures.

Speaks ``POST /v1/chat/completions`` (whole answers and SSE streams with ``[DONE]``, the
role chunk first, a finish chunk, and with ``stream_options.include_usage`` the trailing
``choices: []`` usage chunk) and ``GET /v1/models``; errors use OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}``. It validates what the real API
validates where a proxy could get it wrong (e.g. ``stream_options`` without ``stream`` is a
400). Answers come from :mod:`tests.fakes.echo`; failures from :mod:`tests.fakes.faults`.

It can also run as its own process (see :mod:`tests.fakes.serve`)::

    python -m tests.fakes.serve openai --port 0     # prints FAKE_OPENAI_BASE_URL=...
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp
from tests.fakes.base import FakeVendor, json_response
from tests.fakes.echo import (
    Answer,
    PlannedCall,
    count_tokens,
    echo_answer,
    json_answer,
    plan_tool_calls,
    split_pieces,
)
from tests.fakes.faults import Fault
from tests.fakes.server import TransportExposer, close_connection

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    422: ("Unprocessable request.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
        "Please try again in 20s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def fake_embedding(text: str, dims: int) -> list[float]:
    """A unit vector from the text's SHA-256: equal texts, equal vectors; tests can recompute."""
    import hashlib
    import math

    raw = hashlib.sha256(text.encode()).digest()
    values = [(raw[i % len(raw)] - 127.5) / 127.5 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text") or "")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


class FakeOpenAI(FakeVendor):
    """The fake server; ``app`` is the ASGI app, ``requests`` what it received."""

    def __init__(self, *, api_key: str | None = None, record: bool = True) -> None:
        super().__init__(api_key=api_key, record=record)
        routes = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            *self.control_routes(),
        ]
        self.app: ASGIApp = TransportExposer(Starlette(routes=routes))

    # -- endpoints -----------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        return json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": "fake-echo",
                        "object": "model",
                        "created": 1700000000,
                        "owned_by": "fake",
                    }
                ],
            }
        )

    async def _embeddings(self, request: Request) -> Response:
        """Deterministic vectors (see :func:`fake_embedding`), OpenAI's shapes and checks."""
        body, fault, gone = await self.intake(request)
        if gone:
            return Response(status_code=500)
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        if fault.status is not None:
            return self._status_error(fault, request)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return json_response(error_body("you must provide a model parameter",
                                            "invalid_request_error"), 400)
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return json_response(error_body("'input' is invalid", "invalid_request_error"), 400)
        if body.get("encoding_format", "float") not in ("float", "base64"):
            return json_response(error_body("Invalid 'encoding_format'",
                                            "invalid_request_error"), 400)
        dims = body.get("dimensions") or 8
        vectors = [fake_embedding(t, dims) for t in texts]
        if body.get("encoding_format") == "base64":
            import base64
            import struct
            data: list[Any] = [base64.b64encode(struct.pack(f"<{dims}f", *v)).decode()
                               for v in vectors]
        else:
            data = vectors
        tokens = sum(count_tokens(t) for t in texts)
        return json_response({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v}
                     for i, v in enumerate(data)],
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    async def _chat(self, request: Request) -> Response:
        body, fault, gone = await self.intake(request)
        if gone:
            return Response(status_code=500)
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        if fault.status is not None:
            return self._status_error(fault, request)
        invalid = self._validate(body)
        if invalid is not None:
            return json_response(error_body(invalid, "invalid_request_error"), 400)
        messages = body["messages"]
        # The last user text, or the last tool result when the conversation ends with one.
        last = next((m for m in reversed(messages) if m.get("role") in ("user", "tool")), {})
        last_user = _text(last.get("content"))
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        prompt_tokens = sum(count_tokens(_text(m.get("content"))) for m in messages)
        answer = echo_answer(last_user, prompt_tokens, limit, stops)
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in ("json_object", "json_schema") and last.get("role") == "user":
            text = json_answer(last_user)
            answer = Answer(split_pieces(text), "stop", None, prompt_tokens)
        calls = self._plan_calls(body, last_user) if last.get("role") == "user" else []
        headers = {"x-request-id": f"req_{secrets.token_hex(16)}", "openai-processing-ms": "1"}
        reply_id = f"chatcmpl-{secrets.token_hex(12)}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = self._chunks(
                request, body["model"], reply_id, answer, include_usage, fault, calls
            )
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        completion = self._completion(body["model"], reply_id, answer, fault, calls)
        return json_response(completion, headers=headers)

    @staticmethod
    def _plan_calls(body: dict[str, Any], last_user: str) -> list[PlannedCall]:
        tools = body.get("tools") or []
        choice = body.get("tool_choice", "auto")
        if not tools or choice == "none":
            return []
        forced = choice["function"]["name"] if isinstance(choice, dict) else None
        return plan_tool_calls(
            last_user,
            [t["function"]["name"] for t in tools],
            forced=forced,
            required=choice == "required",
            parallel=body.get("parallel_tool_calls", True) is not False,
            declared_only=False,
        )

    # -- wire shapes ---------------------------------------------------------------------

    @staticmethod
    def _finish(answer: Answer, fault: Fault) -> str:
        if fault.finish:
            return fault.finish
        return "length" if answer.finish == "length" else "stop"

    @staticmethod
    def _usage(answer: Answer) -> dict[str, Any]:
        return {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @staticmethod
    def _call_ids(calls: list[PlannedCall]) -> list[str]:
        return [f"call_{secrets.token_hex(12)}" for _ in calls]

    def _completion(
        self, model: str, reply_id: str, answer: Answer, fault: Fault, calls: list[PlannedCall]
    ) -> dict[str, Any]:
        if calls:
            ids = self._call_ids(calls)
            usage = self._usage(answer)
            tokens = sum(len(c.pieces) for c in calls)
            usage["completion_tokens"] = tokens
            usage["total_tokens"] = answer.prompt_tokens + tokens
            return {
                "id": reply_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "refusal": None,
                            "annotations": [],
                            "tool_calls": [
                                {
                                    "id": i,
                                    "type": "function",
                                    "function": {"name": c.name, "arguments": c.arguments},
                                }
                                for i, c in zip(ids, calls, strict=True)
                            ],
                        },
                        "logprobs": None,
                        "finish_reason": fault.finish or "tool_calls",
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake0000",
            }
        return {
            "id": reply_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": answer.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": self._finish(answer, fault),
                }
            ],
            "usage": self._usage(answer),
            "service_tier": "default",
            "system_fingerprint": "fp_fake0000",
        }

    async def _chunks(
        self,
        request: Request,
        model: str,
        reply_id: str,
        answer: Answer,
        include_usage: bool,
        fault: Fault,
        calls: list[PlannedCall],
    ) -> AsyncIterator[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": reply_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake0000",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return b"data: " + orjson.dumps(data) + b"\n\n"

        if calls:
            # As OpenAI streams calls: content null, then per call an opening fragment with
            # id, type, name and empty arguments, then the arguments a few characters a time.
            yield chunk({"role": "assistant", "content": None, "refusal": None})
            for index, (call_id, call) in enumerate(zip(self._call_ids(calls), calls, strict=True)):
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
                for piece in call.pieces:
                    if fault.chunk_delay_s:
                        await asyncio.sleep(fault.chunk_delay_s)
                    yield chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    )
            yield chunk({}, fault.finish or "tool_calls")
            if include_usage:
                tokens = sum(len(c.pieces) for c in calls)
                usage = {
                    **self._usage(answer),
                    "completion_tokens": tokens,
                    "total_tokens": answer.prompt_tokens + tokens,
                }
                yield (
                    b"data: "
                    + orjson.dumps(
                        {
                            "id": reply_id,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "service_tier": "default",
                            "system_fingerprint": "fp_fake0000",
                            "choices": [],
                            "usage": usage,
                        }
                    )
                    + b"\n\n"
                )
            yield b"data: [DONE]\n\n"
            return
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        broken = fault.drop in ("mid", "clean") or fault.stream_error is not None
        for piece in answer.pieces[: fault.after] if broken else answer.pieces:
            if fault.chunk_delay_s:
                await asyncio.sleep(fault.chunk_delay_s)
            yield chunk({"content": piece})
        if fault.drop == "mid":
            close_connection(request)
            return
        if fault.drop == "clean":
            return
        if fault.stream_error is not None:
            err = error_body(f"fake {fault.stream_error}", fault.stream_error)
            yield b"data: " + orjson.dumps(err) + b"\n\n"
            yield b"data: [DONE]\n\n"
            return
        yield chunk({}, self._finish(answer, fault))
        if include_usage:
            yield (
                b"data: "
                + orjson.dumps(
                    {
                        "id": reply_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "service_tier": "default",
                        "system_fingerprint": "fp_fake0000",
                        "choices": [],
                        "usage": self._usage(answer),
                    }
                )
                + b"\n\n"
            )
        yield b"data: [DONE]\n\n"

    # -- checks --------------------------------------------------------------------------

    def _check_auth(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("authorization", "")
        if not header:
            return json_response(
                error_body(
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                ),
                401,
            )
        given = header.removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), self.api_key.encode()):
            masked = given[:3] + "*" * max(0, len(given) - 7) + given[-4:]
            return json_response(
                error_body(
                    f"Incorrect API key provided: {masked}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
                401,
            )
        return None

    def _status_error(self, fault: Fault, request: Request) -> Response:
        status = fault.status or 500
        message, type_, code = _STATUS_ERRORS.get(status, ("Upstream error.", "server_error", None))
        if fault.echo_key:
            message += f" (credential used: {request.headers.get('authorization', '')})"
        headers: dict[str, str] = {"x-request-id": f"req_{secrets.token_hex(16)}"}
        retry_after = (
            fault.retry_after if fault.retry_after is not None else ("1" if status == 429 else None)
        )
        if retry_after and retry_after != "none":
            headers["retry-after"] = retry_after
        return json_response(error_body(message, type_, code), status, headers)

    @staticmethod
    def _validate(body: Any) -> str | None:
        """The real API's 400s for mistakes a proxy could make."""
        if not isinstance(body, dict):
            return "We could not parse the JSON body of your request."
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "[] is too short - 'messages'"
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                return f"Invalid value for 'messages[{i}].role'."
            content = message.get("content")
            if content is None and not message.get("tool_calls"):
                return f"Invalid value for 'messages[{i}].content': expected a string, got null."
        if body.get("stream_options") is not None and not body.get("stream"):
            return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 2:
            return f"Invalid 'temperature': decimal above maximum value. Got {temperature}."
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if value is not None and (not isinstance(value, int) or value < 1):
                return f"Invalid '{name}': integer below minimum value."
        stop = body.get("stop")
        if isinstance(stop, list) and len(stop) > 4:
            return "Invalid 'stop': array too long. Expected an array with maximum length 4."
        return _validate_tools(body)


def _validate_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            return "Invalid 'tools': empty array. Expected an array with minimum length 1."
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(function, dict):
                return f"Missing required parameter: 'tools[{i}].function'."
            name = function.get("name")
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                return f"Invalid 'tools[{i}].function.name': string does not match pattern."
            params = function.get("parameters")
            if params is not None and not isinstance(params, dict):
                return f"Invalid type for 'tools[{i}].function.parameters'."
            names.append(name)
    choice = body.get("tool_choice")
    if choice is not None:
        if not names:
            return (
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                "'tools' are specified."
            )
        if isinstance(choice, dict):
            if (choice.get("function") or {}).get("name") not in names:
                return "Invalid 'tool_choice': function name not found in 'tools'."
        elif choice not in ("none", "auto", "required"):
            return "Invalid value for 'tool_choice'."
    if body.get("parallel_tool_calls") is not None and not names:
        return "Invalid value for 'parallel_tool_calls': only allowed when 'tools' are specified."
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            return "Invalid value for 'response_format.type'."
        if kind == "json_schema" and not isinstance(
            (fmt.get("json_schema") or {}).get("name"), str
        ):
            return "Missing required parameter: 'response_format.json_schema.name'."
    return None
