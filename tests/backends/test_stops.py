"""Stop sequences matched by the gateway: nothing of a stop sequence is ever released."""

from __future__ import annotations

import pytest

from wardgate.backends.stops import StopMatcher


@pytest.mark.parametrize("pieces", [
    ["Hello wor", "ld. EN", "D more"],
    ["Hello world. ", "E", "N", "D", " more"],
    ["Hello world. END more"],
])  # fmt: skip
def test_the_answer_ends_before_the_first_stop(pieces: list[str]) -> None:
    matcher = StopMatcher(["END", "world!"])
    released = "".join(matcher.feed(p) for p in pieces)
    assert released == "Hello world. " and matcher.matched == "END"
    assert matcher.feed("anything") == "" and matcher.finish() == ""


def test_a_held_prefix_that_does_not_become_a_stop_is_released() -> None:
    matcher = StopMatcher(["END"])
    assert matcher.feed("the E") == "the "
    assert matcher.feed("N") == ""
    assert matcher.feed("ding") == "ENding"
    assert matcher.feed("…E") == "…"
    assert matcher.finish() == "E" and matcher.matched is None


def test_the_earliest_stop_wins() -> None:
    matcher = StopMatcher(["bb", "a"])
    assert matcher.feed("xxbba") == "xx" and matcher.matched == "bb"
