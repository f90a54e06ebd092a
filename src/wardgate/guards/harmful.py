"""Harmful-request moderation, with categories from the MLCommons hazard taxonomy (S1-S14).

The categories are the ones Llama Guard 3 uses, so a policy written for Llama Guard reads the
same here. The binary harmful/not decision is the measured, gated one; the category is a
best guess from a second linear head (see docs/guards.md for how good it is) and is carried in
the finding's kind, e.g. ``harmful/S9``. ``categories`` limits blocking to some hazards.

Texts the n-gram model is unsure about get a second opinion that reads meaning, not spelling:
a joint model over the n-grams and a MiniLM sentence embedding (``semantic.py``). It needs the
``semantic`` extra and the packaged MiniLM model; ``semantic: null`` (the default) uses it when
installed and logs a warning when not, ``true`` refuses to start without it, ``false`` never
uses it.

Graded: ``block`` at or above ``threshold`` (or the category's own entry in
``category_thresholds``), ``flag`` (allowed, audited) from ``flag_threshold``. Categories
outside ``categories`` or listed in ``relax`` are flagged, never blocked: an IT-helpdesk route
relaxes S2/S14 (non-violent crime, code abuse) that a public chatbot route blocks.

Config::

    guards:
      input:
        - type: harmful
          options:
            categories: [S1, S3, S4, S9, S11]   # optional; default: all
            relax: [S14]                        # flag these instead of blocking
            category_thresholds: {S9: 0.3}      # block weapons of mass harm sooner
      routes:
        helpdesk:
          options: {harmful: {relax: [S2, S14]}}   # per-route option overrides
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from wardgate.errors import ConfigError
from wardgate.guards._learned import (
    INLINE_MAX_CHARS,
    Detector,
    LearnedOptions,
    Reading,
    Thresholds,
    VerdictCache,
    load,
    worst_reading,
    worst_reading_cheap,
)
from wardgate.guards.base import Finding, Guard, GuardEnvironment, ScanContext, Verdict
from wardgate.guards.classifier import LinearDetector, data_root, pinned_digests, read_verified
from wardgate.guards.config import GuardSpec

log = logging.getLogger(__name__)
SEMANTIC_FILE = "detectors/harmful_semantic.npz"

#: MLCommons AI Safety hazard taxonomy as used by Llama Guard 3.
HAZARD_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}
SCORE_KEY = "harmful"


class HarmfulOptions(LearnedOptions):
    #: Block only these hazard categories (None: every category). Others are allowed, tagged.
    categories: list[str] | None = None
    #: Flag, never block, these categories (per route: ``routes.<r>.options.harmful.relax``).
    relax: list[str] = Field(default_factory=list)
    #: A block threshold per category, in place of ``threshold`` for that category.
    category_thresholds: dict[str, float] = Field(default_factory=dict)
    #: MiniLM second stage: None = when installed, True = required, False = off.
    semantic: bool | None = None

    @field_validator("categories", "relax")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(HAZARD_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown hazard categories {unknown}; use S1..S14")
        return value

    @field_validator("category_thresholds")
    @classmethod
    def _known_keys(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(HAZARD_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown hazard categories {unknown}; use S1..S14")
        if any(not 0.0 <= v <= 1.0 for v in value.values()):
            raise ValueError("category thresholds are probabilities in [0, 1]")
        return value


class HarmfulRequestGuard(Guard):
    """Blocks requests for harmful content; the finding names the hazard category."""

    type_name = "harmful"
    block_code = "harmful_request"
    stages: ClassVar[frozenset[str]] = frozenset({"input", "output"})
    blocking = True
    Options = HarmfulOptions

    def __init__(self, spec: GuardSpec, env: GuardEnvironment | None = None) -> None:
        super().__init__(spec, env)
        first = load("harmful", self.options)
        self.thresholds = Thresholds.resolve(first, self.options)
        self._cache = VerdictCache()
        self.detector: Detector = first
        if self.options.semantic is not False:
            self.detector = self._with_semantic_stage(first)

    def _with_semantic_stage(self, first: LinearDetector) -> Detector:
        """The cascade, or the n-gram model alone when the stage is optional and missing."""
        root = Path(self.options.weights_dir) if self.options.weights_dir else data_root()
        required = self.options.semantic is True
        if not required and SEMANTIC_FILE not in pinned_digests(root):
            return first  # custom weights without a semantic stage
        try:
            # Imported here: without the extra installed, the n-gram model still serves.
            from wardgate.guards.embedding import SemanticUnavailable, shared_encoder
            from wardgate.guards.semantic import CascadeDetector, SemanticStage

            stage = SemanticStage.from_npz_bytes(read_verified(SEMANTIC_FILE, root))
            return CascadeDetector(first, stage, shared_encoder())
        except (ImportError, SemanticUnavailable) as exc:
            if required:
                raise ConfigError(f"harmful guard: semantic stage unavailable: {exc}") from exc
            log.warning(
                "harmful guard runs without its semantic stage (%s); expect a lower detection "
                "rate (docs/guards.md)",
                exc,
            )
            return first

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        verdict = self._cache.get((text, False))
        if verdict is None:
            verdict = self._judge(worst_reading(self.detector, text, self.options))
            self._cache.put((text, False), verdict)
        return verdict

    def scan_inline(self, text: str, ctx: ScanContext) -> Verdict | None:
        """Cached, or short and needing no MiniLM pass: decided on the event loop."""
        verdict = self._cache.get((text, False))
        if verdict is not None or len(text) > INLINE_MAX_CHARS:
            return verdict
        reading = worst_reading_cheap(self.detector, text, self.options)
        if reading is None:
            return None  # MiniLM needed: the executor's job
        verdict = self._judge(reading)
        self._cache.put((text, False), verdict)
        return verdict

    def _judge(self, reading: Reading) -> Verdict:
        found = reading.detection
        scores = {SCORE_KEY: found.score}
        category = found.category or "S2"
        block_at = self.options.category_thresholds.get(category, self.thresholds.block)
        if found.score < min(self.thresholds.flag, block_at):
            return Verdict.allow(scores=scores)
        # Scores stay probabilities of harm only (judges take their max); the category and its
        # confidence live in the finding.
        start, end = (found.start, found.end) if reading.how == "original" else (-1, -1)
        finding = Finding(kind=f"{SCORE_KEY}/{category}", start=start, end=end, score=found.score)
        wanted = self.options.categories
        relaxed = category in self.options.relax or (wanted is not None and category not in wanted)
        if relaxed or found.score < block_at:
            return Verdict.flag(self.block_code, (finding,), scores)
        return Verdict.block(self.block_code, (finding,), scores)
