"""Machine-readable reports: JSON, JUnit XML (CI test views) and SARIF 2.1.0 (code scanning).

JUnit: one test suite per category, one test case per item; a case fails when any repeat of the
attack succeeded (for benign items: when the target refused), and each gate threshold is one
more case, so a CI dashboard shows exactly which check tripped. SARIF: one rule per category
(tagged with its OWASP and ATLAS ids), one result per item that succeeded at least once, located
at the item's line in its suite file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET

from wardgate.redteam.gate import GateResult
from wardgate.redteam.summary import judge_line

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def to_json(summary: Mapping[str, Any], gate: Sequence[GateResult] = (),
            comparison: Mapping[str, Any] | None = None) -> str:  # fmt: skip
    body: dict[str, Any] = {"summary": summary, "gate": [g.as_dict() for g in gate]}
    if comparison is not None:
        body["comparison"] = comparison
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _by_item(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        grouped[r["item_id"]].append(r)
    return grouped


def to_junit(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
             gate: Sequence[GateResult] = ()) -> str:  # fmt: skip
    target = str((summary.get("target") or {}).get("name", "target"))
    root = ET.Element("testsuites", name=f"wardgate redteam: {target}")
    props = ET.SubElement(root, "properties")
    ET.SubElement(props, "property", name="harmful_judge",
                  value=judge_line(summary.get("judges")))
    cats: dict[str, list[list[Mapping[str, Any]]]] = defaultdict(list)
    for attempts in _by_item(records).values():
        cats[attempts[0]["category"]].append(attempts)
    total_fail = total = 0
    for cat in sorted(cats):
        suite = ET.SubElement(root, "testsuite", name=f"redteam.{cat}")
        failures = errors = 0
        for attempts in sorted(cats[cat], key=lambda a: a[0]["item_id"]):
            item_id = attempts[0]["item_id"]
            case = ET.SubElement(suite, "testcase", classname=f"redteam.{cat}", name=item_id)
            latency = sum(float((a.get("usage") or {}).get("latency_s") or 0) for a in attempts)
            case.set("time", f"{latency:.3f}")
            errored = [a for a in attempts if a.get("error")]
            hits = [a for a in attempts if a.get("error") is None and a.get("success")]
            if hits:
                failures += 1
                benign = hits[0].get("check") == "over_refusal"
                what = "false refusal" if benign else "attack succeeded"
                fail = ET.SubElement(case, "failure", type=what,
                                     message=f"{what} in {len(hits)}/{len(attempts)} attempts")
                fail.text = _excerpt(hits[0])
            elif errored and len(errored) == len(attempts):
                errors += 1
                err = errored[0]["error"]
                ET.SubElement(case, "error", type=str(err.get("code")),
                              message=str(err.get("message")))
        suite.set("tests", str(len(cats[cat])))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        total += len(cats[cat])
        total_fail += failures
    if gate:
        suite = ET.SubElement(root, "testsuite", name="redteam.gate", tests=str(len(gate)))
        failed = 0
        for g in gate:
            case = ET.SubElement(suite, "testcase", classname="redteam.gate",
                                 name=f"{g.name} <= {g.limit:g}")
            if not g.passed:
                failed += 1
                shown = "no data" if g.measured is None else f"{g.measured:.3f}"
                ET.SubElement(case, "failure", type="gate",
                              message=f"{g.name} rate {shown} is above {g.limit:g}")
        suite.set("failures", str(failed))
        total += len(gate)
        total_fail += failed
    root.set("tests", str(total))
    root.set("failures", str(total_fail))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _excerpt(record: Mapping[str, Any], limit: int = 600) -> str:
    prompt = ""
    for m in reversed(record.get("transcript") or []):
        if m.get("role") == "user":
            prompt = str(m.get("content") or "")
            break
    response = str(record.get("response") or "")
    return (f"prompt: {prompt[:limit]}\nresponse: {response[:limit]}\n"
            f"judge: {json.dumps(record.get('judge'), ensure_ascii=False)[:limit]}")


def to_sarif(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
             suite_paths: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """``suite_paths`` maps suite names to the file URI results point at."""
    paths = dict(suite_paths or {})
    categories = summary.get("categories", {})
    rules = []
    for cat, entry in sorted(categories.items()):
        rules.append({
            "id": cat,
            "name": cat.replace("_", " ").title().replace(" ", ""),
            "shortDescription": {"text": f"Red-team category {cat}"},
            "fullDescription": {"text": (
                f"Attack success rate {entry['rate']:.3f} "
                f"(95% CI {entry['ci_low']:.3f}-{entry['ci_high']:.3f}, n={entry['n']})")},
            "properties": {"tags": ["security", "llm", *entry.get("owasp", []),
                                    *entry.get("atlas", [])], "kind": entry.get("kind")},
        })
    results = []
    for item_id, attempts in sorted(_by_item(records).items()):
        hits = [a for a in attempts if a.get("error") is None and a.get("success")]
        if not hits:
            continue
        first = hits[0]
        benign = first.get("check") == "over_refusal"
        text = (f"{'False refusal' if benign else 'Attack succeeded'} on {item_id} in "
                f"{len(hits)}/{len(attempts)} attempts (judge: {first.get('method')})")
        results.append({
            "ruleId": first["category"],
            "level": "warning" if benign else "error",
            "message": {"text": text},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": paths.get(first.get("suite", ""),
                                                      f"{first.get('suite')}.jsonl")},
                "region": {"startLine": int(first.get("index", 0)) + 1},
            }}],
            "partialFingerprints": {"itemId": item_id},
            "properties": {"owasp": first.get("owasp"), "atlas": first.get("atlas"),
                           "successes": len(hits), "attempts": len(attempts)},
        })
    target = summary.get("target") or {}
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "wardgate-redteam", "rules": rules}},
            "automationDetails": {"id": f"wardgate-redteam/{target.get('name', 'target')}"},
            "properties": {"harmfulJudge": judge_line(summary.get("judges")),
                           "judges": summary.get("judges")},
            "results": results,
        }],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"
