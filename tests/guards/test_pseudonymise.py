"""Reversible pseudonymisation: stable placeholders out, originals back, streams included."""

from __future__ import annotations

import random

import pytest

from wardgate.chat import ChatRequest
from wardgate.guards.pseudonymise import MAX_PLACEHOLDER, Pseudonymiser

EMAIL = "jane.doe@example.com"
KEY = "sk-proj-Zx81aQ2wE9rT6yU3iO0pL5kJ7hG4fD1s"
CARD = "4111 1111 1111 1111"


def _request() -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": "gpt",
            "messages": [
                {"role": "system", "content": f"Escalate to {EMAIL}."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"Email {EMAIL} my card {CARD}; key {KEY}"},
                        {"type": "image_url", "image_url": {"url": "http://x"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "send", "arguments": f'{{"to": "{EMAIL}"}}'},
                        },
                    ],
                },
            ],
        }
    )


def test_apply_replaces_everywhere_with_stable_placeholders() -> None:
    p = Pseudonymiser()
    out = p.apply(_request())
    dumped = out.model_dump_json()
    for secret in (EMAIL, KEY, CARD):
        assert secret not in dumped
    assert out.messages[0].text == "Escalate to <EMAIL_1>."
    assert out.messages[1].text == "Email <EMAIL_1> my card <CREDIT_CARD_1>; key <OPENAI_KEY_1>"
    assert out.messages[1].content[1].type == "image_url"  # type: ignore[index,union-attr]
    assert out.messages[2].tool_calls[0]["function"]["arguments"] == '{"to": "<EMAIL_1>"}'  # type: ignore[index]
    assert p.replaced == 3 and p.kinds == {"email": 1, "credit_card": 1, "openai_key": 1}


def test_restore_only_known_placeholders() -> None:
    p = Pseudonymiser()
    p.apply(_request())
    answer = "I wrote to <EMAIL_1> about <CREDIT_CARD_1>; <EMAIL_2> and <b>bold</b> stay."
    assert p.restore(answer) == f"I wrote to {EMAIL} about {CARD}; <EMAIL_2> and <b>bold</b> stay."


@pytest.mark.parametrize("seed", range(6))
def test_restore_stream_handles_placeholders_split_across_chunks(seed: int) -> None:
    p = Pseudonymiser()
    p.apply(_request())
    answer = "Sure <EMAIL_1>, your key <OPENAI_KEY_1> is set; x < y and <EMAIL_1>!" * 3
    rng = random.Random(seed)
    restorer = p.restore_stream()
    out, i = [], 0
    while i < len(answer):
        size = rng.randint(1, 6)
        out.append(restorer.feed(answer[i : i + size]))
        assert len(restorer._held) <= MAX_PLACEHOLDER
        i += size
    out.append(restorer.finish())
    assert "".join(out) == p.restore(answer)
    assert "<EMAIL_1>" not in "".join(out)


def test_stream_releases_text_that_is_not_a_placeholder() -> None:
    p = Pseudonymiser()
    p.apply(_request())
    restorer = p.restore_stream()
    assert restorer.feed("a < b") == "a < b"
    assert restorer.feed("see <EMA") == "see "
    assert restorer.feed("IL_1> ok") == f"{EMAIL} ok"
    assert restorer.feed("<unterminated tag that is long enough to not be a placeholder") != ""
