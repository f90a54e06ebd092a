"""Cost of the vendor backends over a bare HTTP call, against the fake OpenAI server.

The fake runs as its own process (``python -m tests.fakes.serve openai``); this process
sends the same requests four ways at fixed concurrency: raw ``httpx`` and raw ``aiohttp``
(post + ``orjson`` parse: what each HTTP client costs on its own, the floor),
``OpenAICompatBackend.complete`` and ``OpenAICompatBackend.stream``. The difference between
the raw client the backend uses and ``complete`` is what request building, error mapping
and response parsing cost. "client CPU" (this process's CPU time per request) is the figure
that load on a shared machine disturbs least; req/s and latency also include the fake
server's share of two cores and are indicative only.

    .venv/bin/python bench/vendor_backends.py               # 2000 requests per mode
    .venv/bin/python bench/vendor_backends.py --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wardgate.backends.openai_compat import OpenAICompatBackend  # noqa: E402
from wardgate.chat import ChatRequest  # noqa: E402
from wardgate.config import ModelConfig  # noqa: E402

BODY = {"model": "fake", "messages": [{"role": "user", "content": "one two three four"}]}


async def _run(
    name: str, call: Callable[[], Awaitable[None]], requests: int, concurrency: int
) -> None:
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    for _ in range(20):  # warm the pool
        await call()
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu_started) / len(latencies) * 1e6
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    rate = len(latencies) / elapsed
    print(
        f"{name:<18} client CPU {cpu_us:6.0f} µs/req   {rate:5.0f} req/s   "
        f"p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
    )


async def main(requests: int, concurrency: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.serve", "openai", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().split("=", 1)[1]
        async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
            for _ in range(100):
                try:
                    await client.get("/models")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)

            payload = orjson.dumps(BODY)
            json_headers = {"content-type": "application/json"}

            async def raw_httpx() -> None:
                response = await client.post(
                    "/chat/completions", content=payload, headers=json_headers
                )
                orjson.loads(response.content)

            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100), trust_env=False
            )
            url = f"{base}/chat/completions"

            async def raw_aiohttp() -> None:
                async with session.post(url, data=payload, headers=json_headers) as response:
                    orjson.loads(await response.read())

            backend = OpenAICompatBackend(
                ModelConfig(name="fake", backend="openai", base_url=base, max_output_tokens=64)
            )
            await backend.start()
            request = ChatRequest.model_validate(BODY)

            async def complete() -> None:
                await backend.complete(request)

            async def stream() -> None:
                async for _ in backend.stream(request):
                    pass

            print(f"{requests} requests per mode, concurrency {concurrency}, answer of 5 chunks")
            # Interleaved twice so drift in the shared machine's load hits every mode.
            for _ in range(2):
                await _run("raw httpx", raw_httpx, requests, concurrency)
                await _run("raw aiohttp", raw_aiohttp, requests, concurrency)
                await _run("backend.complete", complete, requests, concurrency)
                await _run("backend.stream", stream, requests, concurrency)
            await backend.aclose()
            await session.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
