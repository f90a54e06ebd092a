"""Time to first token through the gateway, with and without the default guards.

Output guards scan a sliding window and hold back at most ``hold + step_chars`` characters
(``hold``: the largest any output guard declares, 192 for the default pipeline), so they delay
the first visible token; input guards add their own latency before the model starts. This
measures both on the embedded SmolLM2 (streaming, 1 client), and the old fixed 256-character
hold for comparison, with the pipelines' requests interleaved.

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


def _configs() -> list[tuple[str, bool, dict[str, object]]]:
    """(label, guards, config overrides): the pipelines compared, in the order printed."""
    from wardgate.guards.defaults import default_guards_config

    defaults = default_guards_config().model_dump(mode="json")
    return [
        ("no guards", False, {}),
        ("input guards only", True, {"guards": {**defaults, "output": []}}),
        ("default guards", True, {}),
        (
            "default, hold 256",
            True,
            {"guards": {**defaults, "streaming": {"hold_chars": 256, "step_chars": 32}}},
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    configs = _configs()
    with tempfile.TemporaryDirectory() as tmp:
        gateways = []
        try:
            for index, (_, guards, overrides) in enumerate(configs):
                gateway = start_gateway(
                    Path(tmp), 1, guards, name=f"c{index}", overrides=overrides
                )
                gateways.append(gateway)
            for _, port, key in gateways:
                measure(port, key, 1)  # warm-up
            first: list[list[float]] = [[] for _ in configs]
            total: list[list[float]] = [[] for _ in configs]
            # Interleaved, so a busy moment on a shared machine hits every pipeline alike.
            for _ in range(args.runs):
                for index, (_, port, key) in enumerate(gateways):
                    f, t = measure(port, key, 1)
                    first[index] += f
                    total[index] += t
        finally:
            for proc, _, _ in gateways:
                proc.terminate()
                proc.wait(timeout=30)
    base = statistics.median(first[0])
    for (label, _, _), f, t in zip(configs, first, total, strict=True):
        print(
            f"{label:<18} TTFT p50 {statistics.median(f) * 1000:7.1f} ms "
            f"(min {min(f) * 1000:.1f}, max {max(f) * 1000:.1f}; "
            f"{statistics.median(f) / base:4.1f}x no guards)  "
            f"full answer p50 {statistics.median(t) * 1000:7.1f} ms"
        )


if __name__ == "__main__":
    main()
