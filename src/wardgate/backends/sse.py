"""Server-sent events, decoded incrementally from the chunks of an HTTP response body.

Both vendor protocols stream over SSE: OpenAI-compatible servers send unnamed ``data:``
events ending in ``data: [DONE]``; Anthropic names every event (``event: message_start``).
One small decoder serves both so that edge cases (comments used as keep-alives, multi-line
``data``, a missing space after the colon) are handled once. It knows nothing about JSON or
vendors; the backends interpret ``data``.

:func:`iter_lines` cuts the body's byte chunks into lines as they arrive and
:func:`iter_sse` groups lines into events, so an event is handed on as soon as its blank
line arrives and the body is never buffered whole. :class:`SSEDecoder` does both for one
chunk at a time and :func:`iter_sse_batches` hands on all the events one network read
completed as one list: a server (or a batching proxy) that sends several events per write
then costs one pass through the stream's consumers, not one per event.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import NamedTuple

#: An upstream that never ends an event must not make the gateway buffer without bound.
DEFAULT_MAX_EVENT_CHARS = 4 * 1024 * 1024


#: The event-stream line terminators: CRLF, LF or a lone CR. Not ``str.splitlines``, which
#: also splits on U+2028 and friends that JSON strings may carry unescaped.
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


class SSEDecodeError(ValueError):
    """The byte stream is not a well-formed event stream (or an event is too large)."""


class SSEEvent(NamedTuple):
    """One dispatched event. ``event`` is ``"message"`` when the server named none.

    Immutable like the frozen dataclass it was, and made for every event a stream carries:
    a named tuple is several times cheaper to build (a frozen dataclass's ``__init__`` goes
    through ``object.__setattr__`` for each field).
    """

    event: str
    data: str


def _split_lines(pending: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of ``pending + chunk`` and what is left of an unfinished one.

    A chunk ending in CR keeps it pending until the next byte shows whether an LF follows.
    """
    data = pending + chunk if pending else chunk
    if b"\r" in data:
        held_cr = data.endswith(b"\r")
        lines = _LINE_BREAK.split(data[:-1] if held_cr else data)
        return lines, lines.pop() + (b"\r" if held_cr else b"")
    lines = data.split(b"\n")
    return lines, lines.pop()


async def iter_lines(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_EVENT_CHARS
) -> AsyncIterator[str]:
    """The lines (without terminators) of a byte stream that arrives in arbitrary chunks.

    A line may span chunks, and so may a CRLF pair: a chunk ending in CR keeps it pending
    until the next byte shows whether an LF follows. Splitting bytes before decoding is
    safe because no UTF-8 multi-byte sequence contains CR or LF bytes; invalid UTF-8
    becomes U+FFFD rather than an error. A partial line longer than ``max_line_bytes``
    is refused, so a server that never sends a newline cannot grow the buffer unbounded.
    """
    pending = b""
    async for chunk in chunks:
        lines, pending = _split_lines(pending, chunk)
        if len(pending) > max_line_bytes:
            raise SSEDecodeError(f"a line exceeded {max_line_bytes} bytes")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.removesuffix(b"\r").decode("utf-8", "replace")


class SSEDecoder:
    """Incremental event-stream decoder: bytes in, dispatched events out.

    The same rules as :func:`iter_lines` followed by :func:`iter_sse`, with no generator
    per line or per event: :meth:`feed` takes one chunk of the body and returns the events
    it completed (often none, often several), :meth:`close` those still open at the end.
    """

    __slots__ = ("_data", "_event", "_max_event", "_max_line", "_pending", "_size")

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_EVENT_CHARS,
        max_event_chars: int = DEFAULT_MAX_EVENT_CHARS,
    ) -> None:
        self._max_line = max_line_bytes
        self._max_event = max_event_chars
        self._pending = b""
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        data = self._pending + chunk if self._pending else chunk
        events = self._feed_simple(data)
        if events is not None:
            return events
        lines, self._pending = _split_lines(b"", data)
        if len(self._pending) > self._max_line:
            raise SSEDecodeError(f"a line exceeded {self._max_line} bytes")
        return self.feed_lines(line.decode("utf-8", "replace") for line in lines)

    def _feed_simple(self, data: bytes) -> list[SSEEvent] | None:
        """The events of ``data`` when it is the common case, else None (and nothing done).

        The common case is what OpenAI-compatible servers send: the decoder holds no open
        event, and up to the last blank line ``data`` is nothing but ``data: <value>\n\n``
        events, LF only. Each is then one event whose data is ``<value>``, as the line rules
        would have it; they are found by a few passes over the bytes instead of one Python
        step per line. What follows the last blank line (lines of an event still open, the
        last of them maybe unfinished) goes through the line rules.
        """
        end = data.rfind(b"\n\n")
        if end < 0 or self._data or self._event or b"\r" in data:
            return None
        body = data[:end]
        separators = body.count(b"\n\ndata: ")
        if not body.startswith(b"data: ") or body.count(b"\n") != 2 * separators:
            return None
        tail = data[end + 2 :]
        cut = tail.rfind(b"\n")
        pending = tail[cut + 1 :]
        if len(pending) > self._max_line:
            raise SSEDecodeError(f"a line exceeded {self._max_line} bytes")
        self._pending = pending
        # Cut at ASCII bytes only, so decoding the whole is decoding each value.
        values = body[6:].decode("utf-8", "replace").split("\n\ndata: ")
        if max(map(len, values)) + 1 > self._max_event:
            raise SSEDecodeError(f"an event exceeded {self._max_event} characters")
        out = [SSEEvent("message", value) for value in values]
        if cut >= 0:
            out += self.feed_lines(
                line.decode("utf-8", "replace") for line in tail[:cut].split(b"\n")
            )
        return out

    def close(self) -> list[SSEEvent]:
        """The end of the body: a last unterminated line and an open event are dispatched."""
        pending, self._pending = self._pending, b""
        out = []
        if pending:
            out = self.feed_lines([pending.removesuffix(b"\r").decode("utf-8", "replace")])
        if self._data:
            out.append(SSEEvent(self._event or "message", "\n".join(self._data)))
            self._event, self._data, self._size = "", [], 0
        return out

    def feed_lines(self, lines: Iterable[str]) -> list[SSEEvent]:
        """Decode lines (without their terminators); the events they dispatch, in order."""
        out: list[SSEEvent] = []
        for raw_line in lines:
            line = raw_line.rstrip("\r\n")
            if not line:
                if self._data:
                    out.append(SSEEvent(self._event or "message", "\n".join(self._data)))
                self._event, self._data, self._size = "", [], 0
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                self._size += len(value) + 1
                if self._size > self._max_event:
                    raise SSEDecodeError(f"an event exceeded {self._max_event} characters")
                self._data.append(value)
            elif field == "event":
                self._event = value
        return out


async def iter_sse(
    lines: AsyncIterable[str], *, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS
) -> AsyncIterator[SSEEvent]:
    """Decode events from ``lines`` (without line terminators, e.g. ``Response.aiter_lines``).

    Follows the WHATWG event-stream rules that matter for proxying: a blank line dispatches,
    ``:`` starts a comment, one leading space of a value is dropped, several ``data`` lines
    join with ``\\n``, an event without data is not dispatched. ``id`` and ``retry`` are
    ignored: a proxied completion is never resumed. An event still open when the body ends
    is dispatched, so a server that omits the final blank line still works; a truncated JSON
    payload then fails to parse in the backend, which fails closed.
    """
    decoder = SSEDecoder(max_event_chars=max_event_chars)
    async for raw_line in lines:
        for event in decoder.feed_lines((raw_line,)):
            yield event
    for event in decoder.close():
        yield event


async def iter_sse_batches(
    chunks: AsyncIterable[bytes],
    *,
    max_line_bytes: int = DEFAULT_MAX_EVENT_CHARS,
    max_event_chars: int = DEFAULT_MAX_EVENT_CHARS,
) -> AsyncIterator[list[SSEEvent]]:
    """The events of a byte stream, one non-empty list per chunk that completed any.

    Same events in the same order as ``iter_sse(iter_lines(chunks))``; only the grouping
    differs, and an event is still handed on as soon as the chunk with its blank line
    arrives.
    """
    decoder = SSEDecoder(max_line_bytes=max_line_bytes, max_event_chars=max_event_chars)
    async for chunk in chunks:
        events = decoder.feed(chunk)
        if events:
            yield events
    events = decoder.close()
    if events:
        yield events
