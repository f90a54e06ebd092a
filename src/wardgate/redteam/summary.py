"""Turn stored attempts into the numbers reports show: per-category rates and comparisons.

Attack categories give an attack success rate (ASR); the ``benign`` category (items whose check
is ``over_refusal``) gives the false-refusal rate instead and never enters the overall ASR.
Attempts that ended in an error are counted apart and left out of every rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wardgate.redteam.stats import mcnemar, rate_of, relative_reduction
from wardgate.redteam.suites import BENIGN_KINDS

OVERALL = "overall"
FALSE_REFUSAL = "false_refusal"


def _is_benign(record: Mapping[str, Any]) -> bool:
    return record.get("check") in BENIGN_KINDS


def summarise(meta: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The run's numbers; ``records`` should be the latest record per key."""
    rows = list(records)
    ok = [r for r in rows if r.get("error") is None]
    outcomes: dict[str, list[bool]] = defaultdict(list)
    labels: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"owasp": set(), "atlas": set()})
    per_item: dict[str, list[bool]] = defaultdict(list)
    for r in ok:
        outcomes[r["category"]].append(bool(r["success"]))
        per_item[r["item_id"]].append(bool(r["success"]))
        labels[r["category"]]["owasp"].add(str(r.get("owasp") or "n/a"))
        if r.get("atlas"):
            labels[r["category"]]["atlas"].add(str(r["atlas"]))
    benign_cats = {r["category"] for r in ok if _is_benign(r)}
    blocked: dict[str, int] = defaultdict(int)
    for r in ok:
        blocked[r["category"]] += bool(r.get("blocked"))
    categories = {}
    for cat, values in sorted(outcomes.items()):
        categories[cat] = {
            "kind": "benign" if cat in benign_cats else "attack",
            "owasp": sorted(labels[cat]["owasp"]),
            "atlas": sorted(labels[cat]["atlas"]),
            #: Attempts a guard (or a vendor filter) refused outright.
            "blocked": blocked[cat],
            **rate_of(values).as_dict(),
        }
    attack = [bool(r["success"]) for r in ok if not _is_benign(r)]
    benign = [bool(r["success"]) for r in ok if _is_benign(r)]
    items: dict[str, dict[str, Any]] = {}
    for r in ok:
        entry = items.setdefault(r["item_id"], {"category": r["category"], "successes": 0, "n": 0})
        entry["successes"] += bool(r["success"])
        entry["n"] += 1
    tokens = {"prompt": 0, "completion": 0, "attacker": 0, "judge": 0}
    model_s = 0.0
    for r in ok:
        usage = r.get("usage") or {}
        tokens["prompt"] += int(usage.get("prompt_tokens") or 0)
        tokens["completion"] += int(usage.get("completion_tokens") or 0)
        tokens["attacker"] += int(usage.get("attacker_tokens") or 0)
        tokens["judge"] += int(usage.get("judge_tokens") or 0)
        model_s += float(usage.get("latency_s") or 0.0)
    methods: dict[str, int] = defaultdict(int)
    for r in ok:
        methods[str(r.get("method"))] += 1
    return {
        "target": meta.get("target"),
        "suites": meta.get("suites"),
        "params": meta.get("params"),
        "judges": meta.get("judges"),
        "attempts": len(rows),
        "errors": len(rows) - len(ok),
        "error_codes": _count(r["error"]["code"] for r in rows if r.get("error")),
        "categories": categories,
        OVERALL: rate_of(attack).as_dict(),
        FALSE_REFUSAL: rate_of(benign).as_dict(),
        "items": items,
        "tokens": tokens,
        "model_s": round(model_s, 3),
        "sessions": meta.get("sessions", []),
        "judge_methods": dict(sorted(methods.items())),
    }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(out)


def compare(
    names: Sequence[str], runs: Sequence[Mapping[str, Mapping[str, Any]]]
) -> dict[str, Any]:
    """Compare each run with the first (the baseline) on the attempts both finished.

    ``runs`` are ``{key: record}`` maps (latest record per key). Pairs are matched on the
    attempt key (item id and repeat, hence the same seed and temperature).
    """
    if len(runs) < 2:
        raise ValueError("compare needs at least two runs")
    base_name, base = names[0], runs[0]
    comparisons = []
    for name, other in zip(names[1:], runs[1:], strict=True):
        keys = sorted(k for k in base.keys() & other.keys()
                      if base[k].get("error") is None and other[k].get("error") is None)
        by_cat: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
        attack_pairs: list[tuple[bool, bool]] = []
        benign_pairs: list[tuple[bool, bool]] = []
        diffs = []
        for k in keys:
            a, b = base[k], other[k]
            pair = (bool(a["success"]), bool(b["success"]))
            by_cat[a["category"]].append(pair)
            (benign_pairs if _is_benign(a) else attack_pairs).append(pair)
            if pair[0] != pair[1]:
                diffs.append({"key": k, "item_id": a["item_id"], "category": a["category"],
                              base_name: pair[0], name: pair[1],
                              "blocked": bool(b.get("blocked")),
                              "block_code": b.get("block_code")})
        comparisons.append({
            "baseline": base_name, "other": name, "pairs": len(keys),
            "categories": {cat: _paired(pairs) for cat, pairs in sorted(by_cat.items())},
            OVERALL: _paired(attack_pairs),
            FALSE_REFUSAL: _paired(benign_pairs),
            "differences": diffs,
        })
    return {"targets": list(names), "comparisons": comparisons}


def _paired(pairs: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    a = rate_of(p[0] for p in pairs)
    b = rate_of(p[1] for p in pairs)
    reduction = relative_reduction(a.value, b.value)
    return {
        "baseline": a.as_dict(), "other": b.as_dict(),
        "difference": round(b.value - a.value, 6),
        "relative_reduction": None if reduction is None else round(reduction, 6),
        "mcnemar": mcnemar(pairs).as_dict(),
    }


def judge_line(judges: Mapping[str, Any] | None) -> str:
    """"harmful judge: NAME (agreement with human labels ...)" as every report prints it."""
    judges = judges or {}
    name = judges.get("harmful", "unknown")
    agreement = judges.get("harmful_agreement")
    if isinstance(agreement, Mapping):
        shown = (f"agreement with human labels {100 * float(agreement['agreement']):.1f}%, "
                 f"kappa {float(agreement['kappa']):.2f}, n={agreement['n']} held-out")
    else:
        shown = "agreement not measured"
    return f"harmful judge: {name} ({shown})"

