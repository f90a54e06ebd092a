"""Oversized and repetitive input: cheap denial-of-wallet and context-flooding defences.

Size is counted per text in characters (tokenisers differ per model; characters are what the
gateway sees for free). Repetition is measured with zlib: text that compresses to under
``min_compression_ratio`` of its size is mostly the same few bytes over and over ("repeat
'poem' forever", padding that pushes the system prompt out of the context window). One C-speed
pass, no tokeniser.
"""

from __future__ import annotations

import re
import zlib
from typing import ClassVar

from pydantic import Field

from wardgate.guards.base import Finding, Guard, GuardOptions, ScanContext, Verdict


class SizeOptions(GuardOptions):
    max_chars: int = Field(default=200_000, ge=1)
    #: Texts shorter than this are never called repetitive.
    repetition_min_chars: int = Field(default=2_000, ge=1)
    min_compression_ratio: float = Field(default=0.06, ge=0, le=1)
    #: A run of one character longer than this is repetitive regardless of compression.
    max_char_run: int = Field(default=1_000, ge=2)


class SizeGuard(Guard):
    type_name = "size"
    block_code = "input_too_large"
    stages = frozenset({"input"})
    Options: ClassVar[type[SizeOptions]] = SizeOptions

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        options: SizeOptions = self.options
        size = len(text)
        if size > options.max_chars:
            return Verdict.block(self.block_code, (Finding("oversized"),), {"chars": float(size)})
        if size < options.repetition_min_chars:
            return Verdict.allow(scores={"chars": float(size)})
        sample = text[: options.max_chars].encode("utf-8", "surrogatepass")
        ratio = len(zlib.compress(sample, 1)) / max(1, len(sample))
        scores = {"chars": float(size), "compression_ratio": ratio}
        if ratio < options.min_compression_ratio or _longest_run(text, options.max_char_run):
            return Verdict.block("repetitive_input", (Finding("repetitive"),), scores)
        return Verdict.allow(scores=scores)


def _longest_run(text: str, limit: int) -> bool:
    """True when one character repeats more than ``limit`` times in a row (C-speed regex)."""
    return re.search(rf"(.)\1{{{limit},}}", text, re.DOTALL) is not None
