"""How far do two human readers agree, and how do the judges score against each of them?

The judges' targets (≥ 92 % agreement, κ ≥ 0.8) are agreement with *human labels*, and HarmBench's
93 % is agreement with majority-voted labels of several readers. The shipped set was labelled
by one reader; this bench adds a second reader's labels of the **test split** (written
independently: the reader saw only the rubric, the request and the answer, in a shuffled order
with anonymous ids, never the first labels or any judge's output) and prints

* reader 1 vs reader 2: the verdict a run records (complied, for harmful requests; refused, for
  benign ones) and the four-way label, with Cohen's κ — the human ceiling on this set;
* every judge against reader 1, against reader 2, and on the items where the two readers agree
  (the consensus subset), with Wilson 95 % intervals.

    .venv/bin/python bench/judge_readers.py
    .venv/bin/python bench/judge_readers.py --write-set /tmp/reader2.jsonl  # then:
    wardgate redteam judges validate --set /tmp/reader2.jsonl

Reader 2's labels: ``scripts/data/judge_labels_reader2.tsv`` (``id label note``, test split).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from wardgate.errors import ConfigError  # noqa: E402
from wardgate.redteam.judges.validate import (  # noqa: E402
    LabelledItem,
    _agreement,
    cohen_kappa,
    judge_by_name,
    predict,
    read_set,
    verdict,
)

READER2 = ROOT / "scripts" / "data" / "judge_labels_reader2.tsv"
JUDGES = ("pair_minilm", "guard:harmful", "rules", "compliance_heuristic")


def read_reader2(path: Path = READER2) -> dict[str, tuple[str, str]]:
    """``{item id: (label, note)}`` from the second reader's TSV."""
    out: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("id\t"):
            continue
        parts = line.split("\t")
        out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return out


def relabelled(items: list[LabelledItem], labels: dict[str, tuple[str, str]]) -> list[LabelledItem]:
    from dataclasses import replace

    return [replace(i, label=labels[i.id][0]) for i in items]


def agreement(a: list[bool], b: list[bool]) -> str:
    """The verdict agreement ``judges validate`` reports, on one line."""
    r = _agreement(a, b)
    low, high = r["agreement_ci"]
    return f"{r['agreement']:6.1%} [{low:.1%}, {high:.1%}]  κ {r['kappa']:.3f}  (n={r['n']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--write-set",
        type=Path,
        help="write the test split with reader 2's "
        "labels as a labelled JSONL file for `judges validate --set`",
    )
    args = parser.parse_args()
    test = read_set(split="test")
    labels = read_reader2()
    missing = [i.id for i in test if i.id not in labels]
    if missing:
        raise SystemExit(f"reader 2 has no label for {len(missing)} test items: {missing[:5]} …")
    second = relabelled(test, labels)
    if args.write_set:
        rows = [
            {
                "request": i.request,
                "answer": i.answer,
                "label": i.label,
                "split": "test",
                "category": i.category,
                "source": i.source,
                "id": i.id,
            }
            for i in second
        ]
        args.write_set.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        print(f"wrote {args.write_set} ({len(rows)} items)")
    v1 = [verdict(i, i.label) for i in test]
    v2 = [verdict(i, i.label) for i in second]
    harm = [k for k, i in enumerate(test) if i.kind == "harmful"]
    print("== reader 1 (shipped labels) vs reader 2, test split")
    print(f"  verdict, all items        {agreement(v1, v2)}")
    print(f"  verdict, harmful side     {agreement([v1[k] for k in harm], [v2[k] for k in harm])}")
    four = sum(a.label == b.label for a, b in zip(test, second, strict=True)) / len(test)
    print(
        f"  four-way label            {four:6.1%}  κ "
        f"{cohen_kappa([i.label for i in test], [i.label for i in second]):.3f}"
    )
    matrix: dict[str, dict[str, int]] = {}
    for a, b in zip(test, second, strict=True):
        matrix.setdefault(a.label, {}).setdefault(b.label, 0)
        matrix[a.label][b.label] += 1
    print(f"  rows reader 1, columns reader 2: {json.dumps(matrix, sort_keys=True)}")
    consensus = [k for k in range(len(test)) if v1[k] == v2[k]]
    print(f"  consensus subset (verdicts agree): {len(consensus)} of {len(test)}")
    for name in JUDGES:
        try:
            judge = judge_by_name(name)
        except ConfigError as exc:  # a judge that cannot load here is reported, not fatal
            print(f"\n== {name}: not available ({exc})")
            continue
        predicted = predict(judge, test)
        vp = [verdict(i, p) for i, p in zip(test, predicted, strict=True)]
        print(f"\n== {name}")
        print(f"  vs reader 1               {agreement(v1, vp)}")
        print(f"  vs reader 2               {agreement(v2, vp)}")
        print(
            f"  on the consensus subset   "
            f"{agreement([v1[k] for k in consensus], [vp[k] for k in consensus])}"
        )
        raw = [k for k in harm if test[k].source == "raw"]
        if raw:
            r1 = sum(v1[k] for k in raw) / len(raw)
            r2 = sum(v2[k] for k in raw) / len(raw)
            rj = sum(vp[k] for k in raw) / len(raw)
            print(
                f"  raw-model compliance (n={len(raw)}): reader 1 {r1:.1%}, reader 2 {r2:.1%}, "
                f"judge {rj:.1%}"
            )
    print(
        "\nJudge: each judge decides harmful items; benign items are decided by the refusal "
        "rules in every run, as in `wardgate redteam judges validate`."
    )


if __name__ == "__main__":
    main()
