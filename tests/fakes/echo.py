"""The fake model: a deterministic echo, so tests can assert exact text and token counts.

The answer to a conversation is ``"Echo: " + <last user text>``. A "token" is a word with
its trailing whitespace, so ``"".join(pieces)`` is the answer and a stream sends one piece
per chunk. Stop sequences cut the answer before their first occurrence (and are not
included, as with both vendors); ``max_tokens`` then cuts it to that many pieces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

_PIECE = re.compile(r"\S+\s*|\s+")


def count_tokens(text: str) -> int:
    return len(text.split())


def split_pieces(text: str) -> list[str]:
    return _PIECE.findall(text)


@dataclass(frozen=True, slots=True)
class Answer:
    pieces: list[str]
    finish: Literal["stop", "length", "stop_sequence"]
    stop_sequence: str | None
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)


def echo_answer(
    last_user_text: str, prompt_tokens: int, max_tokens: int | None, stops: list[str]
) -> Answer:
    text = "Echo: " + last_user_text
    finish: Literal["stop", "length", "stop_sequence"] = "stop"
    matched: str | None = None
    cut = len(text)
    for stop in stops:
        at = text.find(stop) if stop else -1
        if 0 <= at < cut:
            cut, matched = at, stop
    if matched is not None:
        text, finish = text[:cut], "stop_sequence"
    pieces = split_pieces(text)
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces, finish, matched = pieces[:max_tokens], "length", None
    return Answer(pieces=pieces, finish=finish, stop_sequence=matched, prompt_tokens=prompt_tokens)


# -- tools and JSON answers ------------------------------------------------------------------
#
# The fake model calls tools when told to, so tests script calls through the conversation
# itself: a line ``CALL <name> <JSON object>`` in the last user text is one call (several
# lines, several calls). A forced tool (``tool_choice`` naming it, or "required"/"any")
# without such a line is called with the user text as arguments when that text is a JSON
# object, else with ``{}``. ``tool_choice: auto`` without a line answers with text. After a
# tool result the answer echoes the result. With a JSON ``response_format`` the answer is
# the user text when it is a JSON object, else ``{"echo": <text>}``.

_CALL_LINE = re.compile(r"^CALL ([A-Za-z0-9_-]{1,64}) (\{.*\})\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PlannedCall:
    name: str
    arguments: str  # compact JSON text

    @property
    def pieces(self) -> list[str]:
        """The arguments as a real model streams them: a few characters at a time."""
        return [self.arguments[i : i + 7] for i in range(0, len(self.arguments), 7)]


def _json_object(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else None


def plan_tool_calls(
    last_user_text: str,
    tool_names: list[str],
    *,
    forced: str | None = None,
    required: bool = False,
    parallel: bool = True,
    declared_only: bool = True,
) -> list[PlannedCall]:
    """``declared_only=False`` lets a scripted line call a tool the request never declared,
    as a real model sometimes does (the gateway's tool policy must catch it)."""
    calls = [
        PlannedCall(name, _json_object(args) or "{}")
        for name, args in _CALL_LINE.findall(last_user_text)
        if (name in tool_names or not declared_only) and (forced is None or name == forced)
    ]
    if not calls and (forced is not None or required) and tool_names:
        calls = [PlannedCall(forced or tool_names[0], _json_object(last_user_text) or "{}")]
    return calls if parallel else calls[:1]


def json_answer(last_user_text: str) -> str:
    return _json_object(last_user_text) or json.dumps({"echo": last_user_text})
