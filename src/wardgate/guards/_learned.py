"""What the two learned guards share: options, weight loading, scanning every reading of a text.

Each guard scores the original text and every variant the normaliser produces (NFKC, decoded
tag characters, base64/hex payloads, leetspeak, spaced letters, rot13), and keeps the worst:
an attacker who hides an instruction in base64 is judged on the decoded instruction.

Graded actions: a score at or above ``threshold`` blocks; a score in ``[flag_threshold,
threshold)`` is flagged (allowed, recorded in the audit decision and counted as
``outcome="flag"``). The shipped defaults are precision-first: ``threshold`` defaults to the
detector's ``block_threshold`` (picked on validation data so that benign-but-alarming
prompts are rarely refused), ``flag_threshold`` to the lower, recall-first threshold the
detector was tuned to.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import Field

from wardgate.guards.base import Action, GuardOptions, Verdict
from wardgate.guards.classifier import Detection, LinearDetector, load_detector
from wardgate.guards.normalise import variants


class LearnedOptions(GuardOptions):
    """Options common to the learned guards."""

    #: Block at or above this probability; None: the shipped, precision-first block threshold.
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    #: Flag (allow, audit, count) at or above this probability and below ``threshold``;
    #: None: the recall-first threshold tuned at training time. Set it to 1 for no flags.
    flag_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    #: Also score the normaliser's readings of the text (decoded payloads, leetspeak...).
    scan_variants: bool = True
    #: Upper bound on readings scored per text (the original is always one of them).
    max_variants: int = Field(default=8, ge=1, le=32)
    #: A folder with your own ``MANIFEST.json`` + ``detectors/<name>.npz``; None: shipped ones.
    weights_dir: str | None = None


class Detector(Protocol):
    """What the guards need of a detector: LinearDetector and the harmful CascadeDetector."""

    name: str
    threshold: float

    def detect(self, text: str, threshold: float | None = None) -> Detection: ...

    def score(self, text: str) -> float: ...

    def detect_many(self, texts: list[str], threshold: float | None = None) -> list[Detection]: ...

    def detect_many_cheap(self, texts: list[str]) -> list[Detection] | None:
        """``detect_many`` when it needs no costly step (a MiniLM pass), else None."""
        ...


#: Texts up to this long are scored on the event loop (n-grams of one window: ~0.1-0.3 ms,
#: less than the thread hop); longer ones, and any that need MiniLM, go to the executor.
INLINE_MAX_CHARS = 1200
#: Verdicts kept per guard, keyed by text: chat clients resend the whole history every turn.
VERDICT_CACHE = 4096
#: Longer texts are not kept (bounds the cache to ~16 MB of text per guard).
VERDICT_CACHE_MAX_CHARS = 4000


class VerdictCache:
    """A small thread-safe LRU of verdicts by (text, context key); verdicts are immutable."""

    def __init__(self, size: int = VERDICT_CACHE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, bool], Verdict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bool]) -> Verdict | None:
        with self._lock:
            verdict = self._items.get(key)
            if verdict is not None:
                self._items.move_to_end(key)
            return verdict

    def put(self, key: tuple[str, bool], verdict: Verdict) -> None:
        if len(key[0]) > VERDICT_CACHE_MAX_CHARS or self.size <= 0:
            return
        with self._lock:
            self._items[key] = verdict
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Reading:
    """The worst-scoring reading of a text and how it was obtained."""

    detection: Detection
    how: str


def block_threshold(detector: LinearDetector) -> float:
    """The shipped block threshold: ``meta["block_threshold"]``, else the tuned threshold."""
    value = detector.meta.get("block_threshold")
    return float(value) if isinstance(value, (int, float)) else detector.threshold


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a learned guard flags and where it blocks (``flag <= block``)."""

    flag: float
    block: float

    @classmethod
    def resolve(cls, detector: LinearDetector, options: LearnedOptions) -> Thresholds:
        block = block_threshold(detector) if options.threshold is None else options.threshold
        flag = detector.threshold if options.flag_threshold is None else options.flag_threshold
        return cls(min(flag, block), block)

    def action(self, score: float) -> Action:
        if score >= self.block:
            return Action.BLOCK
        return Action.FLAG if score >= self.flag else Action.ALLOW


def load(name: str, options: LearnedOptions) -> LinearDetector:
    """Load and verify the named detector; ModelVerificationFailed (a ConfigError) if it fails."""
    root = Path(options.weights_dir) if options.weights_dir else None
    return load_detector(name, root)


def worst_reading(detector: Detector, text: str, options: LearnedOptions) -> Reading:
    """Score the text and (optionally) its normalised variants; return the highest score.

    All readings go to the detector in one call, so a cascade spends one embedding budget on
    the message rather than one per reading.
    """
    best = _worst(detector, text, options, cheap=False)
    assert best is not None
    return best


def worst_reading_cheap(detector: Detector, text: str, options: LearnedOptions) -> Reading | None:
    """:func:`worst_reading` if it needs no costly step (see ``detect_many_cheap``), else None."""
    return _worst(detector, text, options, cheap=True)


def _worst(detector: Detector, text: str, options: LearnedOptions, cheap: bool) -> Reading | None:
    readings = variants(text, max_variants=options.max_variants) if options.scan_variants else []
    texts = [text] + [v.text for v in readings[1:]]
    hows = ["original"] + [v.how for v in readings[1:]]
    found = detector.detect_many_cheap(texts) if cheap else detector.detect_many(texts)
    if found is None:
        return None
    detections = found
    best = Reading(detections[0], hows[0])
    for detection, how in zip(detections[1:], hows[1:], strict=True):
        if detection.score > best.detection.score:
            best = Reading(detection, how)
    return best
