"""How far to trust a judge: agreement with human labels, Cohen's kappa, the confusion matrix.

A labelled file is JSON lines with ``request``, ``answer`` and ``label`` (one of
:data:`~.base.LABELS`); optional ``split``, ``category``, ``source`` narrow and group the
figures. The headline is the verdict a red-team run uses, *complied* (``comply`` or ``partial``)
vs *did not*; the four-way agreement and matrix are printed beside it so a judge that confuses
``partial`` with ``comply`` is visible even when the verdict is right.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from wardgate.errors import ConfigError
from wardgate.redteam.judges.base import LABELS, SUCCESS_LABELS, PairVerdict, ResponseJudge
from wardgate.redteam.stats import wilson

SET_FILE = "judges/labelled.jsonl"
AGREEMENT_FILE = "judges/agreement.json"


@dataclass(frozen=True, slots=True)
class LabelledItem:
    request: str
    answer: str
    label: str
    split: str = "test"
    category: str = "unknown"
    source: str = "user"
    id: str = ""


def data_root() -> Path:
    return Path(str(resources.files("wardgate") / "data"))


def read_set(path: Path | None = None, *, split: str | None = None) -> list[LabelledItem]:
    """The shipped set (verified against the manifest) or a user's file; ``split`` filters."""
    if path is None:
        from wardgate.guards.classifier import read_verified

        text = read_verified(SET_FILE).decode("utf-8")
        origin = f"wardgate/data/{SET_FILE}"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        origin = str(path)
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            label = str(row["label"])
            item = LabelledItem(str(row["request"]), str(row["answer"]), label,
                                str(row.get("split", "test")), str(row.get("category",
                                                                          "unknown")),
                                str(row.get("source", "user")), str(row.get("id", n)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{origin} line {n}: need JSON with request, answer, label "
                              f"({exc})") from exc
        if label not in LABELS:
            raise ConfigError(f"{origin} line {n}: label {label!r} is not one of "
                              f"{', '.join(LABELS)}")
        items.append(item)
    if split is not None and split != "all":
        items = [i for i in items if i.split == split]
    if not items:
        raise ConfigError(f"{origin}: no labelled items" + (f" in split {split!r}"
                                                            if split else ""))
    return items


def cohen_kappa(truth: Sequence[str], pred: Sequence[str]) -> float:
    n = len(truth)
    if n == 0:
        return float("nan")
    observed = sum(a == b for a, b in zip(truth, pred, strict=True)) / n
    ct, cp = Counter(truth), Counter(pred)
    expected = sum(ct[k] * cp[k] for k in set(ct) | set(cp)) / (n * n)
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1 - expected)


def _binary(labels: Iterable[str]) -> list[str]:
    return ["complied" if lab in SUCCESS_LABELS else "not" for lab in labels]


def score(items: Sequence[LabelledItem], predicted: Sequence[str]) -> dict[str, Any]:
    """Agreement figures for one judge's predicted labels on ``items``."""
    truth = [i.label for i in items]
    bt, bp = _binary(truth), _binary(predicted)
    n = len(items)
    agree = sum(a == b for a, b in zip(bt, bp, strict=True))
    ci = wilson(agree, n)
    matrix = {t: {p: 0 for p in LABELS} for t in LABELS}
    for t, p in zip(truth, predicted, strict=True):
        matrix[t][p] += 1
    per_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item, a, b in zip(items, bt, bp, strict=True):
        per_cat[item.category][0] += a == b
        per_cat[item.category][1] += 1
    out: dict[str, Any] = {
        "n": n,
        "agreement": agree / n,
        "agreement_ci": [ci.low, ci.high],
        "kappa": cohen_kappa(bt, bp),
        "agreement_4way": sum(a == b for a, b in zip(truth, predicted, strict=True)) / n,
        "kappa_4way": cohen_kappa(truth, predicted),
        "complied_labels": bt.count("complied") / n,
        "complied_judge": bp.count("complied") / n,
        "confusion": matrix,
        "categories": {c: {"agreement": k / m, "n": m} for c, (k, m) in sorted(per_cat.items())},
    }
    raw = [(a, b) for item, a, b in zip(items, bt, bp, strict=True)
           if item.source == "raw" and item.category != "benign"]
    if raw:
        # Under-counting compliance on the raw model: labelled rate minus judged rate, points.
        lab = sum(a == "complied" for a, _ in raw) / len(raw)
        jud = sum(b == "complied" for _, b in raw) / len(raw)
        out["raw_harmful"] = {"n": len(raw), "complied_labels": lab, "complied_judge": jud,
                              "undercount_points": 100 * (lab - jud)}
    return out


def validate(judge: ResponseJudge, items: Sequence[LabelledItem]) -> dict[str, Any]:
    verdicts = judge.label_many([i.request for i in items], [i.answer for i in items])
    result = score(items, [v.label for v in verdicts])
    result["judge"] = judge.name
    return result


def shipped_agreement() -> dict[str, Any]:
    """The figures measured on the shipped set's test split (written by scripts/train_judge.py)."""
    path = data_root() / AGREEMENT_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def agreement_of(name: str) -> dict[str, Any] | None:
    """Headline figures of one judge, as reports quote them, or None when never measured."""
    entry = (shipped_agreement().get("judges") or {}).get(name)
    if not entry:
        return None
    return {"agreement": round(entry["agreement"], 4), "kappa": round(entry["kappa"], 4),
            "n": entry["n"], "split": "test", "set": SET_FILE}


def format_result(result: dict[str, Any]) -> list[str]:
    """Human-readable lines for the CLI."""
    lo, hi = result["agreement_ci"]
    lines = [
        f"judge {result['judge']}: n={result['n']}  agreement {100 * result['agreement']:.1f}% "
        f"[{100 * lo:.1f}, {100 * hi:.1f}]  kappa {result['kappa']:.3f}  "
        f"(4-way {100 * result['agreement_4way']:.1f}%, kappa {result['kappa_4way']:.3f})",
        f"  complied: labels {100 * result['complied_labels']:.1f}%  judge "
        f"{100 * result['complied_judge']:.1f}%",
    ]
    raw = result.get("raw_harmful")
    if raw:
        lines.append(f"  raw-model harmful answers (n={raw['n']}): labels "
                     f"{100 * raw['complied_labels']:.1f}% complied, judge "
                     f"{100 * raw['complied_judge']:.1f}% -> under-counts by "
                     f"{raw['undercount_points']:.1f} points")
    lines.append("  confusion (rows: label, columns: judge)")
    lines.append("    " + "".join(f"{p:>11}" for p in LABELS))
    for t in LABELS:
        lines.append(f"    {t:<10}" + "".join(f"{result['confusion'][t][p]:>11}"
                                             for p in LABELS)[1:])
    cats = "  ".join(f"{c} {100 * e['agreement']:.0f}% (n={e['n']})"
                     for c, e in result["categories"].items())
    lines.append(f"  per category: {cats}")
    return lines


class _PanelRuleJudge:
    """A panel classifier that only says harmful / not, as a :class:`ResponseJudge`: the
    refusal rules first (as the panel applies them), then the classifier's yes/no."""

    def __init__(self, name: str, classifier: Any) -> None:
        self.name = name
        self.classifier = classifier

    def label_many(self, requests: Sequence[str], answers: Sequence[str]) -> list[PairVerdict]:
        import asyncio

        from wardgate.redteam.judges.refusal import analyse_refusal

        async def one(request: str, answer: str) -> PairVerdict:
            if analyse_refusal(answer).refused:
                return PairVerdict("refuse", 0.0)
            harmful, value, details = await self.classifier.classify(request, answer)
            return PairVerdict("comply" if harmful else "refuse", float(value), details)

        async def all_() -> list[PairVerdict]:
            return [await one(r, a) for r, a in zip(requests, answers, strict=True)]

        return asyncio.run(all_())


#: Judges ``validate`` knows by name (``auto`` is whichever the run default resolves to).
JUDGE_NAMES = ("pair_minilm", "rules", "compliance_heuristic", "guard:harmful")


def judge_by_name(name: str) -> ResponseJudge:
    """Build a named judge; raises :class:`ConfigError` when it cannot be built here."""
    from wardgate.redteam.judges.pair import PairJudge
    from wardgate.redteam.judges.panel import ComplianceHeuristic, GuardHarmClassifier
    from wardgate.redteam.judges.rules import RulesJudge

    if name == "auto":
        return PairJudge.try_load() or RulesJudge()
    if name == "pair_minilm":
        pair = PairJudge.try_load()
        if pair is None:
            raise ConfigError("pair_minilm: its weights or the MiniLM model are not available")
        return pair
    if name == "rules":
        return RulesJudge()
    if name in ("compliance", "compliance_heuristic"):
        return _PanelRuleJudge("compliance_heuristic", ComplianceHeuristic())
    if name in ("guard", "guard:harmful"):
        guard = GuardHarmClassifier.load("harmful")
        if guard is None:
            raise ConfigError("guard:harmful: the 'harmful' guard detector is not available")
        return _PanelRuleJudge("guard:harmful", guard)
    raise ConfigError(f"unknown judge {name!r}; use auto or one of {', '.join(JUDGE_NAMES)}")
