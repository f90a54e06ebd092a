"""Output moderation: quality on held-out answers, and what it costs per answer window.

    .venv/bin/python bench/output_moderation.py                # quality + latency
    .venv/bin/python bench/output_moderation.py --no-latency   # quality only
    .venv/bin/python bench/output_moderation.py --gateway      # + the probe through the default
                                                               #   input guards (what they stop)

Quality uses only rows the trainer never fitted or tuned on (``split == "test"``): the
LatentJailbreak-shaped probe answers of SmolLM2 (``probe``), its answers to the benign
prompts about groups and hate of the test families (``about``), to Alpaca test instructions
(``alpaca``), and the judges' labelled SmolLM2 answers of their test split. The judge is the
hand label of each answer (``scripts/data/output_moderation/smollm2_labels.tsv``, rubric in
that folder's README; for the judges' set, its own labels: a complied-with harmful request is
unsafe). Wilson 95 % intervals.

Latency: p50 over repeated scans of fresh text (no cache hits), per 1,000 characters of a whole
answer and per streaming window (``hold + step_chars`` characters), and a 1,000-character
answer streamed in 4-character chunks through the default output guards with and without it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from output_moderation_data import Row, judge_set_rows, read_answers, read_labels  # noqa: E402

from wardgate.chat import ChatRequest  # noqa: E402
from wardgate.guards import GuardSpec, ScanContext  # noqa: E402
from wardgate.guards.base import Action, RequestState  # noqa: E402
from wardgate.guards.config import StreamingConfig  # noqa: E402
from wardgate.guards.defaults import default_guards_config  # noqa: E402
from wardgate.guards.output_moderation import OutputModerationGuard  # noqa: E402
from wardgate.guards.pipeline import GuardPipeline  # noqa: E402
from wardgate.guards.registry import GuardRegistry  # noqa: E402
from wardgate.guards.streaming import OutputScanner  # noqa: E402
from wardgate.redteam.stats import Rate, wilson  # noqa: E402


def pct(rate: Rate) -> str:
    return (f"{100 * rate.value:5.1f}% [{100 * rate.low:4.1f}, {100 * rate.high:5.1f}] "
            f"({rate.successes}/{rate.n})")


def request_of(text: str) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}]})


def action(guard: OutputModerationGuard, row: Row) -> Action:
    state = RequestState()
    guard.prepare(request_of(row.request or "hi"), state)
    ctx = ScanContext(stage="output", source="response", state=state)
    return guard.scan(row.answer, ctx).action


def test_sets() -> dict[str, list[tuple[Row, str]]]:
    """Held-out rows by set, each with its judge label (hate / harm / benign)."""
    labels = read_labels()
    sets: dict[str, list[tuple[Row, str]]] = {"probe": [], "about": [], "alpaca": [],
                                              "judges": []}
    for item in read_answers():
        label = labels.get(item["id"])
        if item["split"] != "test" or label is None:
            continue
        row = Row(item["request"], item["answer"], int(label != "benign"), "test", item["set"])
        sets[item["set"]].append((row, label))
    for row in judge_set_rows():
        if row.split == "test":
            sets["judges"].append((row, "harm" if row.label else "benign"))
    return sets


def quality(guard: OutputModerationGuard) -> None:
    sets = test_sets()
    print(f"thresholds: flag {guard.flag_at:.3f}, block {guard.block_at:.3f}")
    print(f"{'test set':44s} {'blocked':30s} {'blocked or flagged':30s}")
    all_benign: list[Action] = []

    def line(name: str, acts: list[Action]) -> None:
        blocked = wilson(sum(a is Action.BLOCK for a in acts), len(acts))
        either = wilson(sum(a in (Action.BLOCK, Action.FLAG) for a in acts), len(acts))
        print(f"{name:44s} {pct(blocked):30s} {pct(either):30s}")

    for name, rows in sets.items():
        acts = [action(guard, row) for row, _ in rows]
        if name == "probe":
            line("probe: every answer (garak's 'blocked')", acts)
        unsafe = [a for a, (_, lab) in zip(acts, rows, strict=True) if lab != "benign"]
        benign = [a for a, (_, lab) in zip(acts, rows, strict=True) if lab == "benign"]
        all_benign += benign
        if unsafe:
            line(f"{name}: judged unsafe (TPR)", unsafe)
        line(f"{name}: judged benign (FPR)", benign)
    line("ALL benign answers (FPR; target <= 1%)", all_benign)


def gateway_probe() -> None:
    """The probe's requests through the default input guards: what they stop before a model."""
    from wardgate.guards.base import GuardEnvironment  # noqa: F401  (import cost outside timing)

    pipeline = GuardPipeline.from_config(default_guards_config())
    rows = [row for row, _ in test_sets()["probe"]]
    blocked = 0
    for row in rows:
        try:
            asyncio.run(pipeline.check_request(request_of(row.request)))
        except Exception as exc:  # GuardBlocked
            blocked += getattr(exc, "code", None) is not None
    pipeline.close()
    print(f"probe requests blocked by the default input guards: {pct(wilson(blocked, len(rows)))}")


def p50(fn: Callable[[int], object], repeats: int) -> float:
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def latency(guard: OutputModerationGuard, repeats: int) -> None:
    rng = random.Random(0)
    filler = ("the council approved a new plan for housing and transport while residents "
              "asked questions about schools parks taxes buses and the library opening hours")
    words = filler.split(" ")

    def text(n: int, k: int) -> str:
        out = f"{k} "
        while len(out) < n:
            out += rng.choice(words) + " "
        return out[:n]

    state = RequestState()
    guard.prepare(request_of("Summarise the council meeting for me."), state)
    ctx = ScanContext(stage="output", source="response", state=state)
    hold = guard.hold_chars
    window = 192 + StreamingConfig().step_chars  # the default pipeline's hold + one step
    for n, label in ((window, f"one stream window ({window} chars)"), (1000, "1,000 chars whole")):
        texts = [text(n, k) for k in range(repeats)]
        ms = p50(lambda k, texts=texts: guard.scan(texts[k], ctx), repeats)
        print(f"output_moderation scan, {label:34s} p50 {ms:6.3f} ms")
    answer = text(1000, -1)
    registry = GuardRegistry()
    outputs = default_guards_config().output

    def stream(with_guard: bool) -> float:
        specs = outputs + ([GuardSpec(type="output_moderation")] if with_guard else [])
        guards = [registry.resolve(s.type)(s) for s in specs]

        def run(k: int) -> None:
            scanner = OutputScanner(guards, state, StreamingConfig())
            body = str(k) + answer
            for i in range(0, len(body), 4):
                scanner.feed(body[i : i + 4])
            scanner.finish()

        return p50(run, max(20, repeats // 10))

    without, with_ = stream(False), stream(True)
    print(f"1,000-char answer streamed in 4-char chunks, default output guards: p50 "
          f"{without:.2f} ms; + output_moderation {with_:.2f} ms (+{with_ - without:.2f} ms); "
          f"hold {hold} chars (pipeline hold unchanged at 192)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--gateway", action="store_true")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    guard = OutputModerationGuard(GuardSpec(type="output_moderation"))
    quality(guard)
    if args.gateway:
        gateway_probe()
    if not args.no_latency:
        latency(guard, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
