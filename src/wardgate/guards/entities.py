"""Spans of sensitive data (PII, secrets) and what the data guards do with them.

Detectors (``pii``, ``secrets``) return :class:`Entity` spans; the PII and secrets guards turn
them into verdicts with :func:`data_verdict`, and the pseudonymiser replaces them with stable
placeholders. Keeping the span type separate from the guards lets the pseudonymiser reuse the
detectors without running a pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from wardgate.guards.base import Finding, GuardOptions, ScanContext, Verdict

DataAction = Literal["flag", "redact", "restrict_on_prem", "block"]


@dataclass(frozen=True, slots=True)
class Entity:
    """``text[start:end]`` is sensitive data of ``kind`` (e.g. ``email``, ``openai_key``)."""

    kind: str
    start: int
    end: int
    score: float
    data_class: str

    def finding(self) -> Finding:
        return Finding(self.kind, self.start, self.end, self.score, self.data_class)


class Detector(Protocol):
    """Finds sensitive spans in text. Implementations must not fetch anything at run time."""

    def detect(self, text: str) -> list[Entity]: ...


def resolve_overlaps(entities: Iterable[Entity]) -> list[Entity]:
    """Keep the longest (then most certain) of overlapping spans, in text order."""
    ordered = sorted(entities, key=lambda e: (-(e.end - e.start), -e.score, e.start))
    kept: list[Entity] = []
    for entity in ordered:
        if all(entity.end <= k.start or entity.start >= k.end for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e.start)


def replace_spans(text: str, entities: Sequence[Entity], label: Callable[[Entity], str]) -> str:
    """``text`` with each (non-overlapping, sorted) entity replaced by ``label(entity)``."""
    out: list[str] = []
    position = 0
    for entity in entities:
        out.append(text[position : entity.start])
        out.append(label(entity))
        position = entity.end
    out.append(text[position:])
    return "".join(out)


def redaction_label(entity: Entity) -> str:
    """Redaction marker; deliberately matches no detector, so it never re-triggers one."""
    return f"[REDACTED:{entity.kind}]"


class DataGuardOptions(GuardOptions):
    """Options shared by the PII and secrets guards."""

    #: ``flag`` tags the request (routing keeps it in-house) without changing it. ``None`` is
    #: the stage default: ``flag`` on input, ``redact`` on output.
    action: DataAction | None = None
    #: Only these kinds count (None: all the detector knows).
    kinds: list[str] | None = None
    #: Findings below this score are ignored.
    min_score: float = 0.5


def data_verdict(
    text: str,
    entities: Sequence[Entity],
    options: DataGuardOptions,
    ctx: ScanContext,
    block_code: str,
) -> Verdict:
    """The verdict a data guard gives for ``entities`` found in ``text``."""
    wanted = [
        e
        for e in entities
        if e.score >= options.min_score and (options.kinds is None or e.kind in options.kinds)
    ]
    if not wanted:
        return Verdict.allow()
    kept = resolve_overlaps(wanted)
    findings = tuple(e.finding() for e in kept)
    scores = {f"{e.kind}": e.score for e in kept}
    action = options.action or ("flag" if ctx.stage == "input" else "redact")
    if action == "flag":
        return Verdict.allow(findings, scores)
    if action == "redact":
        return Verdict.redact(replace_spans(text, kept, redaction_label), findings, scores)
    if action == "restrict_on_prem":
        return Verdict.restrict(findings, scores)
    return Verdict.block(block_code, findings, scores)
