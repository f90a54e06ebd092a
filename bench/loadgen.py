"""Minimal HTTP/1.1 pieces for benchmarks: a canned OpenAI upstream and a keep-alive client.

Both are raw asyncio so that, on a 2-core machine, the load generator and the fake upstream
cost as little CPU as possible and the numbers describe the gateway, not the harness.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fast",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fast upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
).encode()


def _sse_body(chunks: int) -> bytes:
    def event(delta: dict[str, object], finish: str | None = None, usage: bool = False) -> bytes:
        body: dict[str, object] = {
            "id": "chatcmpl-upstream",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "fast",
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            body["usage"] = {
                "prompt_tokens": 12,
                "completion_tokens": chunks,
                "total_tokens": 12 + chunks,
            }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    parts = [event({"role": "assistant", "content": ""})]
    parts += [event({"content": f"tok{i} "}) for i in range(chunks)]
    parts.append(event({}, "stop"))
    parts.append(event({}, usage=True))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


async def _handle_upstream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sse: bytes
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if b'"stream":true' in body.replace(b" ", b""):
                payload = sse
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(_COMPLETION)).encode()
                    + b"\r\n\r\n"
                    + _COMPLETION
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def run_upstream(port: int, stream_chunks: int = 20) -> None:
    """Serve canned OpenAI answers forever (run it in its own process)."""
    sse = _sse_body(stream_chunks)
    server = await asyncio.start_server(
        lambda r, w: _handle_upstream(r, w, sse), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


class Connection:
    """One keep-alive HTTP/1.1 connection that can POST and read a whole response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, float]:
        """Returns (status, body, seconds to first body byte)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        started = time.perf_counter()
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readuntil(b"\r\n")
        first_byte = time.perf_counter() - started
        status = int(status_line.split()[1])
        length, chunked = None, False
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value:
                chunked = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            data = b"".join(parts)
        else:
            data = await self.reader.readexactly(length or 0)
        return status, data, first_byte

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def closed_loop(
    host: str,
    port: int,
    path: str,
    body: bytes | list[bytes],
    headers: dict[str, str],
    *,
    clients: int,
    requests: int,
) -> LoadResult:
    """``clients`` connections each sending back-to-back until ``requests`` are done.

    ``body`` may be a list: request *i* sends ``body[i % len(body)]`` (distinct messages, so
    nothing on the gateway's side can answer from a cache).
    """
    result = LoadResult()
    remaining = requests
    bodies = body if isinstance(body, list) else [body]

    async def worker() -> None:
        nonlocal remaining
        conn = Connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                payload = bodies[remaining % len(bodies)]
                started = time.perf_counter()
                status, _, _ = await conn.post(path, payload, headers)
                if status != 200:
                    result.errors += 1
                result.latencies.append(time.perf_counter() - started)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    result.elapsed = time.perf_counter() - started
    return result


async def open_loop(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    rate: float,
    seconds: float,
    pool: int = 64,
) -> LoadResult:
    """Requests sent at a fixed rate regardless of responses (latency without queueing bias)."""
    result = LoadResult()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool):
        idle.put_nowait(Connection(host, port))
    interval = 1.0 / rate

    async def one(scheduled: float) -> None:
        conn = await idle.get()
        try:
            status, _, _ = await conn.post(path, body, headers)
            if status != 200:
                result.errors += 1
            # Latency from the scheduled send time: waiting for a free connection counts.
            result.latencies.append(time.perf_counter() - scheduled)
        finally:
            idle.put_nowait(conn)

    tasks = []
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().close()
    return result
