"""The Messages and Responses stream translators read the chat route's SSE however it is cut:
one event per chunk, a whole batch of events in one chunk (as the chat route now writes
them), or events split across chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from itertools import count
from typing import Any

import pytest

from wardgate.chat import ToolCallDelta, Usage
from wardgate.gateway import anthropic_wire, responses_wire
from wardgate.gateway.responses import ChunkEncoder


def _chat_events() -> list[bytes]:
    encoder = ChunkEncoder(request_id="chatcmpl-test", model="m")
    return [
        encoder.role(),
        *(encoder.content(word) for word in ("one ", "two ", "three")),
        encoder.tool_calls([ToolCallDelta(index=0, id="call_1", name="f", arguments='{"a": 1}')]),
        encoder.finish("tool_calls"),
        encoder.usage(Usage(prompt_tokens=4, completion_tokens=3), "receipt-jws"),
        encoder.done(),
    ]


def _cuts(events: list[bytes]) -> dict[str, list[bytes]]:
    whole = b"".join(events)
    return {
        "one event per chunk": events,
        "one chunk": [whole],
        "every 7 bytes": [whole[i : i + 7] for i in range(0, len(whole), 7)],
    }


async def _chunks(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    numbers = count()
    monkeypatch.setattr(anthropic_wire, "message_id", lambda: "msg_fixed")
    monkeypatch.setattr(responses_wire, "_id", lambda prefix: f"{prefix}_{next(numbers)}")


async def _translated(
    translate: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]], chunks: list[bytes]
) -> bytes:
    return b"".join([event async for event in translate(_chunks(chunks))])


@pytest.mark.parametrize("api", ["messages", "responses"])
async def test_any_cut_of_the_chat_stream_translates_the_same(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs: dict[str, bytes] = {}
    for name, chunks in _cuts(_chat_events()).items():
        _fixed_ids(monkeypatch)
        shell = responses_wire.ResponseShell({"model": "m"}, {"model": "m"})
        shell.created_at = 0

        def translate(c: AsyncIterator[bytes], shell: Any = shell) -> AsyncIterator[bytes]:
            if api == "messages":
                return anthropic_wire.to_events(c, "m")
            return responses_wire.to_events(c, shell)

        outputs[name] = await _translated(translate, chunks)
    first: Any = outputs["one event per chunk"]
    assert b"three" in first
    assert outputs["one chunk"] == first
    assert outputs["every 7 bytes"] == first
