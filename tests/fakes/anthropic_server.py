"""A fake Anthropic Messages API server: real HTTP, exact wire shapes, scripted failures.

Speaks ``POST /v1/messages``: whole messages, and SSE streams with the full event sequence
(``message_start``, ``content_block_start``, ``ping``, ``content_block_delta`` with
``text_delta``, ``content_block_stop``, ``message_delta`` with the stop reason and cumulative
``output_tokens``, ``message_stop``). Errors use Anthropic's envelope
``{"type": "error", "error": {"type", "message"}, "request_id"}``, including
``overloaded_error`` (529) and ``event: error`` mid-stream.

It validates what the real API validates where a translation from OpenAI's shape could go
wrong: ``x-api-key`` and ``anthropic-version`` headers, ``max_tokens`` required, only
``user``/``assistant`` roles (a ``system`` message is a 400), non-empty text blocks,
``tool_result`` blocks answering a ``tool_use`` of the previous assistant message,
``temperature`` at most 1, and no unknown top-level fields (so ``seed`` or ``stop`` leaking
through is caught).

Tools as the real API has them: ``tools`` entries ``{name, description?, input_schema}``
(an ``input_schema`` of type ``object`` is required; OpenAI's ``parameters`` or ``type:
function`` leaking through is a 400), ``tool_choice`` ``auto``/``any``/``tool``/``none``
with ``disable_parallel_tool_use``. A call (scripted as in :mod:`tests.fakes.echo`) is a
``tool_use`` block with ``stop_reason: tool_use``; streamed, a ``content_block_start`` with
``input: {}`` then ``input_json_delta`` events whose ``partial_json`` pieces join to the input.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp
from tests.fakes.base import FakeVendor, json_response
from tests.fakes.echo import Answer, PlannedCall, count_tokens, echo_answer, plan_tool_calls
from tests.fakes.faults import Fault
from tests.fakes.server import TransportExposer, close_connection

_TOP_LEVEL = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
}
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


def _request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": _request_id(),
    }


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _block_text(block: dict[str, Any]) -> str:
    if block.get("type") == "text":
        return str(block.get("text") or "")
    if block.get("type") == "tool_result":
        inner = block.get("content")
        if isinstance(inner, str):
            return inner
        return "".join(_block_text(b) for b in _blocks(inner))
    return ""


def _system_text(system: Any) -> str:
    return system if isinstance(system, str) else "".join(_block_text(b) for b in _blocks(system))


class FakeAnthropic(FakeVendor):
    """The fake server; ``app`` is the ASGI app, ``requests`` what it received."""

    def __init__(self, *, api_key: str | None = None, record: bool = True) -> None:
        super().__init__(api_key=api_key, record=record)
        routes = [Route("/v1/messages", self._messages, methods=["POST"]), *self.control_routes()]
        self.app: ASGIApp = TransportExposer(Starlette(routes=routes))

    async def _messages(self, request: Request) -> Response:
        body, fault, gone = await self.intake(request)
        if gone:
            return Response(status_code=500)
        denied = self._check_headers(request)
        if denied is not None:
            return denied
        if fault.status is not None:
            return self._status_error(fault, request)
        invalid = self._validate(body)
        if invalid is not None:
            return json_response(error_body("invalid_request_error", invalid), 400)
        messages = body["messages"]
        last_user = next(
            (
                " ".join(_block_text(b) for b in _blocks(m.get("content")))
                for m in reversed(messages)
                if m.get("role") == "user"
            ),
            "",
        )
        prompt_tokens = count_tokens(_system_text(body.get("system"))) + sum(
            count_tokens(_block_text(b)) for m in messages for b in _blocks(m.get("content"))
        )
        answer = echo_answer(
            last_user, prompt_tokens, body["max_tokens"], list(body.get("stop_sequences") or [])
        )
        last_blocks = _blocks(messages[-1].get("content"))
        answering_tool = any(b.get("type") == "tool_result" for b in last_blocks)
        calls = [] if answering_tool else self._plan_calls(body, last_user)
        headers = {"request-id": _request_id()}
        message_id = f"msg_01{secrets.token_hex(11)}"
        if body.get("stream"):
            events = self._events(request, body["model"], message_id, answer, fault, calls)
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        message = self._message(body["model"], message_id, answer, fault, calls)
        return json_response(message, headers=headers)

    @staticmethod
    def _plan_calls(body: dict[str, Any], last_user: str) -> list[PlannedCall]:
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        if not tools or choice["type"] == "none":
            return []
        return plan_tool_calls(
            last_user,
            [t["name"] for t in tools],
            forced=choice.get("name") if choice["type"] == "tool" else None,
            required=choice["type"] == "any",
            parallel=not choice.get("disable_parallel_tool_use", False),
        )

    @staticmethod
    def _tool_id() -> str:
        return f"toolu_01{secrets.token_hex(11)}"

    # -- wire shapes ---------------------------------------------------------------------

    @staticmethod
    def _stop_reason(answer: Answer, fault: Fault) -> str:
        if fault.finish:
            return fault.finish
        return {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}[
            answer.finish
        ]

    @staticmethod
    def _usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": answer.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _message(
        self, model: str, message_id: str, answer: Answer, fault: Fault, calls: list[PlannedCall]
    ) -> dict[str, Any]:
        if calls:
            return {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [
                    {
                        "type": "tool_use",
                        "id": self._tool_id(),
                        "name": c.name,
                        "input": orjson.loads(c.arguments),
                    }
                    for c in calls
                ],
                "stop_reason": fault.finish or "tool_use",
                "stop_sequence": None,
                "usage": self._usage(answer, sum(len(c.pieces) for c in calls)),
            }
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": answer.text}] if answer.text else [],
            "stop_reason": self._stop_reason(answer, fault),
            "stop_sequence": answer.stop_sequence,
            "usage": self._usage(answer, answer.completion_tokens),
        }

    async def _events(
        self,
        request: Request,
        model: str,
        message_id: str,
        answer: Answer,
        fault: Fault,
        calls: list[PlannedCall],
    ) -> AsyncIterator[bytes]:
        def event(name: str, data: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        start: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(answer, 1),
        }
        yield event("message_start", {"type": "message_start", "message": start})
        if calls:
            for index, call in enumerate(calls):
                yield event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": self._tool_id(),
                            "name": call.name,
                            "input": {},
                        },
                    },
                )
                for piece in call.pieces:
                    if fault.chunk_delay_s:
                        await asyncio.sleep(fault.chunk_delay_s)
                    yield event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                yield event("content_block_stop", {"type": "content_block_stop", "index": index})
            yield event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": fault.finish or "tool_use", "stop_sequence": None},
                    "usage": {"output_tokens": sum(len(c.pieces) for c in calls)},
                },
            )
            yield event("message_stop", {"type": "message_stop"})
            return
        yield event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        yield event("ping", {"type": "ping"})
        broken = fault.drop in ("mid", "clean") or fault.stream_error is not None
        for piece in answer.pieces[: fault.after] if broken else answer.pieces:
            if fault.chunk_delay_s:
                await asyncio.sleep(fault.chunk_delay_s)
            yield event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        if fault.drop == "mid":
            close_connection(request)
            return
        if fault.drop == "clean":
            return
        if fault.stream_error is not None:
            message = _STATUS_ERRORS.get(529 if fault.stream_error == "overloaded_error" else 500)
            text = message[1] if message else "error"
            yield event(
                "error", {"type": "error", "error": {"type": fault.stream_error, "message": text}}
            )
            return
        yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": self._stop_reason(answer, fault),
                    "stop_sequence": answer.stop_sequence,
                },
                "usage": {"output_tokens": answer.completion_tokens},
            },
        )
        yield event("message_stop", {"type": "message_stop"})

    # -- checks --------------------------------------------------------------------------

    def _check_headers(self, request: Request) -> Response | None:
        # Newer SDKs authenticate API keys with a bearer token; x-api-key is the classic way.
        bearer = request.headers.get("authorization", "")
        given = request.headers.get("x-api-key") or (
            bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
        )
        if not given:
            return json_response(
                error_body("authentication_error", "x-api-key header is required"), 401
            )
        if self.api_key is not None and not secrets.compare_digest(
            given.encode(), self.api_key.encode()
        ):
            return json_response(error_body("authentication_error", "invalid x-api-key"), 401)
        if not request.headers.get("anthropic-version"):
            return json_response(
                error_body("invalid_request_error", "anthropic-version: header is required"), 400
            )
        return None

    def _status_error(self, fault: Fault, request: Request) -> Response:
        status = fault.status or 500
        type_, message = _STATUS_ERRORS.get(status, ("api_error", "Internal server error"))
        if fault.echo_key:
            message += f" (key used: {request.headers.get('x-api-key', '')})"
        headers = {"request-id": _request_id()}
        retry_after = (
            fault.retry_after if fault.retry_after is not None else ("1" if status == 429 else None)
        )
        if retry_after and retry_after != "none":
            headers["retry-after"] = retry_after
        return json_response(error_body(type_, message), status, headers)

    @staticmethod
    def _validate(body: Any) -> str | None:
        """The real API's 400s for mistakes a translation could make."""
        if not isinstance(body, dict):
            return "There was an error parsing the body of your request."
        extra = sorted(set(body) - _TOP_LEVEL)
        if extra:
            return f"{extra[0]}: Extra inputs are not permitted"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            return "max_tokens: Field required"
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return "max_tokens: Input should be greater than or equal to 1"
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 1:
            return "temperature: Input should be less than or equal to 1"
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            return "system: Input should be a valid string"
        stops = body.get("stop_sequences")
        if stops is not None and (
            not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
        ):
            return "stop_sequences: Input should be a valid list"
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
            return "metadata: Extra inputs are not permitted"
        tools_problem = _validate_tools(body)
        if tools_problem is not None:
            return tools_problem
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        previous_tool_uses: set[str] = set()
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                return f"messages.{i}: Input should be a valid dictionary"
            role = message.get("role")
            if role not in ("user", "assistant"):
                return (
                    f"messages.{i}.role: Input should be 'user' or 'assistant'"
                    if role != "system"
                    else 'messages: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.'
                )
            content = message.get("content")
            if not isinstance(content, str | list) or (isinstance(content, list) and not content):
                return f"messages.{i}.content: messages must have non-empty content"
            tool_uses: set[str] = set()
            for j, block in enumerate(_blocks(content)):
                kind = block.get("type")
                if kind == "text":
                    if not block.get("text"):
                        return "messages: text content blocks must be non-empty"
                elif kind == "tool_use":
                    if role != "assistant":
                        return f"messages.{i}.content.{j}: tool_use blocks are only for assistant"
                    if not isinstance(block.get("input"), dict) or not block.get("id"):
                        return f"messages.{i}.content.{j}.input: Input should be a valid dictionary"
                    tool_uses.add(str(block["id"]))
                elif kind == "tool_result":
                    if role != "user" or block.get("tool_use_id") not in previous_tool_uses:
                        return (
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                            "`tool_result` blocks. Each `tool_result` block must have a "
                            "corresponding `tool_use` block in the previous message."
                        )
                else:
                    return f"messages.{i}.content.{j}.type: unsupported block type {kind!r}"
            previous_tool_uses = tool_uses
        return None


_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _validate_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                return f"tools.{i}: Input should be a valid dictionary"
            extra = sorted(
                set(tool) - {"name", "description", "input_schema", "cache_control", "type"}
            )
            if extra:
                return f"tools.{i}.{extra[0]}: Extra inputs are not permitted"
            if tool.get("type") not in (None, "custom"):
                return f"tools.{i}.type: Input tag {tool.get('type')!r} does not match"
            name = tool.get("name")
            if not isinstance(name, str) or not _TOOL_NAME.match(name):
                return f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                return f"tools.{i}.input_schema.type: Input should be 'object'"
            names.append(name)
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in (
            "auto",
            "any",
            "tool",
            "none",
        ):
            return "tool_choice: Input tag does not match any of the expected tags"
        if choice["type"] == "tool" and choice.get("name") not in names:
            return f"tool_choice.name: tool {choice.get('name')!r} not found in tools"
        allowed = {"type", "name"} if choice["type"] == "tool" else {"type"}
        if choice["type"] != "none":
            allowed.add("disable_parallel_tool_use")
        extra = sorted(set(choice) - allowed)
        if extra:
            return f"tool_choice.{extra[0]}: Extra inputs are not permitted"
        if not names:
            return "tool_choice may only be specified while providing tools"
    return None
