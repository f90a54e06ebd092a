"""The fake model: a deterministic echo, so tests can assert exact text and token counts.

The answer to a conversation is ``"Echo: " + <last user text>``. A "token" is a word with
its trailing whitespace, so ``"".join(pieces)`` is the answer and a stream sends one piece
per chunk. Stop sequences cut the answer before their first occurrence (and are not
included, as with both vendors); ``max_tokens`` then cuts it to that many pieces.
"""

from __future__ import annotations

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
