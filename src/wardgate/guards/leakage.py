"""System-prompt leakage: a per-request canary, and verbatim overlap with the system prompt.

Before the request leaves the gateway a random canary token is written into the system prompt
(``prepare``). The model has no reason ever to repeat it, so seeing it in the answer means the
system prompt is being echoed. Because the streaming scanner holds back what this guard
declares (:attr:`hold_chars`), a canary split across chunks is still caught before any of it
is sent.
The canary is also looked for with separators removed ("w g 1 2 ..." or "wg-12-...").

Paraphrase-free leaks without the canary line (the model skips the first line, or the app put
no system prompt through the gateway) are caught by word n-gram overlap: ``min_shared`` shared
``ngram``-word sequences (default: 8 five-word sequences, about a dozen verbatim words) in the
scanned text, or ``max_fraction`` of the system prompt's n-grams, is a leak.
"""

from __future__ import annotations

import re
import secrets
from typing import ClassVar

from pydantic import Field

from wardgate.chat import ChatMessage, ChatRequest
from wardgate.guards.base import (
    SYSTEM_ROLES,
    Finding,
    Guard,
    GuardOptions,
    RequestState,
    ScanContext,
    Verdict,
)

_WORD = re.compile(r"\w+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


class LeakOptions(GuardOptions):
    canary: bool = True
    ngram: int = Field(default=5, ge=2, le=20)
    min_shared: int = Field(default=8, ge=1)
    max_fraction: float = Field(default=0.5, gt=0, le=1)


def new_canary() -> str:
    """16 random hex digits behind a fixed prefix: unguessable, and not shaped like a secret."""
    return "wgc" + secrets.token_hex(8)


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class SystemPromptLeakGuard(Guard):
    type_name = "system_prompt_leak"
    block_code = "system_prompt_leak"
    Options: ClassVar[type[LeakOptions]] = LeakOptions

    @property
    def hold_chars(self) -> int:
        """Enough for the canary spelled out with separators (40), and for the words the
        overlap rule needs in one window: ``min_shared + ngram - 1`` words at 8 characters
        each (96 by default; bench/stream_hold.py measures 96 on an operator prompt)."""
        words = self.options.min_shared + self.options.ngram - 1
        return max(40, 8 * words)

    def prepare(self, request: ChatRequest, state: RequestState) -> ChatRequest:
        """Insert the canary at the top of the first system message (if there is one)."""
        if not self.options.canary or state.canary is not None:
            return request
        index = next((i for i, m in enumerate(request.messages) if m.role in SYSTEM_ROLES), None)
        if index is None:
            return request
        state.canary = new_canary()
        message = request.messages[index]
        marker = f"<!-- {state.canary} -->\n"
        content: str | list[object]
        if isinstance(message.content, list):
            content = [{"type": "text", "text": marker}, *message.content]
        else:
            content = marker + (message.content or "")
        messages = list(request.messages)
        messages[index] = ChatMessage.model_validate(
            {**message.model_dump(exclude_none=True), "content": content}
        )
        return request.model_copy(update={"messages": messages})

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        if ctx.stage != "output":
            return Verdict.allow()
        state = ctx.state
        canary = state.canary
        if canary and (canary in text or canary in _NOT_ALNUM.sub("", text.lower())):
            return Verdict.block(self.block_code, (Finding("canary"),), {"canary": 1.0})
        prompt_grams = self._prompt_grams(state)
        if not prompt_grams:
            return Verdict.allow()
        shared = len(prompt_grams & ngrams(text, self.options.ngram))
        fraction = shared / len(prompt_grams)
        scores = {"shared_ngrams": float(shared), "prompt_fraction": fraction}
        # The fraction rule needs a prompt long enough for a fraction to mean something: half
        # of a six-word "You are a helpful assistant." is just a common phrase.
        long_prompt = len(prompt_grams) >= self.options.min_shared
        if shared >= self.options.min_shared or (
            long_prompt and fraction >= self.options.max_fraction
        ):
            finding = Finding("prompt_overlap", score=fraction)
            return Verdict.block(self.block_code, (finding,), scores)
        return Verdict.allow(scores=scores)

    def _prompt_grams(self, state: RequestState) -> set[tuple[str, ...]]:
        key = f"{self.name}:ngrams"
        if key not in state.extra:
            state.extra[key] = ngrams(state.system_prompt, self.options.ngram)
        grams: set[tuple[str, ...]] = state.extra[key]
        return grams
