"""Server-sent events, decoded incrementally from the chunks of an HTTP response body.

Both vendor protocols stream over SSE: OpenAI-compatible servers send unnamed ``data:``
events ending in ``data: [DONE]``; Anthropic names every event (``event: message_start``).
One small decoder serves both so that edge cases (comments used as keep-alives, multi-line
``data``, a missing space after the colon) are handled once. It knows nothing about JSON or
vendors; the backends interpret ``data``.

:func:`iter_lines` cuts the body's byte chunks into lines as they arrive and
:func:`iter_sse` groups lines into events, so an event is handed on as soon as its blank
line arrives and the body is never buffered whole.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

#: An upstream that never ends an event must not make the gateway buffer without bound.
DEFAULT_MAX_EVENT_CHARS = 4 * 1024 * 1024


#: The event-stream line terminators: CRLF, LF or a lone CR. Not ``str.splitlines``, which
#: also splits on U+2028 and friends that JSON strings may carry unescaped.
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


class SSEDecodeError(ValueError):
    """The byte stream is not a well-formed event stream (or an event is too large)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``event`` is ``"message"`` when the server named none."""

    event: str
    data: str


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
        data = pending + chunk if pending else chunk
        if b"\r" in data:
            held_cr = data.endswith(b"\r")
            lines = _LINE_BREAK.split(data[:-1] if held_cr else data)
            pending = lines.pop() + (b"\r" if held_cr else b"")
        else:
            lines = data.split(b"\n")
            pending = lines.pop()
        if len(pending) > max_line_bytes:
            raise SSEDecodeError(f"a line exceeded {max_line_bytes} bytes")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.removesuffix(b"\r").decode("utf-8", "replace")


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
    event_name = ""
    data: list[str] = []
    size = 0
    async for raw_line in lines:
        line = raw_line.rstrip("\r\n")
        if not line:
            if data:
                yield SSEEvent(event_name or "message", "\n".join(data))
            event_name, data, size = "", [], 0
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            size += len(value) + 1
            if size > max_event_chars:
                raise SSEDecodeError(f"an event exceeded {max_event_chars} characters")
            data.append(value)
        elif field == "event":
            event_name = value
    if data:
        yield SSEEvent(event_name or "message", "\n".join(data))
