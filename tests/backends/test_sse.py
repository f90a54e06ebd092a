"""The shared SSE decoder, on the edge cases real upstreams produce."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wardgate.backends.sse import (
    SSEDecodeError,
    SSEDecoder,
    SSEEvent,
    _split_lines,
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


# -- the LF-only fast path of SSEDecoder.feed against the line rules -----------------------


class LineByLineDecoder(SSEDecoder):
    """``feed`` as it was before the blank-line fast path: every line through the rules."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        lines, self._pending = _split_lines(self._pending, chunk)
        if len(self._pending) > self._max_line:
            raise SSEDecodeError(f"a line exceeded {self._max_line} bytes")
        return self.feed_lines(line.decode("utf-8", "replace") for line in lines)


def _outcome(decoder: SSEDecoder, chunks: list[bytes]) -> list[object]:
    """Each chunk's events, then the close's, or where it raised."""
    out: list[object] = []
    try:
        for chunk in chunks:
            out.append(decoder.feed(chunk))
        out.append(decoder.close())
    except SSEDecodeError as exc:
        out.append(("raised", str(exc)))
    return out


#: Pieces that make up the event streams real and broken servers send.
_PIECES = st.sampled_from(
    [
        b"data: ", b"data:", b"data", b"event: ", b"event:x", b": ping", b":", b" ", b"\n",
        b"\n\n", b"\r", b"\r\n", b'{"a": 1}', b"[DONE]", b"x", b"\xc3\xa9", b"\xe2\x80\xa8",
        b"\xff", b"\xc3", b"id: 1", b"retry: 5",
    ]
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    st.lists(_PIECES, max_size=40),
    st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=8),
    st.sampled_from([(4096, 4096), (12, 4096), (4096, 6)]),
)
def test_feed_matches_the_line_by_line_decoder(
    pieces: list[bytes], sizes: list[int], limits: tuple[int, int]
) -> None:
    body = b"".join(pieces)
    chunks, at, turn = [], 0, 0
    while at < len(body):
        size = sizes[turn % len(sizes)]
        chunks.append(body[at : at + size])
        at, turn = at + size, turn + 1
    line, event = limits
    ours = SSEDecoder(max_line_bytes=line, max_event_chars=event)
    reference = LineByLineDecoder(max_line_bytes=line, max_event_chars=event)
    assert _outcome(ours, chunks) == _outcome(reference, chunks)
    # The whole body in one read, as the canned upstream sends it.
    ours = SSEDecoder(max_line_bytes=line, max_event_chars=event)
    reference = LineByLineDecoder(max_line_bytes=line, max_event_chars=event)
    assert _outcome(ours, [body]) == _outcome(reference, [body])


def test_a_chat_stream_in_one_read_takes_the_fast_path_and_decodes_the_same() -> None:
    event = b'data: {"choices":[{"delta":{"content":"tok%d \xc3\xa9"}}]}\n\n'
    events = [event % i for i in range(20)]
    body = b"".join(events) + b"data: [DONE]\n\n"
    for cut in (len(body), 7, len(events[0]), len(events[0]) + 1, len(events[0]) - 1):
        chunks = [body[:cut], body[cut:]]
        assert _outcome(SSEDecoder(), chunks) == _outcome(LineByLineDecoder(), chunks)
    decoded = SSEDecoder().feed(body)
    assert len(decoded) == 21 and decoded[-1] == SSEEvent("message", "[DONE]")
    assert decoded[3].data == '{"choices":[{"delta":{"content":"tok3 \u00e9"}}]}'


def test_feed_matches_the_line_by_line_decoder_on_every_short_stream() -> None:
    """Every stream of up to three pieces, whole and cut once at every byte, under limits
    that the pieces reach exactly (a 6-character value, a 5-byte line)."""
    pieces = [b"data: ", b"data:", b"event: e\n", b"[DONE]", b"\n", b"\n\n", b"\r", b": c", b"\xc3"]
    bodies = [b""]
    for _ in range(3):
        bodies = [body + piece for body in bodies for piece in pieces]
        for body in bodies:
            for line, event in ((4096, 4096), (4096, 6), (5, 4096)):
                for cut in range(len(body) + 1):
                    chunks = [body[:cut], body[cut:]]
                    ours = SSEDecoder(max_line_bytes=line, max_event_chars=event)
                    reference = LineByLineDecoder(max_line_bytes=line, max_event_chars=event)
                    assert _outcome(ours, chunks) == _outcome(reference, chunks), chunks
