"""Prompt injection and jailbreak detection, direct and indirect.

Scans every text the pipeline hands it: user and system messages, assistant history, tool
results and documents (indirect injection arrives through those). A learned linear model over
hashed n-grams (``wardgate.guards.classifier``) scores the text in windows, so one injected
paragraph inside a long web page still stands out; the normaliser's readings are scored too.

Config::

    guards:
      input:
        - type: prompt_injection
          options: {threshold: 0.5}   # optional; default is the tuned threshold
"""

from __future__ import annotations

from typing import ClassVar

from wardgate.guards._learned import LearnedOptions, load, worst_reading
from wardgate.guards.base import Finding, Guard, GuardEnvironment, ScanContext, Verdict
from wardgate.guards.config import GuardSpec

SCORE_KEY = "prompt_injection"


class InjectionOptions(LearnedOptions):
    """See :class:`~wardgate.guards._learned.LearnedOptions`."""


class PromptInjectionGuard(Guard):
    """Blocks texts that try to override the model's instructions or jailbreak it."""

    type_name = "prompt_injection"
    block_code = "prompt_injection_detected"
    stages: ClassVar[frozenset[str]] = frozenset({"input"})
    blocking = True
    Options = InjectionOptions

    def __init__(self, spec: GuardSpec, env: GuardEnvironment | None = None) -> None:
        super().__init__(spec, env)
        # Loaded (and digest-checked) once, at start-up: a bad weight file stops the gateway
        # from starting instead of failing every request.
        self.detector = load("injection", self.options)

    @property
    def threshold(self) -> float:
        configured: float | None = self.options.threshold
        return self.detector.threshold if configured is None else configured

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        reading = worst_reading(self.detector, text, self.options)
        found = reading.detection
        scores = {SCORE_KEY: found.score}
        if not found.flagged:
            return Verdict.allow(scores=scores)
        kind = (
            SCORE_KEY if reading.how in ("original", "canonical") else f"{SCORE_KEY}/{reading.how}"
        )
        # Offsets only point into the text itself for the original reading.
        start, end = (found.start, found.end) if reading.how == "original" else (-1, -1)
        finding = Finding(kind=kind, start=start, end=end, score=found.score)
        return Verdict.block(self.block_code, (finding,), scores)
