"""The harmful detector's second stage: n-grams plus a MiniLM embedding, for unsure texts only.

The n-gram model (``classifier.LinearDetector``) is fast and right about most texts, but it
reads spelling, not meaning. This stage adds meaning: a linear model over the same n-gram
blocks *and* the window's MiniLM sentence embedding (``embedding.py``), fitted jointly on the
same training rows. Embedding costs tens of milliseconds, so it runs only on windows whose
first-stage probability falls inside ``band`` (picked on validation data by
``scripts/train_detectors.py``); outside the band the first stage's answer stands.

One score, one threshold: a second-stage probability ``p`` is reported as the probability that
puts it on the same side of the first stage's threshold ``t1`` as ``p`` is of the second
stage's own threshold ``t2`` (a shift of the logit by ``logit(t1) - logit(t2)``). So the guard's
``threshold`` option keeps meaning "block at or above this score".
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from wardgate.guards.classifier import (
    Detection,
    FloatArray,
    LinearDetector,
    Window,
    WindowScore,
    featurise_windows,
    header_array,
    npz_bytes,
    read_npz,
    sigmoid,
)
from wardgate.guards.embedding import MiniLMEncoder

#: At most this many windows of one text are embedded (the most suspicious first); the rest
#: keep their first-stage score. Bounds the cost of a long text to a few forward passes.
MAX_SEMANTIC_WINDOWS = 4
#: Embeddings kept per process, keyed by window text: chat clients resend the whole history on
#: every turn, so the same user message is scanned again and again.
EMBEDDING_CACHE = 2048


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class SemanticStage:
    """Weights of the joint n-gram + embedding model and where it applies."""

    weights: FloatArray
    word_weights: FloatArray
    embed_weights: FloatArray
    bias: float
    threshold: float
    band: tuple[float, float]
    meta: dict[str, object] = field(default_factory=dict)

    def logit(self, window: Window, embedding: FloatArray) -> float:
        z = float(np.dot(self.weights[window.index], window.values))
        z += float(np.dot(self.word_weights[window.word_index], window.word_values))
        return z + float(np.dot(self.embed_weights, embedding)) + self.bias

    def in_band(self, first_score: float) -> bool:
        return self.band[0] <= first_score < self.band[1]

    def to_npz_bytes(self) -> bytes:
        header = {
            "bias": self.bias,
            "threshold": self.threshold,
            "band": list(self.band),
            "meta": self.meta,
        }
        return npz_bytes(
            {
                "weights": self.weights,
                "word_weights": self.word_weights,
                "embed_weights": self.embed_weights,
                "header": header_array(header),
            }
        )

    @classmethod
    def from_npz_bytes(cls, data: bytes) -> SemanticStage:
        header, arrays = read_npz(data)
        lo, hi = (float(v) for v in header["band"])
        return cls(
            arrays["weights"].astype(np.float32),
            arrays["word_weights"].astype(np.float32),
            arrays["embed_weights"].astype(np.float32),
            float(header["bias"]),
            float(header["threshold"]),
            (lo, hi),
            dict(header.get("meta", {})),
        )


class CascadeDetector:
    """A LinearDetector whose unsure windows get a second opinion from ``SemanticStage``.

    Same interface as :class:`LinearDetector` (``detect``, ``score``, ``window_scores``,
    ``threshold``, ``name``), so the guards and benchmarks take either.
    """

    def __init__(
        self,
        first: LinearDetector,
        stage: SemanticStage,
        encoder: MiniLMEncoder,
        max_windows: int = MAX_SEMANTIC_WINDOWS,
    ) -> None:
        if stage.weights.shape[0] != first.dim or stage.word_weights.shape[0] != first.word_dim:
            raise ValueError("the semantic stage was trained for other feature dimensions")
        self.first = first
        self.stage = stage
        self.encoder = encoder
        self.max_windows = max_windows
        self.name = first.name
        self.threshold = first.threshold
        self._shift = _logit(first.threshold) - _logit(stage.threshold)
        self._cache: OrderedDict[str, FloatArray] = OrderedDict()
        # Guards run on an executor's threads; the cache is shared between them.
        self._cache_lock = threading.Lock()

    def _embeddings(self, texts: list[str]) -> list[FloatArray]:
        with self._cache_lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
            for text in known:
                self._cache.move_to_end(text)
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            computed = dict(zip(missing, self.encoder.encode(missing), strict=True))
            known.update(computed)
            with self._cache_lock:
                self._cache.update(computed)
                while len(self._cache) > EMBEDDING_CACHE:
                    self._cache.popitem(last=False)
        return [known[t] for t in texts]

    def _scored_many(
        self, texts: list[str], cheap: bool = False
    ) -> list[list[tuple[Window, float]]] | None:
        """Every window of every text with its final score.

        The texts are readings of one message (the original and its normalised variants), so
        they share one budget: at most ``max_windows`` windows are embedded in all, the most
        suspicious first. A hostile message cannot buy 8 readings x 4 windows of MiniLM.
        """
        feats = [featurise_windows(t, self.first.dim, self.first.word_dim) for t in texts]
        scores = [[self.first.window_score(w) for w in wins] for wins in feats]
        unsure = sorted(
            (
                (-score, ti, wi)
                for ti, row in enumerate(scores)
                for wi, score in enumerate(row)
                if self.stage.in_band(score)
            )
        )[: self.max_windows]
        if unsure:
            spans = [feats[ti][wi] for _, ti, wi in unsure]
            windows = [
                texts[ti][w.start : w.end] for (_, ti, _), w in zip(unsure, spans, strict=True)
            ]
            if cheap and not self._all_cached(windows):
                return None
            vectors = self._embeddings(windows)
            for (_, ti, wi), vector in zip(unsure, vectors, strict=True):
                z = self.stage.logit(feats[ti][wi], vector)
                scores[ti][wi] = sigmoid(z + self._shift)
        return [list(zip(f, s, strict=True)) for f, s in zip(feats, scores, strict=True)]

    def _all_cached(self, windows: list[str]) -> bool:
        with self._cache_lock:
            return all(w in self._cache for w in windows)

    def _scored(self, texts: list[str]) -> list[list[tuple[Window, float]]]:
        scored = self._scored_many(texts)
        assert scored is not None
        return scored

    def window_scores(self, text: str) -> list[WindowScore]:
        return [WindowScore(w.start, w.end, s) for w, s in self._scored([text])[0]]

    def score(self, text: str) -> float:
        return max(s for _, s in self._scored([text])[0])

    def detect(self, text: str, threshold: float | None = None) -> Detection:
        return self.detect_many([text], threshold)[0]

    def detect_many(self, texts: list[str], threshold: float | None = None) -> list[Detection]:
        """One detection per text; the texts share the embedding budget (see _scored_many)."""
        limit = self.threshold if threshold is None else threshold
        return [self.first.detection(scored, limit) for scored in self._scored(texts)]

    def detect_many_cheap(self, texts: list[str]) -> list[Detection] | None:
        """``detect_many`` if every unsure window's embedding is cached, else None."""
        scored = self._scored_many(texts, cheap=True)
        if scored is None:
            return None
        return [self.first.detection(s, self.threshold) for s in scored]
