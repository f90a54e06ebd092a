"""Latency of the rule-based guards, the normaliser and the input pipeline (p50/p99).

    PYTHONPATH=src .venv/bin/python bench/guard_latency.py [--quick]

Inputs are realistic business prose of 200, 1,000 and 4,000 characters with one e-mail
address, one phone number and one API key sprinkled in (so validators run), scanned the way the
pipeline scans them. Baselines: Presidio's analyzer (same kinds, no-op NLP engine) and
detect-secrets' line scanner with its default plugins. Figures are wall-clock on whatever
machine runs this; on a shared machine, label them as measured under load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from wardgate.chat import ChatRequest
from wardgate.guards import GuardPipeline, GuardSpec, ScanContext, default_guards_config
from wardgate.guards.leakage import SystemPromptLeakGuard
from wardgate.guards.normalise import variants
from wardgate.guards.pii import PiiGuard
from wardgate.guards.secrets import SecretsGuard
from wardgate.guards.size import SizeGuard
from wardgate.guards.unicode import InvisibleUnicodeGuard

PROSE = (
    "Thanks for the quick turnaround on the quarterly figures. Before Friday's review, could "
    "you double-check the revenue split between the EMEA and APAC regions, and confirm that "
    "the churn numbers include the accounts we migrated in March? Also, the finance team asked "
    "whether the forecast assumes the new pricing tiers. "
)
SPRINKLES = (
    " Reach Dana at dana.whitfield@example.com or +44 20 7946 0958.",
    " The staging key is sk-proj-Zx81aQ2wE9rT6yU3iO0pL5kJ7hG4fD1s, rotate it after.",
)


def make_text(size: int) -> str:
    body = (PROSE * (size // len(PROSE) + 2))[: size - sum(len(s) for s in SPRINKLES)]
    half = len(body) // 2
    return body[:half] + SPRINKLES[0] + body[half:] + SPRINKLES[1]


def measure(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(max(3, runs // 20)):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples), p99


def detect_secrets_scan() -> Callable[[str], object]:
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    def scan(text: str) -> object:
        with default_settings():
            return [s for line in text.splitlines() for s in scan_line(line)]

    return scan


def presidio_scan() -> Callable[[str], object]:
    from wardgate.guards.pii import PresidioPiiDetector

    detector = PresidioPiiDetector(phone_regions=["US", "GB", "DE", "FR"])
    return detector.detect


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    runs = 60 if args.quick else 300
    slow_runs = 20 if args.quick else 60
    ctx_in = ScanContext(stage="input")
    ctx_out = ScanContext(stage="output")
    ctx_out.state.system_prompt = PROSE * 2
    ctx_out.state.canary = "wgc0123456789abcdef"

    unicode_guard = InvisibleUnicodeGuard(GuardSpec(type="invisible_unicode"))
    size_guard = SizeGuard(GuardSpec(type="size"))
    secrets_guard = SecretsGuard(GuardSpec(type="secrets"))
    pii_guard = PiiGuard(GuardSpec(type="pii"))
    leak_guard = SystemPromptLeakGuard(GuardSpec(type="system_prompt_leak"))
    pipeline = GuardPipeline.from_config(default_guards_config(learned=False))
    ds_scan = detect_secrets_scan()
    started = time.perf_counter()
    presidio = presidio_scan()
    presidio_start_s = time.perf_counter() - started

    rows: list[tuple[str, int, float, float]] = []
    for size in (200, 1000, 4000):
        text = make_text(size)
        request = ChatRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": text}]}
        )
        loop = asyncio.new_event_loop()
        cases: list[tuple[str, Callable[[], object], int]] = [
            ("invisible_unicode", lambda t=text: unicode_guard.scan(t, ctx_in), runs),
            ("size", lambda t=text: size_guard.scan(t, ctx_in), runs),
            ("secrets", lambda t=text: secrets_guard.scan(t, ctx_in), runs),
            ("pii (regex engine)", lambda t=text: pii_guard.scan(t, ctx_in), runs),
            ("system_prompt_leak", lambda t=text: leak_guard.scan(t, ctx_out), runs),
            ("normalise.variants", lambda t=text: variants(t), runs),
            (
                "input pipeline (4 rule guards)",
                lambda r=request, lp=loop: lp.run_until_complete(pipeline.check_request(r)),
                runs,
            ),
            ("baseline: presidio analyzer", lambda t=text: presidio(t), slow_runs),
            ("baseline: detect-secrets", lambda t=text: ds_scan(t), slow_runs),
        ]
        for name, fn, n in cases:
            p50, p99 = measure(fn, n)
            rows.append((name, size, p50, p99))
        loop.close()

    dense = (
        "Call +1 212 555 0142 or 0049 30 901820, card 4111 1111 1111 1111, IBAN DE89 3704 0044 "
        "0532 0130 00, ref 2024-11-05 10:30, order 5512 3301 7781, host 10.2.3.4, SSN 219-09-9999. "
    ) * 6
    dense = dense[:1000]
    regex_pii = PiiGuard(GuardSpec(type="pii")).detector
    for name, fn in (
        ("pii dense: regex engine", regex_pii.detect),
        ("pii dense: presidio", presidio),
    ):
        p50, p99 = measure(lambda f=fn: f(dense), slow_runs)
        rows.append((name, len(dense), p50, p99))

    answer = make_text(4000)
    chunks = [answer[i : i + 4] for i in range(0, len(answer), 4)]

    def stream_once() -> None:
        result = loop2.run_until_complete(pipeline.check_request(stream_request))
        scanner = pipeline.output_scanner(result)
        for chunk in chunks:
            scanner.feed(chunk)
        scanner.finish()

    loop2 = asyncio.new_event_loop()
    stream_request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "You are a finance helper. Be brief."},
                {"role": "user", "content": "hi"},
            ],
        }
    )
    p50, p99 = measure(stream_once, slow_runs)
    rows.append(("stream: 1000 chunks of 4 chars, total", 4000, p50, p99))
    loop2.close()

    print(f"{'guard':34} {'chars':>6} {'p50 ms':>9} {'p99 ms':>9}")
    for name, size, p50, p99 in rows:
        print(f"{name:34} {size:6d} {p50:9.3f} {p99:9.3f}")
    print(f"presidio analyzer construction (first import included): {presidio_start_s:.2f} s")
    pipeline.close()


if __name__ == "__main__":
    main()
