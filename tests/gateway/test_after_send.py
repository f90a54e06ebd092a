"""Work done after an answer is out: ``FinalChunk`` ends a stream's body before the body
generator's clean-up, ``FinishingResponse`` finishes a whole answer once it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from wardgate.gateway.responses import EventStreamResponse, FinalChunk, FinishingResponse


class FakeServer:
    """ASGI receive/send as uvicorn behaves: ``receive`` waits until the client leaves or
    the response is complete, and then reports ``http.disconnect``."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.complete = asyncio.Event()
        self.fail_send = False

    async def receive(self) -> dict[str, Any]:
        await self.complete.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.fail_send:
            raise OSError("connection reset")
        self.log.append(("send", message.get("body"), message.get("more_body")))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.complete.set()
        await asyncio.sleep(0)  # let the watcher run, as the loop would


async def _call(response: Any, server: FakeServer) -> None:
    await response({"type": "http", "method": "POST"}, server.receive, server.send)


async def test_a_final_chunk_ends_the_body_before_the_clean_up_runs() -> None:
    server = FakeServer()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            yield FinalChunk(b"data: 2\n\ndata: [DONE]\n\n")
        finally:
            server.log.append("clean-up started")
            await asyncio.sleep(0.01)  # the server now reports the response complete
            await asyncio.sleep(0)
            server.log.append("clean-up done")

    await _call(EventStreamResponse(body()), server)
    sends = [entry for entry in server.log if entry != "clean-up started"]
    assert sends[1:] == [
        ("send", b"data: 1\n\n", True),
        ("send", b"data: 2\n\ndata: [DONE]\n\n", False),
        "clean-up done",
    ]
    assert server.log.index("clean-up started") > server.log.index(sends[2])


async def test_without_a_final_chunk_the_body_ends_as_before() -> None:
    server = FakeServer()

    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield "data: 2\n\n"  # type: ignore[misc]

    await _call(EventStreamResponse(body()), server)
    assert server.log[1:] == [
        ("send", b"data: 1\n\n", True),
        ("send", b"data: 2\n\n", True),
        ("send", b"", False),
    ]


async def test_a_client_that_leaves_still_cancels_the_stream() -> None:
    server = FakeServer()
    seen: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            server.complete.set()  # the client goes away while the answer is generated
            await asyncio.sleep(5)
            yield FinalChunk(b"data: [DONE]\n\n")
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    await asyncio.wait_for(_call(EventStreamResponse(body()), server), 2)
    assert seen == ["cancelled"]
    assert ("send", b"data: [DONE]\n\n", False) not in server.log


async def test_a_finishing_response_finishes_once_after_sending() -> None:
    server = FakeServer()
    finished: list[int] = []

    def finish() -> None:
        finished.append(len(server.log))

    response = FinishingResponse({"ok": True}, headers={"x-a": "1"}, finish=finish)
    await _call(response, server)
    await _call(response, server)  # a second send does not finish twice
    assert finished == [2]
    assert orjson.loads(server.log[1][1]) == {"ok": True}


async def test_a_finishing_response_finishes_when_sending_fails() -> None:
    server = FakeServer()
    server.fail_send = True
    finished: list[bool] = []
    response = FinishingResponse({}, headers={}, finish=lambda: finished.append(True))
    with pytest.raises(OSError):
        await _call(response, server)
    assert finished == [True]


async def test_a_failing_finish_does_not_raise_into_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def finish() -> None:
        raise RuntimeError("audit down")

    await _call(FinishingResponse({}, headers={}, finish=finish), FakeServer())
    assert "finishing a sent response failed (RuntimeError)" in caplog.text
