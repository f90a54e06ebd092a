"""Reversible pseudonymisation: the vendor sees ``<EMAIL_1>``, the client sees the real address.

Before a request goes to a ``vendor`` model, every PII and secret span is replaced by a
placeholder that is stable within the request (the same address is ``<EMAIL_1>`` in every
message, so the vendor model can still reason about "the same person"). The answer is
restored on the way back. Streaming answers may split a placeholder across chunks
(``"<EMA"`` + ``"IL_1>"``), so :class:`StreamRestorer` holds back a trailing partial
placeholder - at most :data:`MAX_PLACEHOLDER` characters - until it is complete or clearly
not a placeholder.

Only placeholders this request created are restored; anything else the vendor writes that
looks like one passes through unchanged. The mapping lives in memory for one request only and
is never logged.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from wardgate.chat import ChatMessage, ChatRequest
from wardgate.guards.entities import Detector, Entity, replace_spans, resolve_overlaps

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]{0,38}_\d{1,6}>")
_PARTIAL = re.compile(r"<[A-Z0-9_]{0,46}$")
#: Longest placeholder text; the stream restorer never holds back more than this.
MAX_PLACEHOLDER = 48


def default_detectors() -> list[Detector]:
    from wardgate.guards.pii import PiiDetector, PiiOptions
    from wardgate.guards.secrets import SecretDetector

    return [PiiDetector(PiiOptions()), SecretDetector()]


class Pseudonymiser:
    """Per-request placeholder mapping. Create one per request (``pipeline.pseudonymiser()``)."""

    def __init__(self, detectors: Sequence[Detector] | None = None) -> None:
        self._detectors = list(detectors) if detectors is not None else default_detectors()
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counts: Counter[str] = Counter()

    @property
    def replaced(self) -> int:
        """How many distinct values were replaced (for the audit record; values never leave)."""
        return len(self._by_placeholder)

    @property
    def kinds(self) -> dict[str, int]:
        return dict(self._counts)

    def _placeholder(self, entity: Entity, value: str) -> str:
        key = (entity.kind, value)
        if key not in self._by_value:
            self._counts[entity.kind] += 1
            label = f"<{entity.kind.upper()}_{self._counts[entity.kind]}>"
            self._by_value[key] = label
            self._by_placeholder[label] = value
        return self._by_value[key]

    def pseudonymise(self, text: str) -> str:
        """``text`` with every detected PII/secret span replaced by its placeholder."""
        if not text:
            return text
        entities = resolve_overlaps(e for d in self._detectors for e in d.detect(text))
        if not entities:
            return text
        return replace_spans(text, entities, lambda e: self._placeholder(e, text[e.start : e.end]))

    def apply(self, request: ChatRequest) -> ChatRequest:
        """The request with every message text (and tool-call argument) pseudonymised."""
        messages = [self._message(m) for m in request.messages]
        return request.model_copy(update={"messages": messages})

    def _message(self, message: ChatMessage) -> ChatMessage:
        update: dict[str, object] = {}
        if isinstance(message.content, str):
            update["content"] = self.pseudonymise(message.content)
        elif message.content:
            update["content"] = [
                part.model_copy(update={"text": self.pseudonymise(part.text)})
                if part.type == "text" and part.text
                else part
                for part in message.content
            ]
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                function = dict(call.get("function") or {})
                if isinstance(function.get("arguments"), str):
                    function["arguments"] = self.pseudonymise(function["arguments"])
                calls.append({**call, "function": function} if function else dict(call))
            update["tool_calls"] = calls
        return message.model_copy(update=update) if update else message

    def restore(self, text: str) -> str:
        """Put the original values back for every placeholder this request created."""
        if not self._by_placeholder:
            return text
        return _PLACEHOLDER.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)

    def restore_stream(self) -> StreamRestorer:
        return StreamRestorer(self)


class StreamRestorer:
    """Restores placeholders in a stream; ``feed(chunk) -> str``, then ``finish() -> str``."""

    def __init__(self, pseudonymiser: Pseudonymiser) -> None:
        self._pseudonymiser = pseudonymiser
        self._held = ""

    def feed(self, text: str) -> str:
        buffer = self._held + text
        partial = _PARTIAL.search(buffer[-MAX_PLACEHOLDER:])
        if partial:
            cut = len(buffer) - (len(buffer[-MAX_PLACEHOLDER:]) - partial.start())
            self._held, buffer = buffer[cut:], buffer[:cut]
        else:
            self._held = ""
        return self._pseudonymiser.restore(buffer)

    def finish(self) -> str:
        held, self._held = self._held, ""
        return self._pseudonymiser.restore(held)
