"""Latency and memory of the ``pii`` guard with the name recogniser, at 1,000 characters.

    PYTHONPATH=src .venv/bin/python bench/pii_latency.py [--runs 300]

Texts are 1,000-character mixes of the four languages' chat, e-mail and ticket prose with
names, phones, IDs and addresses in them (built here from a fixed seed). Each guard scans every
text ``--runs`` times interleaved (names on, names off), on one thread; p50/p95 per scan are
reported, and the ratio between the two measured in the same run (noisy machines: trust the
ratio more than the absolute figure). RSS added is the resident-set growth of this process
when the recogniser loads (read from /proc/self/status), measured before anything else runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

PIECES = [
    "Hi team, please forward the contract to Sarah Miller before Friday.",
    "Bitte ruf Herrn Klaus Becker unter 030 4403 2291 zurück.",
    "Mme Dupont a demandé un remboursement pour la commande 4500012345.",
    "El señor Ruiz vive en Calle Mayor 5, 28013 Madrid.",
    "The build on the Berlin runner failed again after the upgrade to 3.12.4.",
    "Die Rechnung Nr. 2024-00871 ist seit zwei Wochen fällig.",
    "Notre bureau de Lyon ferme en août pour travaux.",
    "La mayoría de los clientes paga con tarjeta.",
    "Can you summarise the ticket and suggest a reply to the customer?",
    "Steuer-ID 47 158 392 048, BSN 111222333.",
    "Ask Priya whether the invoice from Acme Logistics was paid.",
    "Los profesores piden más recursos para las escuelas públicas.",
]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def make_texts(n: int, seed: int = 16) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < 1000:
            parts.append(rng.choice(PIECES))
        texts.append(" ".join(parts)[:1000])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    import numpy  # noqa: F401  (loaded by the gateway anyway; not part of the recogniser's cost)

    from wardgate.guards import GuardSpec, ScanContext
    from wardgate.guards.pii import PiiGuard

    off = PiiGuard(GuardSpec(type="pii", options={"action": "flag", "names": False}))
    before = rss_kib()
    on = PiiGuard(GuardSpec(type="pii", options={"action": "flag"}))
    added_mib = (rss_kib() - before) / 1024
    ctx = ScanContext(stage="input")
    texts = make_texts(50)
    times: dict[str, list[float]] = {"names on": [], "names off": []}
    for i in range(args.runs):
        text = texts[i % len(texts)]
        for label, guard in (("names on", on), ("names off", off)):
            started = time.perf_counter()
            guard.scan(text, ctx)
            times[label].append((time.perf_counter() - started) * 1000)
    print(f"pii guard, 1,000-character texts, {args.runs} scans each, one thread")
    for label, values in times.items():
        values.sort()
        p95 = values[int(len(values) * 0.95) - 1]
        print(f"  {label:<9} p50 {statistics.median(values):.2f} ms  p95 {p95:.2f} ms")
    ratio = statistics.median(times["names on"]) / statistics.median(times["names off"])
    print(f"  names on / off p50 ratio: {ratio:.2f}x")
    print(f"  RSS added by loading the name recogniser: {added_mib:.1f} MiB")


if __name__ == "__main__":
    main()
