"""Header formatting follows OpenAI's duration style."""

from __future__ import annotations

import pytest

from wardgate.ratelimit import BucketView, LimitDecision, format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.0201, "21ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (59.25, "59.25s"),
        (60.0, "1m0s"),
        (360.0, "6m0s"),
        (61.1234, "1m1.123s"),
        (59.99999, "1m0s"),
        (0.9999, "1000ms"),
        (-3.0, "0ms"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_allowed_decision_has_no_retry_after():
    decision = LimitDecision(allowed=True, requests=BucketView(limit=10, remaining=9, reset_s=6.0))
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
    }


def test_sub_second_retry_after_rounds_up_to_one_second():
    decision = LimitDecision(allowed=False, retry_after_s=0.2, refused_by=("tokens",))
    assert decision.headers()["retry-after"] == "1"
    assert decision.headers()["retry-after-ms"] == "200"
    assert "tokens" in decision.error().message
