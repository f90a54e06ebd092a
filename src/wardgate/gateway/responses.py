"""OpenAI wire formats: whole responses, SSE chunks and error bodies, built in one place."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from wardgate.chat import Completion, ToolCallDelta, Usage
from wardgate.errors import WardgateError

log = logging.getLogger(__name__)


class JSONBytesResponse(Response):
    """A JSON response serialised with orjson (fast, and rejects non-JSON types loudly)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class FinalChunk(bytes):
    """The last bytes of an :class:`EventStreamResponse`'s body.

    A body generator yields its last events as a ``FinalChunk`` when it still has work to
    do once they are out (closing the upstream, the audit record): the response sends them
    as the end of the body, the same bytes in one write, and only then lets the generator
    run on, so the client has its whole answer before that work starts.
    """


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` answer, stopped when the client disconnects.

    Starlette's ``StreamingResponse`` (for ASGI servers before spec 2.4, uvicorn's included)
    watches for the disconnect from an anyio task group, which costs more per response than
    the rest of a short stream's sending. This watches from one plain task and cancels the
    stream the same way: the body's generator sees ``CancelledError`` where it waits, and
    the response then ends quietly, as Starlette's does. Once a :class:`FinalChunk` has
    ended the body, the watch stops (the client has everything; the server now reports the
    finished response as a disconnect) and the generator finishes uncancelled.
    """

    media_type = "text/event-stream"
    _watcher: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = self._watcher = asyncio.ensure_future(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            # Ours alone (the client left), not the server's: the answer simply ends.
            if not gone or task.uncancel() > 0:
                raise
        finally:
            watcher.cancel()
        if self.background is not None:
            await self.background()

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        ended = False
        async for chunk in self.body_iterator:
            if ended:
                continue  # nothing goes out after the end of the body
            if not isinstance(chunk, bytes | memoryview):
                chunk = chunk.encode(self.charset)
            if isinstance(chunk, FinalChunk):
                if self._watcher is not None:
                    self._watcher.cancel()
                ended = True
            await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class FinishingResponse(JSONBytesResponse):
    """A JSON response that calls ``finish`` once it has been sent (or failed to send).

    The chat route's metrics and audit record need nothing from the sending; done after
    it, their cost is no longer in the client's latency. ``finish`` is called exactly once.
    """

    def __init__(
        self, content: Any, *, headers: Mapping[str, str], finish: Callable[[], None]
    ) -> None:
        super().__init__(content, headers=headers)
        self._finish: Callable[[], None] | None = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            finish, self._finish = self._finish, None
            if finish is not None:
                try:
                    finish()
                except Exception as exc:  # the answer is out: log, do not raise into the server
                    log.error("finishing a sent response failed (%s)", type(exc).__name__)


#: The choice field that names the stop sequence which ended the answer, when one did (vLLM's
#: extension of Chat Completions; OpenAI clients ignore it). ``/v1/messages`` reads it for
#: ``stop_reason: stop_sequence``.
STOP_REASON = "stop_reason"


def error_response(error: WardgateError) -> JSONBytesResponse:
    """The single mapping from a typed error to an HTTP response."""
    return JSONBytesResponse(error.to_body(), status_code=error.status, headers=error.headers)


def completion_body(
    *, request_id: str, created: int, model: str, completion: Completion
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": _message(completion),
        "logprobs": None,
        "finish_reason": completion.finish_reason,
    }
    if completion.stop_sequence is not None:
        choice[STOP_REASON] = completion.stop_sequence
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [choice],
        "usage": completion.usage.as_dict(),
    }


def _message(completion: Completion) -> dict[str, Any]:
    """The assistant message; as OpenAI does, ``content`` is null for an answer that is only
    tool calls, and ``tool_calls`` is absent when there are none."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text if completion.text or not completion.tool_calls else None,
        "refusal": None,
    }
    if completion.tool_calls:
        message["tool_calls"] = [call.as_dict() for call in completion.tool_calls]
    return message


def tool_call_fragment(fragment: ToolCallDelta) -> dict[str, Any]:
    """One ``delta.tool_calls`` entry: the opening fragment of a call carries its id, type
    and name (and empty arguments, as OpenAI sends it); later ones only argument text."""
    out: dict[str, Any] = {"index": fragment.index}
    function: dict[str, Any] = {"arguments": fragment.arguments}
    if fragment.id is not None:
        out["id"] = fragment.id
        out["type"] = "function"
        function = {"name": fragment.name or "", "arguments": fragment.arguments}
    out["function"] = function
    return out


#: What follows the fixed fields of a content event, up to the JSON string of its text.
_CONTENT_HEAD = b'{"index":0,"delta":{"content":'
#: What closes a content event after the JSON string of its text.
_CONTENT_TAIL = b'},"logprobs":null,"finish_reason":null}]}\n\n'


class ChunkEncoder:
    """Encodes one stream's SSE events; the id, created time and model stay fixed.

    Content events, one per delta, are most of a stream's events and differ only in their
    text, so :meth:`content` fills a byte template made once per stream (the fields that
    stay fixed, then the JSON string of the text) instead of encoding a fresh dict each
    time: the same bytes as :meth:`_event` gives (``tests/gateway/test_chunk_encoder.py``).
    """

    __slots__ = ("_content_prefix", "_created", "_id", "_model")

    def __init__(self, *, request_id: str, model: str) -> None:
        self._id = request_id
        self._model = model
        self._created = int(time.time())
        # The fixed fields with an empty ``choices`` list, which orjson writes last (dicts
        # keep their order); the list's ``]}`` is cut off and the choice opened instead.
        fixed = self._event([])
        assert fixed.endswith(b"[]}\n\n")
        self._content_prefix = fixed[: -len(b"]}\n\n")] + _CONTENT_HEAD

    def _event(
        self,
        choices: list[dict[str, Any]],
        usage: Usage | None = None,
        receipt: str | None = None,
    ) -> bytes:
        body: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage.as_dict()
        if receipt is not None:
            # An extra field on the last chunk; the OpenAI SDK keeps it and ignores it.
            body["wardgate"] = {"receipt": receipt}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def role(self) -> bytes:
        return self._event(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )

    def content(self, text: str) -> bytes:
        return self._content_prefix + orjson.dumps(text) + _CONTENT_TAIL

    def tool_calls(self, fragments: list[ToolCallDelta]) -> bytes:
        delta = {"tool_calls": [tool_call_fragment(f) for f in fragments]}
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def finish(self, reason: str, receipt: str | None = None,
               stop_sequence: str | None = None) -> bytes:  # fmt: skip
        choice: dict[str, Any] = {"index": 0, "delta": {}, "logprobs": None,
                                  "finish_reason": reason}
        if stop_sequence is not None:
            choice[STOP_REASON] = stop_sequence
        return self._event([choice], receipt=receipt)

    def usage(self, usage: Usage, receipt: str | None = None) -> bytes:
        return self._event([], usage, receipt)

    @staticmethod
    def error(error: WardgateError) -> bytes:
        """A final error event: the OpenAI SDK raises on it, so a broken stream is never silent."""
        return b"data: " + orjson.dumps(error.to_body()) + b"\n\n"

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
