"""Wilson intervals and McNemar's test against values computed by hand / reference tables."""

from __future__ import annotations

import math

import pytest

from wardgate.redteam.stats import mcnemar, rate_of, relative_reduction, wilson


def test_wilson_matches_reference_values() -> None:
    # Reference: Newcombe (1998), Table I - 0/10 -> (0, 0.2775); 5/10 -> (0.2366, 0.7634).
    zero = wilson(0, 10)
    assert zero.low == 0.0
    assert zero.high == pytest.approx(0.2775, abs=1e-4)
    half = wilson(5, 10)
    assert half.low == pytest.approx(0.2366, abs=1e-4)
    assert half.high == pytest.approx(0.7634, abs=1e-4)
    # Newcombe Table I rows 15/148 and 1/29.
    assert wilson(15, 148).low == pytest.approx(0.0624, abs=1e-4)
    assert wilson(15, 148).high == pytest.approx(0.1605, abs=1e-4)
    assert wilson(1, 29).low == pytest.approx(0.0061, abs=1e-4)
    assert wilson(1, 29).high == pytest.approx(0.1718, abs=1e-4)
    full = wilson(10, 10)
    assert full.high == 1.0 and full.low == pytest.approx(0.7225, abs=1e-4)


def test_wilson_edge_cases() -> None:
    empty = wilson(0, 0)
    assert (empty.n, empty.low, empty.high, empty.value) == (0, 0.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        wilson(3, 2)
    r = rate_of([True, False, False, True])
    assert (r.successes, r.n, r.value) == (2, 4, 0.5)
    assert r.as_dict()["rate"] == 0.5


def test_mcnemar_exact_p_value() -> None:
    # 6 discordant pairs all one way: p = 2 * 0.5**6 = 0.03125.
    pairs = [(True, False)] * 6 + [(True, True)] * 3 + [(False, False)] * 5
    result = mcnemar(pairs)
    assert (result.a_only, result.b_only, result.both, result.neither) == (6, 0, 3, 5)
    assert result.p_exact == pytest.approx(0.03125)
    assert result.chi2 == pytest.approx((6 - 1) ** 2 / 6)


def test_mcnemar_symmetric_and_no_discordance() -> None:
    balanced = mcnemar([(True, False), (False, True)] * 5)
    assert balanced.p_exact == pytest.approx(1.0)
    same = mcnemar([(True, True), (False, False)])
    assert same.p_exact == 1.0 and same.chi2 == 0.0


def test_mcnemar_large_counts_stay_finite() -> None:
    result = mcnemar([(True, False)] * 900 + [(False, True)] * 100)
    assert 0.0 <= result.p_exact < 1e-100 or result.p_exact == 0.0
    assert math.isfinite(result.chi2)


def test_relative_reduction() -> None:
    assert relative_reduction(0.5, 0.05) == pytest.approx(0.9)
    assert relative_reduction(0.0, 0.1) is None
