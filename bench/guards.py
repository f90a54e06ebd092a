"""Quality and speed of the learned guards (prompt_injection, harmful), as shipped.

    .venv/bin/python bench/guards.py              # quality on held-out test data + latency
    .venv/bin/python bench/guards.py --no-quality # latency and memory only (no shared data needed)
    .venv/bin/python bench/guards.py --task harmful --split val --no-speed  # the tuning view
    .venv/bin/python bench/guards.py --alarming   # false blocks per slice of the benign-alarming
                                                  # corpus + ordinary requests, through the pipeline

Quality: the shipped weights, through the guards' own scan (original text + normalised
variants), on the ``test`` split of scripts/detector_data.py: never trained on, never tuned on.
TPR and FPR carry Wilson 95% intervals. FPR counts benign texts only (Alpaca, written benign
prompts that merely sound alarming, benign documents); plain harmful requests are reported apart
for the injection detector. Targets: injection TPR >= 95% at FPR <= 2%; harmful TPR >= 90% at
FPR <= 3%.

Speed: p50/p99 of one guard scan at 200/1000/4000 characters, and of the whole default input
pipeline (wardgate.guards.default_guards_config) at the same sizes; memory of the loaded weights.
The machine is shared: figures are measured under whatever load there is.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from wardgate.guards import ScanContext  # noqa: E402
from wardgate.guards.base import Action  # noqa: E402
from wardgate.guards.classifier import load_detector  # noqa: E402
from wardgate.guards.config import GuardSpec  # noqa: E402
from wardgate.guards.harmful import HarmfulRequestGuard  # noqa: E402
from wardgate.guards.injection import PromptInjectionGuard  # noqa: E402

TARGETS = {"injection": (0.95, 0.02), "harmful": (0.90, 0.03)}

# Realistic mixed text: an e-mail thread with some ops and security vocabulary.
FILLER = (
    "Hi team, the deploy of release 4.2 went out at 14:00. We had to kill two stuck workers "
    "and purge the CDN cache afterwards. Customers in the EU region saw elevated latency for "
    "about ten minutes. Action items: Alice checks the alert thresholds, Bob writes the "
    "postmortem, and I will review the firewall rules with security on Thursday. Thanks! "
)


def text_of(size: int) -> str:
    return (FILLER * (size // len(FILLER) + 1))[:size]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[str], object], text: str, repeats: int) -> tuple[float, float]:
    fn(text)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(text)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), percentile(samples, 0.99)


def quality(tasks: tuple[str, ...] = ("injection", "harmful"), split: str = "test") -> None:
    """``split="val"`` is the tuning view (issue 17): the same report on val, never on test."""
    import numpy as np
    from detector_data import OBFUSCATIONS, build, obfuscate
    from train_detectors import fmt, rates

    data = build()
    makers: dict[str, Callable[[], PromptInjectionGuard | HarmfulRequestGuard]] = {
        "injection": lambda: PromptInjectionGuard(GuardSpec(type="prompt_injection")),
        "harmful": lambda: HarmfulRequestGuard(GuardSpec(type="harmful")),
    }
    guards = {task: make() for task, make in makers.items() if task in tasks}
    for task, guard in guards.items():
        thresholds = guard.thresholds
        test = data.of(task, split)
        started = time.perf_counter()
        # What ships: the guard's own scan (readings, graded thresholds, short-text and quote
        # rules), with the role each text arrives in: carriers (e-mails, web pages, tool
        # output) as tool results, everything else as the user's message.
        actions = [guard.scan(e.text, context_of(e)).action for e in test]
        scores = np.array([a is Action.BLOCK for a in actions], dtype=float)
        alerts = np.array([a is not Action.ALLOW for a in actions], dtype=float)
        threshold = 0.5
        labels = np.array([e.label for e in test])
        elapsed = time.perf_counter() - started
        benign_or_pos = np.array([e.label == 1 or e.source != "harmful_plain" for e in test])
        gated = rates(scores[benign_or_pos], labels[benign_or_pos], threshold)
        alerted = rates(alerts[benign_or_pos], labels[benign_or_pos], threshold)
        tpr_goal, fpr_goal = TARGETS[task]
        ok = gated["tpr"] >= tpr_goal and gated["fpr"] <= fpr_goal  # type: ignore[operator]
        print(
            f"\n== {task} (block >= {thresholds.block:.4f}, flag >= {thresholds.flag:.4f}; "
            f"{len(test)} {split} texts in {elapsed:.1f}s)"
        )
        print(f"  {split.upper()} blocked  {fmt(gated)}")
        print(f"  {split.upper()} flagged or blocked  {fmt(alerted)}")
        print(
            f"  target TPR >= {tpr_goal:.0%} at FPR <= {fpr_goal:.0%}: {'MET' if ok else 'NOT MET'}"
        )
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(test):
            source = e.source
            kept_apart = {
                "written/framed_benign",
                "written/lookalike",
                "written/operator",
                "written/everyday",
                "written/multilingual_benign",
                "written/agent_benign",
            }
            if source.startswith("written/") and e.label == 0 and source not in kept_apart:
                source = "written/benign_alarming"
            groups.setdefault(source, []).append(i)
        stage = getattr(guard.detector, "stage", None)
        embedded = (
            np.array([stage.in_band(guard.detector.first.score(e.text)) for e in test])
            if stage is not None
            else np.zeros(len(test), bool)
        )
        if stage is not None:
            print(f"  semantic stage: band {stage.band}; 'MiniLM' = share of texts it read")
        for source, idx in sorted(groups.items()):
            r = rates(scores[idx], labels[idx], threshold)
            kind = "TPR" if r["pos"] else "FPR"
            value = r["tpr"] if r["pos"] else r["fpr"]
            lo, hi = r["tpr_ci"] if r["pos"] else r["fpr_ci"]  # type: ignore[misc]
            share = f"  MiniLM {embedded[idx].mean():.1%}" if stage is not None else ""
            print(
                f"    {source:28s} n={len(idx):5d}  {kind} {value:.3f} [{lo:.3f},{hi:.3f}]{share}"
            )
        if task == "injection":
            payloads = [e for e in test if e.source.startswith(("written/", "generated/direct"))
                        and e.label == 1]  # fmt: skip
            for how in OBFUSCATIONS:
                hits = sum(
                    guard.scan(obfuscate(e.text, how), ScanContext(stage="input")).action == "block"
                    for e in payloads
                )
                print(
                    f"    obfuscated/{how:18s} n={len(payloads):5d}  TPR {hits / len(payloads):.3f}"
                )
        else:
            from detector_data import fill, load_templates

            templates = [t for t in load_templates(Path(data_root_public()))
                         if t[2] == split]  # fmt: skip
            wrapped = [
                fill(t[1], e.text)
                for t, e in zip(templates, [e for e in test if e.label == 1], strict=False)
            ]
            hits = sum(guard.scan(w, ScanContext(stage="input")).action == "block" for w in wrapped)
            print(
                f"    jailbreak-wrapped harmful    n={len(wrapped):5d}  "
                f"flagged {hits / len(wrapped):.3f}"
                "  (not gated: the injection guard's job)"
            )
            cats = {}
            for e in test:
                if e.label == 1:
                    cats[e.category] = cats.get(e.category, 0) + 1
            print(
                f"    {split} harmful items per S-category (keyword-seeded labels):",
                dict(sorted(cats.items(), key=lambda kv: int(kv[0][1:]))),
            )


def alarming(split: str) -> None:
    """False blocks of the default input pipeline, per slice of the benign-alarming corpus.

    Each item is one user message through ``default_guards_config()`` -- what the gateway does
    with it -- so a block by any guard counts, and the blocking code is reported. Ordinary
    requests (the public harmless test split and written everyday chat in test) are measured
    the same way. Short prompts: every item under six words, whatever its slice.
    """
    from alarming_corpus import load, slice_of
    from detector_data import build
    from train_detectors import wilson

    from wardgate.chat import ChatRequest
    from wardgate.guards import GuardPipeline, default_guards_config
    from wardgate.guards.execution import BlockedByGuard

    pipeline = GuardPipeline.from_config(default_guards_config())
    items = [e for e in load() if e.split == split]
    data = build()
    # Ordinary requests of the same split (--alarming val reads val only, for tuning).
    ordinary = [
        e
        for e in data.of("harmful", split)
        if e.label == 0 and e.source in ("alpaca", "written/everyday")
    ]

    async def outcomes(texts: list[str]) -> list[tuple[str | None, int]]:
        out: list[tuple[str | None, int]] = []
        for text in texts:
            request = ChatRequest.model_validate(
                {"model": "local", "messages": [{"role": "user", "content": text}]}
            )
            try:
                result = await pipeline.check_request(request)
                flags = sum(d.get("action") == "flag" for d in result.decisions)
                out.append((None, flags))
            except BlockedByGuard as exc:
                out.append((exc.code, 0))
        return out

    def line(name: str, results: list[tuple[str | None, int]]) -> str:
        n = len(results)
        blocked = sum(code is not None for code, _ in results)
        flagged = sum(code is None and flags > 0 for code, flags in results)
        lo, hi = wilson(blocked, n)
        codes: dict[str, int] = {}
        for code, _ in results:
            if code is not None:
                codes[code] = codes.get(code, 0) + 1
        return (
            f"    {name:26s} n={n:4d}  blocked {blocked:3d}  FPR {blocked / max(n, 1):.3f} "
            f"[{lo:.3f},{hi:.3f}]  flagged {flagged:3d}  {codes if codes else ''}"
        )

    started = time.perf_counter()
    try:
        results = asyncio.run(outcomes([e.text for e in items]))
        plain = asyncio.run(outcomes([e.text for e in ordinary]))
    finally:
        pipeline.close()
    print(f"\n== benign-alarming corpus, {split} split, default input pipeline "
          f"({len(items) + len(ordinary)} texts in {time.perf_counter() - started:.1f}s)")
    print(line("ALL benign-alarming", results))
    by_slice: dict[str, list[tuple[str | None, int]]] = {}
    for e, r in zip(items, results, strict=True):
        by_slice.setdefault(slice_of(e), []).append(r)
    for name, rows in sorted(by_slice.items()):
        print(line(name, rows))
    short = [r for e, r in zip(items, results, strict=True) if len(e.text.split()) < 6]
    print(line("any slice, < 6 words", short))
    print(line("ordinary (alpaca+everyday)", plain))


def context_of(example: object) -> ScanContext:
    """The role a test text arrives in: carriers as tool results, the rest as user messages."""
    source = str(getattr(example, "source", ""))
    carried = source.startswith(("indirect", "agent_doc"))
    return ScanContext(stage="input", role="tool" if carried else "user")


def data_root_public() -> str:
    from detector_data import DEFAULT_PUBLIC

    return str(DEFAULT_PUBLIC)


def speed(repeats: int) -> None:
    ctx = ScanContext(stage="input", role="user")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    injection = PromptInjectionGuard(GuardSpec(type="prompt_injection"))
    harmful = HarmfulRequestGuard(GuardSpec(type="harmful"))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def first_stage(detector: object) -> object:
        return getattr(detector, "first", detector)

    weights = sum(
        d.weights.nbytes  # type: ignore[attr-defined]
        + (d.category_weights.nbytes if d.category_weights is not None else 0)  # type: ignore[attr-defined]
        + (d.word_weights.nbytes if d.word_weights is not None else 0)  # type: ignore[attr-defined]
        for d in (first_stage(injection.detector), first_stage(harmful.detector))
    )
    encoder = getattr(harmful.detector, "encoder", None)
    minilm = encoder.nbytes if encoder is not None else 0
    print("\n== memory")
    print(f"  MiniLM (semantic stage) weights in memory: {minilm / 1e6:.1f} MB")
    print(
        f"  n-gram weights in memory {weights / 1e6:.2f} MB; traced after load "
        f"{current / 1e6:.2f} MB (peak while loading {peak / 1e6:.2f} MB, includes MiniLM "
        f"when installed); max RSS grew {(rss_after - rss_before) / 1e3:.1f} MB"
    )
    load_times = []
    for _ in range(5):
        start = time.perf_counter()
        load_detector("injection")
        load_times.append((time.perf_counter() - start) * 1000)
    print(f"  load + SHA-256 verify of one detector: p50 {statistics.median(load_times):.1f} ms")

    print(f"\n== latency, ms (p50 / p99 over {repeats} calls; shared 2-core machine, under load)")
    for name, guard in (("prompt_injection", injection), ("harmful", harmful)):
        row = [
            timed(lambda t, g=guard: g.scan(t, ctx), text_of(n), repeats) for n in (200, 1000, 4000)
        ]
        print(
            f"  {name:28s} "
            + "  ".join(
                f"{n}: {p50:.2f}/{p99:.2f}"
                for n, (p50, p99) in zip((200, 1000, 4000), row, strict=True)
            )
        )
    encoder = getattr(harmful.detector, "encoder", None)
    if encoder is not None:
        row = [timed(lambda t: encoder.encode([t]), text_of(n), repeats) for n in (200, 1000)]
        print(
            f"  {'MiniLM, one unsure window':28s} "
            + "  ".join(
                f"{n}: {p50:.2f}/{p99:.2f}" for n, (p50, p99) in zip((200, 1000), row, strict=True)
            )
            + "  (added only when the n-gram score is in the band)"
        )
    from wardgate.guards.normalise import variants

    row = [timed(variants, text_of(n), repeats) for n in (200, 1000, 4000)]
    print(
        f"  {'normaliser variants (shared)':28s} "
        + "  ".join(
            f"{n}: {p50:.2f}/{p99:.2f}"
            for n, (p50, p99) in zip((200, 1000, 4000), row, strict=True)
        )
    )
    pipeline_latency(repeats)


def pipeline_latency(repeats: int) -> None:
    from wardgate.chat import ChatRequest
    from wardgate.guards import GuardPipeline, default_guards_config
    from wardgate.guards.execution import BlockedByGuard

    try:
        pipeline = GuardPipeline.from_config(default_guards_config())
    except Exception as exc:  # the default pipeline has optional dependencies (Presidio)
        print(f"  default input pipeline: not measured ({type(exc).__name__}: {exc})")
        return

    async def run() -> None:
        for size in (200, 1000, 4000):
            request = ChatRequest.model_validate(
                {"model": "local", "messages": [{"role": "user", "content": text_of(size)}]}
            )
            await pipeline.check_request(request)
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                await pipeline.check_request(request)
                samples.append((time.perf_counter() - start) * 1000)
            print(
                f"  default input pipeline @ {size:4d} chars: p50 {statistics.median(samples):.2f}"
                f" / p99 {percentile(samples, 0.99):.2f}"
            )

    async def everyday() -> None:
        """Real chat questions, each new (no embedding cache hits): the cascade's real cost."""
        path = ROOT / "scripts" / "data" / "benign_everyday.txt"
        lines = [x for x in path.read_text().splitlines() if x and not x.startswith("#")]
        samples, blocked = [], 0
        for line in lines[:repeats]:
            request = ChatRequest.model_validate(
                {"model": "local", "messages": [{"role": "user", "content": line}]}
            )
            start = time.perf_counter()
            try:
                await pipeline.check_request(request)
            except BlockedByGuard:
                blocked += 1  # a false alarm; timed all the same
            samples.append((time.perf_counter() - start) * 1000)
        print(
            f"  default input pipeline, {len(samples)} everyday chat questions (~30% reach "
            f"MiniLM): p50 {statistics.median(samples):.2f} / p90 {percentile(samples, 0.9):.2f}"
            f" / p99 {percentile(samples, 0.99):.2f} ms ({blocked} blocked; these lines are "
            "partly training data, so this measures time, not quality)"
        )

    try:
        asyncio.run(run())
        asyncio.run(everyday())
    finally:
        pipeline.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-speed", action="store_true", help="quality only")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument(
        "--task",
        choices=("injection", "harmful"),
        default=None,
        help="quality of one detector only (default: both)",
    )
    parser.add_argument(
        "--alarming",
        nargs="?",
        const="test",
        choices=("train", "val", "test"),
        help="only the false-block report on the benign-alarming corpus (default split: test)",
    )
    parser.add_argument(
        "--split",
        choices=("val", "test"),
        default="test",
        help="the quality report's split (val: the tuning view; test: read once, to decide)",
    )
    args = parser.parse_args()
    if args.alarming:
        alarming(args.alarming)
        return
    if not args.no_quality:
        quality((args.task,) if args.task else ("injection", "harmful"), args.split)
    if not args.no_speed:
        speed(args.repeats)


if __name__ == "__main__":
    main()
