"""Held-out safety evaluation of a GGUF model, through the red-team harness itself.

A white-box result is only worth what its judge is worth, so the numbers here come from the
same code path as ``wardgate redteam run``: the model is served by the llama.cpp backend the
gateway uses (with its chat template), each held-out instruction is one suite item, and the
red-team judge panel decides, with the harness's *default* judge (``auto``: the (request,
answer) judge with the best measured agreement with human labels on the shipped judge test
split — ``pair_minilm`` where its weights load, else ``rules``). On harmful items "refused"
is that judge's ``refuse`` label; on harmless items over-refusal is the harness's refusal
detector. :func:`judge_description` names the judge and its measured agreement; every report
carries it. Runs are resumable (the harness's run directory).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

JUDGE: Final = "auto"


def judge_description() -> dict[str, Any]:
    """What the default panel resolves to here (judge name, agreement with human labels)."""
    from wardgate.redteam.harness import build_panel

    described: dict[str, Any] = build_panel(JUDGE).describe()
    agreement = described.get("harmful_agreement") or {}
    described["note"] = (
        f"red-team harness default judge `{JUDGE}` → `{described['harmful']}` on harmful items"
        + (f" (agreement {agreement['agreement']:.3f}, κ {agreement['kappa']:.2f} with human "
           f"labels, n={agreement['n']}, {agreement.get('set', '')} {agreement.get('split', '')}"
           " split)" if agreement.get("agreement") is not None else "")
        + "; over-refusal on harmless items by the harness's refusal detector (rules)")
    return described


@dataclass(frozen=True, slots=True)
class EvalSettings:
    max_tokens: int = 64
    seed: int = 0
    n_threads: int = 2
    n_ctx: int = 1024
    #: Offline work has no client waiting: a generous per-answer limit, so a busy machine
    #: (nice'd run beside other jobs) slows the run down instead of failing it; the serving
    #: default (60 s) is for live traffic.
    timeout_s: float = 1800.0


def target_for(gguf: Path, name: str, settings: EvalSettings) -> Any:
    from wardgate.config import ModelConfig
    from wardgate.redteam.targets import BackendTarget

    config = ModelConfig(name=name, backend="llamacpp", path=str(gguf), n_ctx=settings.n_ctx,
                         n_threads=settings.n_threads, timeout_s=settings.timeout_s)  # fmt: skip
    target = BackendTarget.from_config(config)
    # The serving stall watchdog (no token for 2 minutes) is for live traffic; a starved
    # offline job is slow, not broken.
    target.backend.stall_s = max(target.backend.stall_s, settings.timeout_s)
    return target


def evaluate(gguf: Path, suite: Path, run_dir: Path, *, name: str, settings: EvalSettings,
             progress_factory: Any = None) -> dict[str, Any]:  # fmt: skip
    """Run ``suite`` against ``gguf`` (resuming ``run_dir``); the harness summary."""
    from wardgate.redteam.harness import Selection, build_panel, load_run, run_campaign
    from wardgate.redteam.runner import RunSettings

    target = target_for(gguf, name, settings)
    run_settings = RunSettings(seed=settings.seed, max_tokens=settings.max_tokens,
                               timeout_s=settings.timeout_s)
    asyncio.run(run_campaign(target, Selection(suites=(str(suite),)), run_dir, run_settings,
                             panel=build_panel(JUDGE), progress_factory=progress_factory))
    _, _, summary = load_run(run_dir)
    return summary


def headline(run_dir: Path) -> dict[str, Any]:
    """Harmful: attack success rate and refusal rate; benign: over-refusal — Wilson 95 %."""
    from wardgate.redteam.harness import load_run
    from wardgate.redteam.stats import wilson

    _, records, _ = load_run(run_dir)
    done = [r for r in records if r.get("error") is None]
    harmful = [r for r in done if r.get("category") == "harmful"]
    benign = [r for r in done if r.get("category") == "benign"]
    return {
        "asr": wilson(sum(bool(r["success"]) for r in harmful), len(harmful)).as_dict(),
        "harmful_refused": wilson(sum(bool(r["refused"]) for r in harmful), len(harmful)).as_dict(),
        "over_refusal": wilson(sum(bool(r["refused"]) for r in benign), len(benign)).as_dict(),
        "errors": len(records) - len(done),
    }


def refusal_counts(run_dir: Path) -> dict[str, list[tuple[str, bool, bool]]]:
    """Per item key: (category, refused, success) — for paired tests between runs."""
    from wardgate.redteam.harness import load_run

    _, records, _ = load_run(run_dir)
    out: dict[str, list[tuple[str, bool, bool]]] = {}
    for r in records:
        out.setdefault(r["key"], []).append(
            (str(r["category"]), bool(r.get("refused")), bool(r.get("success"))))
    return out


def paired(base_dir: Path, other_dir: Path, category: str) -> dict[str, Any]:
    """McNemar on attack success for the items both runs share, in ``category``."""
    from wardgate.redteam.stats import mcnemar

    a, b = refusal_counts(base_dir), refusal_counts(other_dir)
    pairs = [(a[k][0][2], b[k][0][2]) for k in a if k in b and a[k][0][0] == category]
    return mcnemar(pairs).as_dict() | {"pairs": len(pairs)}


def items_of(records: Sequence[dict[str, Any]], category: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("category") == category]
