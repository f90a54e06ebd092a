"""Invisible Unicode: tag characters, zero-width characters, bidi controls, smuggled bytes.

Text that renders identically can carry instructions a human reviewer never sees: ASCII
encoded as tag characters (U+E0000 block), bytes encoded as variation selectors, words broken
by zero-width characters to dodge detectors, bidi overrides that reorder what is displayed.
Hidden payloads are blocked; formatting characters that have legitimate uses are stripped.

Legitimate uses kept: emoji subdivision flags (U+1F3F4 followed by tag characters), a single
variation selector after a character (emoji presentation), and zero-width joiners/non-joiners
that join non-ASCII characters (emoji ZWJ sequences, Persian and Indic scripts).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field

from wardgate.guards.base import Finding, Guard, GuardOptions, ScanContext, Verdict
from wardgate.guards.entities import Entity, replace_spans
from wardgate.guards.normalise import BIDI_CONTROLS

Treatment = Literal["block", "strip", "allow"]

_FLAG_SEQUENCE = re.compile("\U0001f3f4[\U000e0061-\U000e007a\U000e0030-\U000e0039]{2,6}\U000e007f")
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
#: The start of a subdivision flag at the very end of a streamed window (still arriving).
_OPEN_FLAG = re.compile("\U0001f3f4[\U000e0061-\U000e007a\U000e0030-\U000e0039]{0,6}\\Z")
_VS_RUN = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{2,}")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060-\u2064\ufeff\u00ad\u180e\u034f]+")
_BIDI = re.compile("[" + "".join(chr(c) for c in sorted(BIDI_CONTROLS)) + "]+")


class UnicodeOptions(GuardOptions):
    tag_chars: Treatment = "block"
    #: Two or more variation selectors in a row: bytes smuggled as selectors.
    variation_selector_runs: Treatment = "block"
    bidi_controls: Treatment = "strip"
    zero_width: Treatment = "strip"
    #: Above this many hidden characters in one text, block whatever the treatments say.
    max_hidden: int = Field(default=64, ge=0)


class InvisibleUnicodeGuard(Guard):
    type_name = "invisible_unicode"
    #: Emoji subdivision flags (up to 8 code points) and ZWJ sequences must be seen whole so
    #: they are kept, not taken for hidden characters (bench/stream_hold.py).
    stream_hold_chars: ClassVar[int] = 32
    block_code = "invisible_unicode"
    Options: ClassVar[type[UnicodeOptions]] = UnicodeOptions

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        if text.isascii():
            return Verdict.allow()
        options: UnicodeOptions = self.options
        suffix = ""
        if ctx.partial:
            # A flag cut by the window's end is judged on the next scan, when it is whole
            # (its tag characters alone would look like a smuggled payload).
            open_flag = _OPEN_FLAG.search(text)
            if open_flag:
                text, suffix = text[: open_flag.start()], text[open_flag.start() :]
        flags = [m.span() for m in _FLAG_SEQUENCE.finditer(text)]
        hits: list[tuple[str, int, int, Treatment]] = []
        hidden = 0
        for kind, pattern, treatment in (
            ("tag_chars", _TAG_RUN, options.tag_chars),
            ("variation_selector_run", _VS_RUN, options.variation_selector_runs),
            ("bidi_control", _BIDI, options.bidi_controls),
            ("zero_width", _ZERO_WIDTH, options.zero_width),
        ):
            for m in pattern.finditer(text):
                start, end = m.span()
                if kind == "tag_chars" and any(s <= start and end <= e for s, e in flags):
                    continue
                if kind == "zero_width" and _legit_joiner(text, m.group(0), start):
                    continue
                hits.append((kind, start, end, treatment))
                hidden += end - start
                if hidden > options.max_hidden:
                    # Enough to decide; stop before a flood of hidden characters costs more.
                    return Verdict.block(
                        self.block_code,
                        tuple(Finding(k, s, e) for k, s, e, _ in hits),
                        {"hidden_chars": float(hidden)},
                    )
        if not hits:
            return Verdict.allow()
        findings = tuple(Finding(kind, s, e) for kind, s, e, _ in hits)
        scores = {"hidden_chars": float(hidden)}
        if any(t == "block" for *_, t in hits):
            return Verdict.block(self.block_code, findings, scores)
        stripped = [Entity(k, s, e, 1.0, "") for k, s, e, t in hits if t == "strip"]
        if not stripped:
            return Verdict.allow(findings, scores)
        ordered = sorted(stripped, key=lambda x: x.start)
        redacted = replace_spans(text, ordered, lambda _: "") + suffix
        return Verdict.redact(redacted, findings, scores)


def _legit_joiner(text: str, run: str, index: int) -> bool:
    """A single ZWJ/ZWNJ between non-ASCII characters (emoji sequences, Persian, Indic)."""
    return run in ("\u200c", "\u200d") and _joins_non_ascii(text, index)


def _joins_non_ascii(text: str, index: int) -> bool:
    before = text[index - 1] if index else ""
    after = text[index + 1] if index + 1 < len(text) else ""
    return bool(before) and bool(after) and not (before.isascii() and after.isascii())
