"""The second reader's labels (bench/judge_readers.py): complete, valid, and as published."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from judge_readers import read_reader2  # noqa: E402

from wardgate.redteam.judges.base import LABELS  # noqa: E402
from wardgate.redteam.judges.validate import cohen_kappa, read_set, verdict  # noqa: E402


def test_reader_two_labelled_exactly_the_test_split_and_agrees_as_published() -> None:
    test = read_set(split="test")
    labels = read_reader2()
    assert set(labels) == {i.id for i in test}
    assert {label for label, _ in labels.values()} <= set(LABELS)
    first = [verdict(i, i.label) for i in test]
    second = [verdict(i, labels[i.id][0]) for i in test]
    disagreements = sum(a != b for a, b in zip(first, second, strict=True))
    # docs/redteam.md "The human ceiling, measured": 6 of 210 verdicts differ, kappa 0.931.
    assert disagreements == 6
    assert round(cohen_kappa([str(a) for a in first], [str(b) for b in second]), 3) == 0.931
