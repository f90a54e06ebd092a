"""The shared SSE decoder, on the edge cases real upstreams produce."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wardgate.backends.sse import (
    SSEDecodeError,
    SSEDecoder,
    SSEEvent,
    iter_lines,
    iter_sse,
    iter_sse_batches,
)


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _decode(*lines: str, **kwargs: int) -> list[SSEEvent]:
    return [e async for e in iter_sse(_lines(*lines), **kwargs)]


async def test_openai_style_unnamed_events() -> None:
    events = await _decode('data: {"a": 1}', "", "data: [DONE]", "")
    assert events == [SSEEvent("message", '{"a": 1}'), SSEEvent("message", "[DONE]")]


async def test_anthropic_style_named_events() -> None:
    events = await _decode(
        "event: message_start",
        'data: {"type": "message_start"}',
        "",
        "event: ping",
        'data: {"type": "ping"}',
        "",
    )
    assert [e.event for e in events] == ["message_start", "ping"]


async def test_comments_blank_runs_and_events_without_data_are_skipped() -> None:
    events = await _decode(": keep-alive", "", "", "event: lonely", "", "data: x", "")
    assert events == [SSEEvent("message", "x")]


async def test_multi_line_data_joins_with_newlines_and_no_space_is_fine() -> None:
    events = await _decode("data:first", "data:  second", "")
    assert events == [SSEEvent("message", "first\n second")]


async def test_crlf_remnants_are_stripped_and_last_event_without_blank_line_counts() -> None:
    events = await _decode("data: a\r", "\r", "data: b")
    assert [e.data for e in events] == ["a", "b"]


async def test_event_name_does_not_leak_into_the_next_event() -> None:
    events = await _decode("event: error", "data: 1", "", "data: 2", "")
    assert [e.event for e in events] == ["error", "message"]


async def test_oversized_event_is_refused() -> None:
    with pytest.raises(SSEDecodeError):
        await _decode("data: " + "x" * 50, "data: " + "y" * 50, "", max_event_chars=80)


# -- byte chunks to lines ------------------------------------------------------------------


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _lines_of(*chunks: bytes, **kwargs: int) -> list[str]:
    return [line async for line in iter_lines(_chunks(*chunks), **kwargs)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
async def test_lines_are_the_same_however_the_bytes_are_chunked(size: int) -> None:
    body = "a\r\nb\rc\nd\r\r\n\u00e9\u2603 \u2028 x\n\ntail".encode()
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert await _lines_of(*chunks) == ["a", "b", "c", "d", "", "\u00e9\u2603 \u2028 x", "", "tail"]


async def test_a_final_cr_ends_a_line_and_nothing_follows_it() -> None:
    assert await _lines_of(b"data: x\r") == ["data: x"]
    assert await _lines_of(b"data: x\r", b"") == ["data: x"]
    assert await _lines_of(b"a\n") == ["a"]
    assert await _lines_of() == []


async def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert await _lines_of(b"data: \xff\xfe ok\n") == ["data: \ufffd\ufffd ok"]


async def test_a_line_that_never_ends_is_refused() -> None:
    with pytest.raises(SSEDecodeError):
        await _lines_of(b"data: " + b"x" * 60, b"y" * 60, max_line_bytes=100)
    assert await _lines_of(b"x" * 90, b"\n" + b"y" * 90, max_line_bytes=100) == [
        "x" * 90,
        "y" * 90,
    ]


# -- batches: the events each chunk completed ----------------------------------------------


BATCH_CHUNKS = (
    b"data: 1\n\ndata: 2\n\nda",
    b"ta: 3\r",
    b"\n\r\ndata: 4\n\n",
    b": keep-alive\n\n",
    b"event: last\ndata: 5",
)


async def test_batches_hold_the_events_each_chunk_completed_in_order() -> None:
    batches = [b async for b in iter_sse_batches(_chunks(*BATCH_CHUNKS))]
    assert [[e.data for e in batch] for batch in batches] == [["1", "2"], ["3", "4"], ["5"]]
    assert batches[-1] == [SSEEvent("last", "5")]


async def test_batches_carry_the_same_events_as_the_line_decoder() -> None:
    flat = [e async for batch in iter_sse_batches(_chunks(*BATCH_CHUNKS)) for e in batch]
    assert flat == [e async for e in iter_sse(iter_lines(_chunks(*BATCH_CHUNKS)))]


async def test_batches_refuse_an_endless_line_and_an_oversized_event() -> None:
    with pytest.raises(SSEDecodeError):
        _ = [b async for b in iter_sse_batches(_chunks(b"data: " + b"x" * 100), max_line_bytes=50)]
    decoder = SSEDecoder(max_event_chars=80)
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data: " + b"x" * 50 + b"\ndata: " + b"y" * 50 + b"\n")
