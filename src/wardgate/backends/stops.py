"""Stop sequences matched by Wardgate itself, so the answer can say which one matched.

llama.cpp cuts an answer at a stop sequence but reports the same ``finish_reason: stop`` as
for the end-of-turn token, and the Anthropic Messages API (``stop_reason: stop_sequence``,
``stop_sequence: "..."``) needs to know which. :class:`StopMatcher` is fed the text as it is
generated and releases what can no longer be the start of a stop sequence: a stream never
shows part of a stop sequence, and the answer ends before the first one, as with llama.cpp
and both vendors.
"""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        #: The stop sequence that ended the text, once one did.
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Text safe to release; after a match, the text before it (and nothing more)."""
        if self.matched is not None:
            return ""
        self._held += text
        first: tuple[int, str] | None = None
        for stop in self.stops:
            at = self._held.find(stop)
            if at >= 0 and (first is None or at < first[0]):
                first = (at, stop)
        if first is not None:
            self.matched = first[1]
            out, self._held = self._held[: first[0]], ""
            return out
        keep = max((_overlap(self._held, s) for s in self.stops), default=0)
        cut = len(self._held) - keep
        out, self._held = self._held[:cut], self._held[cut:]
        return out

    def finish(self) -> str:
        """What was held back when the text ended without a match."""
        out, self._held = self._held, ""
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``stop``."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
