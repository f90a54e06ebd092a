"""Watermark detection from text alone: the model's tokenizer and the key, no weights run.

Scoring follows Kirchenbauer et al.: each token after the first ``lookback`` is scored with
its context; a (context, token) pair seen before is skipped (the paper's fix for repetitive
text, whose repeats are not independent evidence). Green-list schemes give a one-proportion
z-score; ``expmin`` sums ``-ln(1 - r)``, which is Gamma(n, 1) on text written without the
key, so its p-value is exact (Erlang tail) and its z is the normal quantile of that p.

An excerpt inside a longer human text dilutes the whole-text score, so on long texts (more
than :data:`AUTO_WINDOW_ABOVE` scored tokens, or always when asked) windows of 50, 100, 200, …
scored tokens (half-overlapping) are tested too; the best test is reported with its p-value
multiplied by the number of tests made (Bonferroni), and the verdict uses that corrected
value. Too few scored tokens gives ``insufficient_tokens``: not a "no".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from wardgate.provenance.watermark import Scheme

Verdict = Literal["watermarked", "not_watermarked", "insufficient_tokens"]
WindowMode = Literal["auto", "always", "never"]

#: Window sizes (scored tokens) tried on longer texts.
WINDOW_SIZES = (50, 100, 200, 400, 800, 1600)
#: In ``auto`` mode, texts with more scored tokens than this are also scanned in windows.
AUTO_WINDOW_ABOVE = 400
_P_FLOOR = 1e-300
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Window:
    start: int
    end: int
    z: float
    p_value: float


@dataclass(frozen=True)
class Detection:
    verdict: Verdict
    #: Whole-text z-score (green schemes) or its normal equivalent (expmin).
    z: float
    p_value: float
    tokens: int
    tokens_scored: int
    #: Tokens skipped because their (context, token) pair had already been scored.
    tokens_repeated: int
    threshold: float
    #: Tests made (whole text + windows) and the best one, corrected for their number.
    tests: int
    z_corrected: float
    p_corrected: float
    best_window: Window | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def z_from_p(p: float) -> float:
    """The one-sided normal quantile of ``p`` (large for small p), finite down to 1e-300."""
    p = min(max(p, _P_FLOOR), 1.0 - 1e-16)
    return -_NORMAL.inv_cdf(p)


def _erlang_sf(n: int, s: float) -> float:
    """P(Gamma(n, 1) > s) = e^-s Σ_{k<n} s^k / k!, in log space."""
    if n <= 0:
        return 1.0
    if s <= 0:
        return 1.0
    k = np.arange(n, dtype=np.float64)
    log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n, dtype=np.float64)))))
    terms = k * math.log(s) - log_fact - s
    top = float(terms.max())
    return min(1.0, math.exp(top) * float(np.exp(terms - top).sum()))


def score_events(scheme: Scheme, tokens: list[int]) -> tuple[list[float], int]:
    """The scores of events not seen before, in order, and how many were repeats.

    An event is what decides a token's score (:meth:`Scheme.event_keys`): the (context, token)
    pair for keyed-context schemes, the (min-hash seed, token) pair for ``selfhash``.
    """
    width = scheme.lookback
    contexts = [tuple(tokens[i - width : i]) for i in range(width, len(tokens))]
    candidates = tokens[width:]
    if not candidates:
        return [], 0
    seen: set[Any] = set()
    keep: list[int] = []
    for index, key in enumerate(scheme.event_keys(contexts, candidates)):
        if key not in seen:
            seen.add(key)
            keep.append(index)
    repeated = len(candidates) - len(keep)
    if not keep:
        return [], repeated
    return scheme.score_many([contexts[i] for i in keep], [candidates[i] for i in keep]), repeated


def _test(scheme: Scheme, total: float, n: int) -> tuple[float, float]:
    """(z, one-sided p) for ``n`` scores summing to ``total`` under the null of no key."""
    if scheme.config.scheme == "expmin":
        p = _erlang_sf(n, total)
        return z_from_p(p), p
    mean, var = scheme.null_mean_var()
    z = (total - mean * n) / math.sqrt(n * var)
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def detect_tokens(
    scheme: Scheme,
    tokens: list[int],
    *,
    threshold: float,
    min_tokens: int,
    windows: WindowMode = "auto",
) -> Detection:
    scores, repeated = score_events(scheme, tokens)
    n = len(scores)
    if n == 0:
        return Detection(
            verdict="insufficient_tokens", z=0.0, p_value=1.0, tokens=len(tokens),
            tokens_scored=0, tokens_repeated=repeated, threshold=threshold, tests=0,
            z_corrected=0.0, p_corrected=1.0, best_window=None,
        )  # fmt: skip
    prefix = np.concatenate(([0.0], np.cumsum(scores)))
    z, p = _test(scheme, float(prefix[-1]), n)
    best_p, best = p, None
    tests = 1
    scan = windows == "always" or (windows == "auto" and n > AUTO_WINDOW_ABOVE)
    for size in WINDOW_SIZES if scan else ():
        if size >= n:
            break
        stride = size // 2
        starts = list(range(0, n - size + 1, stride))
        if starts[-1] != n - size:
            starts.append(n - size)
        for start in starts:
            tests += 1
            wz, wp = _test(scheme, float(prefix[start + size] - prefix[start]), size)
            if wp < best_p:
                best_p, best = wp, Window(start=start, end=start + size, z=wz, p_value=wp)
    p_corrected = min(1.0, best_p * tests)
    # Floored at 0: a corrected p of 1 says "no evidence", not "strong evidence against".
    z_corrected = z if tests == 1 else z_from_p(min(p_corrected, 0.5)) + 0.0
    verdict: Verdict
    if n < min_tokens:
        verdict = "insufficient_tokens"
    elif z_corrected >= threshold:
        verdict = "watermarked"
    else:
        verdict = "not_watermarked"
    return Detection(
        verdict=verdict,
        z=z,
        p_value=p,
        tokens=len(tokens),
        tokens_scored=n,
        tokens_repeated=repeated,
        threshold=threshold,
        tests=tests,
        z_corrected=z_corrected,
        p_corrected=p_corrected,
        best_window=best,
    )
