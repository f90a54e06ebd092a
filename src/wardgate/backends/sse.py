"""Server-sent events, decoded incrementally from the lines of an HTTP response body.

Both vendor protocols stream over SSE: OpenAI-compatible servers send unnamed ``data:``
events ending in ``data: [DONE]``; Anthropic names every event (``event: message_start``).
One small decoder serves both so that edge cases (comments used as keep-alives, multi-line
``data``, a missing space after the colon) are handled once. It knows nothing about JSON or
vendors; the backends interpret ``data``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

#: An upstream that never ends an event must not make the gateway buffer without bound.
DEFAULT_MAX_EVENT_CHARS = 4 * 1024 * 1024


class SSEDecodeError(ValueError):
    """The byte stream is not a well-formed event stream (or an event is too large)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``event`` is ``"message"`` when the server named none."""

    event: str
    data: str


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
