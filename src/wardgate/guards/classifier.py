"""The learned detectors' pure core: featurise a text, score it, load pinned weights.

Numpy only, so the request path needs no torch and no sklearn (sklearn fits the weights in
``scripts/train_detectors.py``; this module is the exact same featuriser at both ends, so
training and serving cannot drift apart).

Features are hashed character 3-5-grams and word 1-2-grams of the lower-cased text, log-scaled
counts, L2-normalised; a detector may add a second, separately normalised block of word
unigrams, bigrams and skip-bigrams ("how ... make", "buy _ gun"), which weights the words a
request is made of as much as its spelling. A linear model turns both into a probability.
Chosen over SmolLM2 hidden states and MiniLM sentence embeddings by measurement (docs/guards.md,
"Learned detectors"): within reach of their quality at a fraction of a millisecond per kilobyte.

Long texts are scored in overlapping windows and the highest window wins, so one injected
sentence deep inside a long document is not averaged away by the benign text around it.

Weights live in ``wardgate/data/detectors/*.npz``; their SHA-256 digests are pinned in
``wardgate/data/MANIFEST.json`` and checked (constant-time) before a byte is parsed. The file is
read once and the verified bytes are what gets parsed, so it cannot change in between; npz is
read with ``allow_pickle=False``, so a weight file can carry numbers and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from wardgate.errors import ModelVerificationFailed

#: Width of the hashed feature space (a power of two, so ``& (dim - 1)`` folds hashes).
DEFAULT_DIM = 1 << 18
#: Texts up to this long are one window; longer ones are cut into WINDOW-sized windows.
SINGLE_WINDOW_MAX = 1200
WINDOW = 1000
STRIDE = 500
#: Long texts are also read in short windows, so a one-sentence injection in the middle of a
#: long e-mail is scored on its own rather than diluted by a kilobyte of filler around it.
FINE_WINDOW = 300
FINE_STRIDE = 150
CHAR_NGRAMS = (3, 4, 5)

_WORD_RE = re.compile(r"\w+")
_WHITESPACE = np.array(
    [
        ord(c)
        for c in " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000"
        "\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
        "\u2028\u2029\u202f\u205f\u3000"
    ],
    dtype=np.uint32,
)
_U64 = np.uint64
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_POLY = _U64(0x100000001B3)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


def _mix(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: spreads polynomial hashes over all bits before folding."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> _U64(30))
        h = h * _MIX1
        h = h ^ (h >> _U64(27))
        h = h * _MIX2
        return h ^ (h >> _U64(31))


def _lower_same_length(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters lower-case to two ("İ"); keep those as they are so offsets stay exact.
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def prepare(text: str) -> tuple[str, IntArray]:
    """Lower-case, collapse whitespace runs to one space; and where each kept char came from.

    Unicode tricks are the normaliser's job; this only makes n-grams insensitive to case and
    spacing. The offset map lets a finding point at the window of the *original* text.
    """
    lowered = _lower_same_length(text)
    codes = np.frombuffer(lowered.encode("utf-32-le"), dtype=np.uint32)
    space = np.isin(codes, _WHITESPACE)
    keep = ~(space & np.concatenate(([False], space[:-1])))
    origin = np.flatnonzero(keep).astype(np.int64)
    kept = np.where(space, np.uint32(32), codes)[keep]
    return kept.tobytes().decode("utf-32-le"), origin


#: Kinds of n-gram in :class:`Grams`: the main block holds CHAR, WORD and BIGRAM; the word
#: block holds WORD, BIGRAM and SKIP (word pairs one word apart).
CHAR, WORD, BIGRAM, SKIP = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Grams:
    """Every n-gram hash of a prepared text with its character span and kind, ordered by start."""

    hashes: npt.NDArray[np.uint64]
    starts: IntArray
    ends: IntArray
    kinds: npt.NDArray[np.uint8]


def ngram_hashes(prepared: str, skip_bigrams: bool = False) -> Grams:
    """Hashes of char 3-5-grams and word 1-2-grams (and, if asked, skip-bigrams), namespaced.

    Skip-bigrams only feed a word block, so detectors without one do not pay for them.
    """
    codes = np.frombuffer(prepared.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts: list[npt.NDArray[np.uint64]] = []
    starts: list[IntArray] = []
    ends: list[IntArray] = []
    kinds: list[npt.NDArray[np.uint8]] = []
    length = len(codes)
    with np.errstate(over="ignore"):
        for n in CHAR_NGRAMS:
            if length < n:
                continue
            count = length - n + 1
            h = np.full(count, _U64(n) * _U64(0x9E3779B97F4A7C15), dtype=np.uint64)
            for k in range(n):
                h = h * _POLY + codes[k : k + count]
            parts.append(h)
            pos = np.arange(count, dtype=np.int64)
            starts.append(pos)
            ends.append(pos + n)
            kinds.append(np.full(count, CHAR, dtype=np.uint8))
        matches = list(_WORD_RE.finditer(prepared))
        if matches:
            words = np.array(
                [zlib.crc32(m.group(0).encode("utf-8")) for m in matches], dtype=np.uint64
            )
            w_start = np.array([m.start() for m in matches], dtype=np.int64)
            w_end = np.array([m.end() for m in matches], dtype=np.int64)
            parts.append(words * _POLY + _U64(0xA0761D6478BD642F))
            starts.append(w_start)
            ends.append(w_end)
            kinds.append(np.full(len(words), WORD, dtype=np.uint8))
            if len(words) > 1:
                parts.append((words[:-1] * _POLY + words[1:]) * _POLY + _U64(0xE7037ED1A0B428DB))
                starts.append(w_start[:-1])
                ends.append(w_end[1:])
                kinds.append(np.full(len(words) - 1, BIGRAM, dtype=np.uint8))
            if skip_bigrams and len(words) > 2:
                parts.append((words[:-2] * _POLY + words[2:]) * _POLY + _U64(0x8EBC6AF09C88C6E3))
                starts.append(w_start[:-2])
                ends.append(w_end[2:])
                kinds.append(np.full(len(words) - 2, SKIP, dtype=np.uint8))
    if not parts:
        empty_u = np.zeros(0, dtype=np.uint64)
        empty_i = np.zeros(0, dtype=np.int64)
        return Grams(empty_u, empty_i, empty_i, np.zeros(0, dtype=np.uint8))
    # Sorted by start, so a window's n-grams are one contiguous slice (searchsorted), which keeps
    # a huge text linear in its length instead of windows x n-grams.
    all_starts = np.concatenate(starts)
    order = np.argsort(all_starts, kind="stable")
    return Grams(
        _mix(np.concatenate(parts))[order],
        all_starts[order],
        np.concatenate(ends)[order],
        np.concatenate(kinds)[order],
    )


def _cover(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    spans = [(s, min(s + size, length)) for s in range(0, length - size + stride, stride)]
    if spans[-1][1] < length:
        spans.append((length - size, length))
    return spans


def windows(length: int, fine: bool = True) -> list[tuple[int, int]]:
    """Character windows that cover ``length`` with overlap (one window for short texts).

    Long texts get 1,000-character windows and, with ``fine``, 300-character ones as well.
    Training fits on the coarse windows only (a short window of a long positive text may hold
    none of the payload); scoring, threshold tuning and serving read both.
    """
    if length <= SINGLE_WINDOW_MAX:
        return [(0, length)]
    spans = _cover(length, WINDOW, STRIDE)
    if fine:
        spans += _cover(length, FINE_WINDOW, FINE_STRIDE)
    return spans


def _fold(hashes: npt.NDArray[np.uint64], dim: int) -> tuple[IntArray, FloatArray]:
    """Log-scaled, L2-normalised counts of hashes folded into ``dim`` buckets."""
    folded = (hashes & _U64(dim - 1)).astype(np.int64)
    if folded.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    index, counts = np.unique(folded, return_counts=True)
    values = np.log1p(counts).astype(np.float32)
    values /= np.float32(np.sqrt(np.dot(values, values)))
    return index, values


def vectorise(
    grams: Grams, start: int, end: int, dim: int, word_dim: int = 0
) -> tuple[IntArray, FloatArray, IntArray, FloatArray]:
    """Sparse main block and word block (indices, values) of the n-grams inside [start, end).

    The word block is empty when ``word_dim`` is 0 (a detector trained without one).
    """
    lo, hi = np.searchsorted(grams.starts, (start, end), side="left")
    inside = grams.ends[lo:hi] <= end
    hashes = grams.hashes[lo:hi][inside]
    if not word_dim:
        # Grams built without skip-bigrams (featurise_windows does that): no kind to filter.
        index, values = _fold(hashes, dim)
        return index, values, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    kinds = grams.kinds[lo:hi][inside]
    index, values = _fold(hashes[kinds != SKIP], dim)
    return (index, values, *_fold(hashes[kinds != CHAR], word_dim))


@dataclass(frozen=True, slots=True)
class Window:
    """One scored window: offsets into the original text and its two sparse feature blocks."""

    start: int
    end: int
    index: IntArray
    values: FloatArray
    word_index: IntArray
    word_values: FloatArray


def featurise_windows(
    text: str, dim: int = DEFAULT_DIM, word_dim: int = 0, fine: bool = True
) -> list[Window]:
    """Every window of ``text`` with its features; offsets point into ``text`` itself."""
    prepared, origin = prepare(text)
    grams = ngram_hashes(prepared, skip_bigrams=word_dim > 0)
    out = []
    for s, e in windows(len(prepared), fine):
        start = int(origin[s]) if s < len(origin) else len(text)
        end = int(origin[e - 1]) + 1 if e > 0 else 0
        out.append(Window(start, end, *vectorise(grams, s, e, dim, word_dim)))
    return out


def featurise(text: str, dim: int = DEFAULT_DIM) -> list[tuple[int, int, IntArray, FloatArray]]:
    """(start, end, indices, values) of the main block per window (no word block)."""
    return [(w.start, w.end, w.index, w.values) for w in featurise_windows(text, dim)]


def sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))


@dataclass(frozen=True, slots=True)
class WindowScore:
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class Detection:
    """The result for one text: the best window's probability and (optionally) a category."""

    score: float
    flagged: bool
    start: int
    end: int
    category: str | None = None
    category_score: float = 0.0


class LinearDetector:
    """A binary linear detector over hashed n-grams, with an optional category head.

    ``threshold`` was picked on validation data by the training script; ``category_labels``
    (e.g. ``S1``..``S14``) name the rows of the category head when there is one.
    """

    def __init__(
        self,
        weights: FloatArray,
        bias: float,
        threshold: float,
        *,
        name: str = "detector",
        category_weights: FloatArray | None = None,
        category_bias: FloatArray | None = None,
        category_labels: tuple[str, ...] = (),
        meta: dict[str, object] | None = None,
        word_weights: FloatArray | None = None,
    ) -> None:
        dim = int(weights.shape[0])
        word_dim = 0 if word_weights is None else int(word_weights.shape[0])
        if dim & (dim - 1) or word_dim & (word_dim - 1):
            raise ValueError("feature dimensions must be powers of two")
        self.name = name
        self.weights = weights.astype(np.float32, copy=False)
        self.word_weights = (
            None if word_weights is None else word_weights.astype(np.float32, copy=False)
        )
        self.word_dim = word_dim
        self.bias = float(bias)
        self.threshold = float(threshold)
        self.dim = dim
        self.category_weights = category_weights
        self.category_bias = category_bias
        self.category_labels = category_labels
        self.meta = dict(meta or {})

    def window_score(self, window: Window) -> float:
        z = float(np.dot(self.weights[window.index], window.values)) + self.bias
        if self.word_weights is not None:
            z += float(np.dot(self.word_weights[window.word_index], window.word_values))
        return sigmoid(z)

    def window_scores(self, text: str) -> list[WindowScore]:
        return [
            WindowScore(w.start, w.end, self.window_score(w))
            for w in featurise_windows(text, self.dim, self.word_dim)
        ]

    def score(self, text: str) -> float:
        """Probability that ``text`` is positive: the maximum over its windows."""
        return max(w.score for w in self.window_scores(text))

    def detect(self, text: str, threshold: float | None = None) -> Detection:
        """Score every window, flag at ``threshold`` (default: the trained one), categorise."""
        feats = featurise_windows(text, self.dim, self.word_dim)
        return self.detection([(w, self.window_score(w)) for w in feats], threshold)

    def detection(
        self, scored: list[tuple[Window, float]], threshold: float | None = None
    ) -> Detection:
        """The text's detection from its scored windows: the first highest window wins.

        Shared with the cascade, which scores some windows a second time before this step.
        """
        limit = self.threshold if threshold is None else threshold
        best, best_score = max(scored, key=lambda pair: pair[1])
        category, category_score = self.categorise(best.index, best.values)
        flagged = best_score >= limit
        return Detection(best_score, flagged, best.start, best.end, category, category_score)

    def detect_many(self, texts: list[str], threshold: float | None = None) -> list[Detection]:
        """``detect`` for each text (the cascade shares a budget across them; this needs none)."""
        return [self.detect(text, threshold) for text in texts]

    def detect_many_cheap(self, texts: list[str]) -> list[Detection] | None:
        """Same as ``detect_many``: n-grams are always cheap."""
        return self.detect_many(texts)

    def categorise(self, index: IntArray, values: FloatArray) -> tuple[str | None, float]:
        if self.category_weights is None or self.category_bias is None:
            return None, 0.0
        cat_dim = int(self.category_weights.shape[1])
        folded = index & (cat_dim - 1)
        logits = self.category_weights[:, folded].astype(np.float32) @ values + self.category_bias
        logits = logits - logits.max()
        probs = np.exp(logits) / np.exp(logits).sum()
        top = int(np.argmax(probs))
        return self.category_labels[top], float(probs[top])

    # ------------------------------------------------------------------ (de)serialisation

    def to_npz_bytes(self) -> bytes:
        """The weight file: plain arrays plus a JSON header, loadable without pickle."""
        header = {
            "name": self.name,
            "bias": self.bias,
            "threshold": self.threshold,
            "category_labels": list(self.category_labels),
            "meta": self.meta,
        }
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "weights": self.weights,
            "header": header_array(header),
        }
        if self.category_weights is not None and self.category_bias is not None:
            arrays["category_weights"] = self.category_weights
            arrays["category_bias"] = self.category_bias
        if self.word_weights is not None:
            arrays["word_weights"] = self.word_weights
        return npz_bytes(arrays)

    @classmethod
    def from_npz_bytes(cls, data: bytes) -> LinearDetector:
        header, arrays = read_npz(data)
        return cls(
            arrays["weights"],
            float(header["bias"]),
            float(header["threshold"]),
            name=str(header["name"]),
            category_weights=arrays.get("category_weights"),
            category_bias=arrays.get("category_bias"),
            category_labels=tuple(header.get("category_labels", ())),
            meta=dict(header.get("meta", {})),
            word_weights=arrays.get("word_weights"),
        )


# ---------------------------------------------------------------------- weight files


def header_array(header: dict[str, object]) -> npt.NDArray[np.uint8]:
    """A JSON header stored as bytes, so the file needs no pickle to carry it."""
    return np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)


def npz_bytes(arrays: dict[str, npt.NDArray[np.generic]]) -> bytes:
    """Compressed npz of ``arrays`` in their order (the order is part of the pinned bytes)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def read_npz(data: bytes) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """(header, other arrays) of a weight file, read without pickle."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
    return header, arrays


# ---------------------------------------------------------------------- pinned weights

MANIFEST_NAME = "MANIFEST.json"


def data_root() -> Path:
    """``wardgate/data`` inside the installed package (or the source tree)."""
    return Path(str(resources.files("wardgate") / "data"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pinned_digests(root: Path) -> dict[str, str]:
    """``{relpath: sha256}`` from the folder's MANIFEST.json; empty when it is unreadable."""
    try:
        files = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))["files"]
        return {str(k): str(v) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def read_verified(relpath: str, root: Path | None = None) -> bytes:
    """The bytes of a shipped data file, after checking them against MANIFEST.json.

    Raises :class:`~wardgate.errors.ModelVerificationFailed` when the manifest has no entry for
    the file, the file is missing, or its digest differs: a detector that cannot prove what it
    is does not load (fail closed).
    """
    base = root or data_root()
    expected = pinned_digests(base).get(relpath)
    if expected is None:
        raise ModelVerificationFailed(f"no pinned digest for {relpath!r} in {MANIFEST_NAME}")
    try:
        data = (base / relpath).read_bytes()
    except OSError as exc:
        raise ModelVerificationFailed(f"detector weights {relpath!r} are missing") from exc
    if not hmac.compare_digest(sha256_hex(data), expected.lower()):
        raise ModelVerificationFailed(
            f"detector weights {relpath!r} do not match their pinned SHA-256; refusing to load"
        )
    return data


def load_detector(name: str, root: Path | None = None) -> LinearDetector:
    """Load ``detectors/<name>.npz`` (``injection`` or ``harmful``) after verifying its digest."""
    return LinearDetector.from_npz_bytes(read_verified(f"detectors/{name}.npz", root))
