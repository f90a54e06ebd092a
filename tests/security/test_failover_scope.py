"""Failover never leaves the models an API key may use (finding 1 of the outside review).

A key allowed only ``cheap`` asked for ``cheap`` while its upstream was dead and was served by
its fallback ``premium``, a model the key was refused when it asked for it by name.
"""

from __future__ import annotations

from tests.security.conftest import FrontDoor

HELLO = {"messages": [{"role": "user", "content": "hello"}]}


def _attempts(record: dict) -> list[tuple[str, str, str | None]]:
    return [(a["model"], a["outcome"], a["detail"]) for a in record["routing"]["attempts"]]


def test_fallback_outside_the_keys_models_is_not_tried(front_door: FrontDoor) -> None:
    direct = front_door.call(
        "POST", "/v1/chat/completions", "cheap", json={**HELLO, "model": "premium"}
    )
    assert direct.status_code == 403
    response = front_door.call(
        "POST", "/v1/chat/completions", "cheap", json={**HELLO, "model": "cheap"}
    )
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_unavailable"
    record = front_door.last_audit()
    assert record["backend_used"] is None
    assert ("premium", "skipped", "not_allowed_for_key") in _attempts(record)
    assert "premium" not in record["routing"]["allowed"]


def test_stream_fallback_outside_the_keys_models_is_not_tried(front_door: FrontDoor) -> None:
    response = front_door.call(
        "POST", "/v1/chat/completions", "cheap", json={**HELLO, "model": "cheap", "stream": True}
    )
    assert response.status_code == 502, response.text
    record = front_door.last_audit()
    assert record["backend_used"] is None
    assert ("premium", "skipped", "not_allowed_for_key") in _attempts(record)


def test_logical_model_reaches_its_candidates_but_not_their_fallbacks(
    front_door: FrontDoor,
) -> None:
    response = front_door.call(
        "POST", "/v1/chat/completions", "auto", json={**HELLO, "model": "auto"}
    )
    assert response.status_code == 200, response.text
    record = front_door.last_audit()
    assert record["backend_used"] == "mini"
    outcomes = _attempts(record)
    assert ("premium", "skipped", "not_allowed_for_key") in outcomes
    tried = [(model, outcome) for model, outcome, _ in outcomes if outcome != "skipped"]
    assert tried == [("cheap", "error"), ("mini", "ok")]


def test_a_key_for_every_model_still_fails_over(front_door: FrontDoor) -> None:
    response = front_door.call(
        "POST", "/v1/chat/completions", "all", json={**HELLO, "model": "cheap"}
    )
    assert response.status_code == 200, response.text
    assert front_door.last_audit()["backend_used"] == "premium"
