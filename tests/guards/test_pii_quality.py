"""PII quality floors on a sample of the generated corpus, and the look-alikes behind them.

The corpus generator lives in ``bench/pii_quality.py`` (one source of truth for the labelled
data); this test loads it by path and scores a small fixed-seed sample through the guard's
public API. Floors sit a little below the measured figures so a regression fails here first.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from tests.conftest import load_script

from wardgate.guards import GuardSpec
from wardgate.guards.pii import PiiGuard, RegexPiiDetector

BENCH = Path(__file__).resolve().parents[2] / "bench" / "pii_quality.py"
REGIONS = ["US", "GB", "DE", "FR"]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(BENCH, "pii_quality_bench")


def test_recall_and_precision_floors(bench: ModuleType) -> None:
    samples = bench.build_corpus(per_kind=80, negatives=400, seed=11)
    guard = PiiGuard(GuardSpec(type="pii", options={"action": "flag"}))
    report = bench.score(samples, guard)
    for kind in bench.KINDS:
        s = report.kinds[kind]
        assert s.true_spans == 80, kind
        assert s.found / s.true_spans >= bench.TARGET_RECALL[kind], (kind, s.misses)
        assert s.correct / s.findings >= 0.97, (kind, s.false_alarms)
    hit = sum(h for h, _ in report.negatives_hit.values())
    total = sum(n for _, n in report.negatives_hit.values())
    assert total == 400 and hit <= 4, report.negatives_hit


def test_corpus_is_reproducible_and_labels_are_exact(bench: ModuleType) -> None:
    first = bench.build_corpus(per_kind=10, negatives=30, seed=3)
    assert first == bench.build_corpus(per_kind=10, negatives=30, seed=3)
    for sample in first:
        for span in sample.positives:
            value = sample.text[span.start : span.end]
            assert value == value.strip() and value, span


def test_wilson_interval(bench: ModuleType) -> None:
    low, high = bench.wilson(400, 400)
    assert 0.99 < low < 1.0 and high == 1.0
    low, high = bench.wilson(0, 0)
    assert (low, high) == (0.0, 1.0)


def found(text: str) -> set[tuple[str, str]]:
    return {(e.kind, text[e.start : e.end]) for e in RegexPiiDetector(REGIONS).detect(text)}


@pytest.mark.parametrize(
    ("text", "iban"),
    [
        ("IBAN: DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", "DE89 3704 0044 0532 0130 00"),
        ("wire to GB82WEST12345698765432 I need it by Friday", "GB82WEST12345698765432"),
        ("IBAN NL91 ABNA 0417 1643 00 THANKS", "NL91 ABNA 0417 1643 00"),
    ],
)
def test_iban_before_an_upper_case_word(text: str, iban: str) -> None:
    assert found(text) == {("iban", iban)}


def test_invalid_iban_hides_card_and_phone_shaped_digits() -> None:
    # Bad check digits; the inner groups are a Luhn-valid run and a phone-shaped run.
    assert found("ref GB57 BUGA 2835 7825 8814 46") == set()
    assert found("ref FR88 0334 2959 11Z3 W16X 16GR 345") == set()


@pytest.mark.parametrize(
    "text",
    [
        "Notes from the call: INV-2025-73257",
        "Notes from the call: ORD-2025-874593",
        "Notes from the call: id=#39485049",
        "Notes from the call: value 1633700776",
        "Notes from the call: see 342-52-0000",
        "parcel 1Z23412630444701A1 arrived",
        "ref 096376467363 attached",
    ],
)
def test_references_are_not_phones_or_cards(text: str) -> None:
    assert found(text) == set()


@pytest.mark.parametrize(
    "phone",
    ["1-201-556-0259", "+44 (0)20 7946 0958", "+49 (0)30 901820", "tel:+1-212-555-0142"],
)
def test_more_phone_shapes(phone: str) -> None:
    kinds = found(f"reach me at {phone}")
    assert [k for k, _ in kinds] == ["phone"]
