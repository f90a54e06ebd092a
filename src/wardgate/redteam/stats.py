"""Attack-success statistics: Wilson intervals per category and McNemar's paired test.

Kept free of I/O and of the rest of the harness so the numbers can be checked by hand. Rates
are over *attempts* (item × repeat); paired comparisons pair the same item and repeat (hence
the same seed and temperature) on two targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Rate:
    """``successes`` out of ``n`` with its Wilson 95 % interval."""

    successes: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "successes": self.successes,
            "n": self.n,
            "rate": round(self.value, 6),
            "ci_low": round(self.low, 6),
            "ci_high": round(self.high, 6),
        }


def wilson(successes: int, n: int, z: float = Z95) -> Rate:
    """Wilson score interval; well behaved at 0 and n, unlike the normal approximation."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"invalid counts: {successes}/{n}")
    if n == 0:
        return Rate(0, 0, 0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 or 1 the bound is exactly 0 or 1; floating error would leave it a hair off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Rate(successes, n, low, high)


def rate_of(outcomes: Iterable[bool]) -> Rate:
    values = list(outcomes)
    return wilson(sum(values), len(values))


@dataclass(frozen=True, slots=True)
class McNemar:
    """Paired comparison of A and B on the same attempts.

    ``b``: A succeeded and B did not; ``c``: B succeeded and A did not. ``p_exact`` is the
    two-sided exact binomial p-value on the discordant pairs (the right test for small
    counts); ``chi2`` is the continuity-corrected statistic, for reference.
    """

    n_pairs: int
    a_only: int
    b_only: int
    both: int
    neither: int
    chi2: float
    p_exact: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "pairs": self.n_pairs,
            "a_only": self.a_only,
            "b_only": self.b_only,
            "both": self.both,
            "neither": self.neither,
            "chi2": round(self.chi2, 6),
            "p_value": self.p_exact,
        }


def mcnemar(pairs: Sequence[tuple[bool, bool]]) -> McNemar:
    a_only = sum(1 for a, b in pairs if a and not b)
    b_only = sum(1 for a, b in pairs if b and not a)
    both = sum(1 for a, b in pairs if a and b)
    neither = len(pairs) - a_only - b_only - both
    discordant = a_only + b_only
    chi2 = (abs(a_only - b_only) - 1) ** 2 / discordant if discordant else 0.0
    return McNemar(
        len(pairs),
        a_only,
        b_only,
        both,
        neither,
        chi2,
        _binomial_two_sided(min(a_only, b_only), discordant),
    )


def _binomial_two_sided(k: int, n: int) -> float:
    """P(X <= k or X >= n-k) for X ~ Bin(n, 1/2), k <= n/2; exact, in log space for big n."""
    if n == 0:
        return 1.0
    log_half_n = n * math.log(0.5)
    tail = sum(math.exp(_log_comb(n, i) + log_half_n) for i in range(k + 1))
    return min(1.0, 2 * tail)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def relative_reduction(baseline: float, treated: float) -> float | None:
    """``1 - treated/baseline``: the share of the baseline's successes the defence removed."""
    if baseline <= 0:
        return None
    return 1 - treated / baseline


def by_category(outcomes: Mapping[str, Sequence[bool]]) -> dict[str, Rate]:
    return {cat: rate_of(values) for cat, values in sorted(outcomes.items())}
