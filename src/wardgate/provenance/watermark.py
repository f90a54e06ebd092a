"""Text watermarks for local models: three schemes behind one interface.

Each scheme answers two questions, one for generation and one for detection:

* :meth:`Scheme.bias` — given the context (previous token ids) and the model's logits for the
  next token, return the logits to sample from (a llama.cpp logits processor calls it);
* :meth:`Scheme.score` — given a token and its context, the token's score under the key: for
  the green-list schemes 1.0 if the token is green else 0.0, for ``expmin`` ``-ln(1 - r)``.

The keyed randomness: a context's 64-bit seed is the first 8 bytes of HMAC-SHA-256(key, the
context's token ids), so the seeds cannot be predicted without the key; a seed is expanded to
one uniform number per candidate token with the splitmix64 finaliser (fast, vectorised, and
only as strong as the secret seed it mixes, which is the point of the HMAC).

* ``kgw`` (Kirchenbauer et al. 2023, LeftHash): the ``h`` previous tokens seed a green list of
  fraction γ; δ is added to the green logits.
* ``selfhash`` (Kirchenbauer et al. 2024, "On the Reliability of Watermarks", SelfHash /
  min-hash): a candidate ``v``'s green bit is keyed by ``min(P(x_{t-h+1}), …, P(x_{t-1}),
  P(v))`` with ``P`` a keyed per-token hash; one edited context token changes the seed only if
  it held the minimum, which makes the watermark survive more edits.
* ``expmin`` (Aaronson 2022, exponential-minimum / Gumbel sampling): the token is the
  ``argmax r_v^{1/p_v}`` over the sampler's distribution ``p``, with ``r_v`` uniform from the
  context's seed. Over the key's randomness this draws each token with probability exactly
  ``p_v``: no distortion. The price: given the same context the choice is deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from wardgate.provenance.config import WatermarkConfig

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 2.0**-53

Logits = npt.NDArray[np.float32]


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser, element-wise (uint64 arithmetic wraps, as intended)."""
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def _unit(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    """Uniform in (0, 1): the top 53 bits, shifted off zero."""
    return ((x >> _S11).astype(np.float64) + 0.5) * _TO_UNIT


def key_id(key: bytes) -> str:
    """A public name for a watermark key (16 hex), safe to print and to put in receipts."""
    return hashlib.sha256(b"wardgate watermark key id\0" + key).hexdigest()[:16]


@dataclass(frozen=True)
class SamplerSettings:
    """The parts of llama.cpp's sampler chain ``expmin`` must reproduce to stay unbiased."""

    temperature: float
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05


class Scheme(Protocol):
    """One watermark: biases generation and scores tokens, with one key."""

    name: str
    config: WatermarkConfig
    #: Previous tokens a token's score depends on (detection passes exactly these).
    lookback: int
    key_id: str

    def bias(self, context: Any, logits: Logits, sampler: SamplerSettings) -> Logits: ...

    def score(self, context: tuple[int, ...], token: int) -> float: ...

    def score_many(self, contexts: list[tuple[int, ...]], tokens: list[int]) -> list[float]:
        """:meth:`score` for many (context, token) pairs at once (detection's hot loop)."""
        ...

    def null_mean_var(self) -> tuple[float, float]:
        """Mean and variance of one token's score on text written without the key."""
        ...

    def event_keys(self, contexts: list[tuple[int, ...]], tokens: list[int]) -> list[Any]:
        """What decides each pair's score: two pairs with one key are one coin, scored once."""
        ...

    def describe(self) -> dict[str, Any]:
        """The public parameters (receipts, detection reports); never the key."""
        ...


class _Keyed:
    def __init__(self, config: WatermarkConfig, key: bytes) -> None:
        self.config = config
        self.context_width = config.context_width
        self.lookback = self.context_width
        self._key = key
        self.key_id = key_id(key)
        # The per-candidate expansion salt, from the key too.
        self._salt = np.uint64(int.from_bytes(self._hmac(b"salt"), "little"))

    def _hmac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()[:8]

    def _seed(self, context: tuple[int, ...]) -> np.uint64:
        data = b"ctx" + np.asarray(context, dtype="<i4").tobytes()
        return np.uint64(int.from_bytes(self._hmac(data), "little"))

    def _uniforms(self, seeds: Any, tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        mixed = _mix(
            np.asarray(seeds, dtype=np.uint64) ^ _mix(tokens.astype(np.uint64) ^ self._salt)
        )
        return _unit(mixed)

    def _context(self, input_ids: Any) -> tuple[int, ...]:
        return tuple(int(t) for t in input_ids[max(0, len(input_ids) - self.lookback) :])

    def _context_uniforms(
        self, contexts: list[tuple[int, ...]], tokens: list[int]
    ) -> npt.NDArray[np.float64]:
        seeds = np.array([int(self._seed(c)) for c in contexts], dtype=np.uint64)
        return self._uniforms(seeds, np.asarray(tokens, dtype=np.int64))

    def event_keys(self, contexts: list[tuple[int, ...]], tokens: list[int]) -> list[Any]:
        # The seed is a keyed hash of the whole context: the pair itself is the event.
        return [(*context, token) for context, token in zip(contexts, tokens, strict=True)]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scheme": self.config.scheme, "h": self.context_width}
        if self.config.scheme != "expmin":
            out.update(gamma=self.config.gamma, delta=self.config.delta)
        out["key_id"] = self.key_id
        return out


def _top_candidates(logits: Logits, k: int) -> npt.NDArray[np.int64]:
    if 0 < k < logits.shape[0]:
        return np.argpartition(logits, -k)[-k:].astype(np.int64)
    return np.arange(logits.shape[0], dtype=np.int64)


class _GreenList(_Keyed):
    """The shared part of ``kgw`` and ``selfhash``: δ on the green logits."""

    name = "kgw"

    def _green(
        self, context: tuple[int, ...], tokens: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        raise NotImplementedError

    def bias(self, context: Any, logits: Logits, sampler: SamplerSettings) -> Logits:
        ctx = self._context(context)
        delta = np.float32(self.config.delta)
        # Only tokens that could reach llama.cpp's top-k after the bias need a green bit: one
        # more than δ below the k-th largest logit stays below it (biases only raise logits).
        k = sampler.top_k if sampler.top_k > 0 else logits.shape[0]
        if k < logits.shape[0]:
            kth = np.partition(logits, -k)[-k]
            candidates = np.flatnonzero(logits >= kth - delta).astype(np.int64)
        else:
            candidates = np.arange(logits.shape[0], dtype=np.int64)
        green = candidates[self._green(ctx, candidates)]
        out = logits.copy()
        out[green] += delta
        return out

    def score(self, context: tuple[int, ...], token: int) -> float:
        return float(self._green(context, np.array([token], dtype=np.int64))[0])

    def score_many(self, contexts: list[tuple[int, ...]], tokens: list[int]) -> list[float]:
        green = self._context_uniforms(contexts, tokens) < self.config.gamma
        return [float(g) for g in green]

    def null_mean_var(self) -> tuple[float, float]:
        g = self.config.gamma
        return g, g * (1 - g)


class LeftHash(_GreenList):
    name = "kgw"

    def _green(
        self, context: tuple[int, ...], tokens: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return self._uniforms(self._seed(context), tokens) < self.config.gamma


class SelfHash(_GreenList):
    name = "selfhash"

    def __init__(self, config: WatermarkConfig, key: bytes) -> None:
        super().__init__(config, key)
        # The candidate itself is the h-th input of the min-hash.
        self.lookback = self.context_width - 1

    def _per_token(self, tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        # P(t) is keyed by a seed derived from the key; vectorised over any token ids.
        base = np.uint64(int.from_bytes(self._hmac(b"token-hash"), "little"))
        return _mix(tokens.astype(np.uint64) * _GOLDEN ^ base)

    def _green(
        self, context: tuple[int, ...], tokens: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        own = self._per_token(tokens)
        if context:
            anchor = self._per_token(np.asarray(context, dtype=np.int64)).min()
            seeds = np.minimum(own, anchor)
        else:
            seeds = own
        return self._uniforms(_mix(seeds ^ self._salt), tokens) < self.config.gamma

    def _min_seeds(
        self, contexts: list[tuple[int, ...]], ids: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.uint64]:
        own = self._per_token(ids)
        if self.lookback:
            ctx = np.asarray(contexts, dtype=np.int64).reshape(len(ids), self.lookback)
            own = np.minimum(own, self._per_token(ctx).min(axis=1))
        return own

    def score_many(self, contexts: list[tuple[int, ...]], tokens: list[int]) -> list[float]:
        ids = np.asarray(tokens, dtype=np.int64)
        seeds = self._min_seeds(contexts, ids)
        green = self._uniforms(_mix(seeds ^ self._salt), ids) < self.config.gamma
        return [float(g) for g in green]

    def event_keys(self, contexts: list[tuple[int, ...]], tokens: list[int]) -> list[Any]:
        # The min-hash seed, not the context, decides the green bit: a frequent token that is
        # its own minimum has one fixed green bit in every context. Counting each of its
        # occurrences as new evidence biased human text upwards (mean z 0.74, 18 of 6,000
        # docstrings at z >= 4 before this), so a (seed, token) pair is scored once.
        ids = np.asarray(tokens, dtype=np.int64)
        seeds = self._min_seeds(contexts, ids)
        return list(zip(seeds.tolist(), tokens, strict=True))


class ExpMin(_Keyed):
    name = "expmin"

    def bias(self, context: Any, logits: Logits, sampler: SamplerSettings) -> Logits:
        ctx = self._context(context)
        candidates = _top_candidates(logits, sampler.top_k)
        values = logits[candidates].astype(np.float64)
        if sampler.temperature <= 0:
            # Greedy decoding has no randomness to replace: the argmax, unwatermarked.
            chosen = int(candidates[int(np.argmax(values))])
        else:
            keep = _filter(values, sampler)
            candidates, values = candidates[keep], values[keep]
            scaled = values / sampler.temperature
            p = np.exp(scaled - scaled.max())
            p /= p.sum()
            r = self._uniforms(self._seed(ctx), candidates)
            # argmax r^(1/p) = argmax ln(r)/p: Aaronson's rule (the Gumbel-max trick).
            chosen = int(candidates[int(np.argmax(np.log(r) / p))])
        out = np.full_like(logits, -np.inf)
        out[chosen] = logits[chosen]
        return out

    def score(self, context: tuple[int, ...], token: int) -> float:
        r = float(self._uniforms(self._seed(context), np.array([token], dtype=np.int64))[0])
        return -math.log(1.0 - r)

    def score_many(self, contexts: list[tuple[int, ...]], tokens: list[int]) -> list[float]:
        r = self._context_uniforms(contexts, tokens)
        return [float(v) for v in -np.log1p(-r)]

    def null_mean_var(self) -> tuple[float, float]:
        return 1.0, 1.0


def _filter(values: npt.NDArray[np.float64], sampler: SamplerSettings) -> npt.NDArray[np.bool_]:
    """llama.cpp's top-p then min-p on temperature-1 probabilities (its chain applies the
    temperature last), so expmin samples from exactly the distribution llama.cpp would."""
    p = np.exp(values - values.max())
    p /= p.sum()
    keep = np.ones(values.shape[0], dtype=bool)
    if sampler.top_p < 1.0:
        order = np.argsort(-p)
        cumulative = np.cumsum(p[order])
        cut = int(np.searchsorted(cumulative, sampler.top_p)) + 1
        keep[:] = False
        keep[order[:cut]] = True
    if sampler.min_p > 0:
        keep &= p >= sampler.min_p * p.max()
    return keep


def make_scheme(config: WatermarkConfig, key: bytes) -> LeftHash | SelfHash | ExpMin:
    if config.scheme == "kgw":
        return LeftHash(config, key)
    if config.scheme == "selfhash":
        return SelfHash(config, key)
    return ExpMin(config, key)
