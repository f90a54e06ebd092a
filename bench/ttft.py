"""Time to first token through the gateway, with and without the default guards.

Output guards scan a sliding window and hold back at most ``hold_chars + step_chars``
characters, so they delay the first visible token; input guards add their own latency before
the model starts. This measures both on the embedded SmolLM2 (streaming, 1 client).

    .venv/bin/python bench/ttft.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import start_gateway

PROMPT = "Write a short story about a lighthouse keeper and a storm."


def measure(port: int, key: str, runs: int) -> tuple[list[float], list[float]]:
    """Seconds to the first content chunk and to the end of the stream, per run."""
    first, total = [], []
    body = {
        "model": "smol",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 160,
        "temperature": 0,
        "seed": 1,
        "stream": True,
    }
    with httpx.Client(timeout=300, headers={"authorization": f"Bearer {key}"}) as client:
        for _ in range(runs):
            started = time.perf_counter()
            seen = None
            with client.stream(
                "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body
            ) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if seen is None and line.startswith("data: {"):
                        event = orjson.loads(line[6:])
                        if event.get("choices") and event["choices"][0]["delta"].get("content"):
                            seen = time.perf_counter() - started
            first.append(seen if seen is not None else float("nan"))
            total.append(time.perf_counter() - started)
    return first, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for guards in (False, True):
            proc, port, key = start_gateway(Path(tmp), upstream_port=1, guards=guards)
            try:
                measure(port, key, 1)  # warm-up
                first, total = measure(port, key, args.runs)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            label = "default guards" if guards else "no guards"
            print(
                f"{label:<15} TTFT p50 {statistics.median(first) * 1000:7.1f} ms "
                f"(min {min(first) * 1000:.1f}, max {max(first) * 1000:.1f})  "
                f"full answer p50 {statistics.median(total) * 1000:7.1f} ms"
            )


if __name__ == "__main__":
    main()
