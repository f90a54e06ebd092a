"""Property-based fuzzing of every JSON body, path parameter and header the gateway reads.

Hypothesis writes requests from near-valid to absurd — every chat parameter with values of
every JSON type, huge and negative numbers, control characters, lone surrogates, deeply
nested values, random bytes, random headers — and sends them over real HTTP to the front
door of ``tests/security/conftest.py``. For each one, whatever it is:

* the status is below 500 (a dead upstream is not among the fuzzed models, so a 5xx can only
  be the gateway's own fault);
* an error body is OpenAI-shaped (``error.message/type/param/code``), and no presented key is
  echoed back;
* a request on an authenticated route leaves exactly one audit record, a public one none;
* nothing logs a traceback, in the gateway or in uvicorn.

Bounded by ``max_examples`` so the whole module runs in well under a minute.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.security.conftest import FrontDoor

from wardgate.chat import TOLERATED_PARAMETERS, UNSUPPORTED_PARAMETERS
from wardgate.store.tables import audit_log

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Keys that reach a live model on every route (``cheap`` alone is dead by design).
LIVE_KEYS = ["all", "admin", "premium", "auto", "expired", "revoked", "bad", None]
MODELS = ["premium", "mini", "auto", "cheap", "nope", ""]

# -- values ------------------------------------------------------------------------------

texts = st.text(max_size=40) | st.sampled_from(["", " ", "\x00", "\u202e", "a" * 300, "\ud800"])
numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, -1, 2**31, 2**63, 2**64, 1e308, -0.0, 0.5])
)
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)

content_parts = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "input_audio", "refusal"]) | texts},
        optional={"text": texts | json_values, "image_url": json_values},
    ),
    max_size=3,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]) | texts,
            "content": texts | content_parts | json_values,
        },
        optional={"name": texts | json_values, "tool_call_id": texts},
    ),
    max_size=4,
)
chat_fields = {
    name: json_values
    for name in [
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "user",
        "stream",
        "stream_options",
        "n",
        *UNSUPPORTED_PARAMETERS,
        *TOLERATED_PARAMETERS,
    ]
}
chat_fields["max_tokens"] = numbers | json_values
chat_fields["temperature"] = numbers | json_values
chat_fields["stream"] = st.booleans() | json_values
chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS) | texts | json_values, "messages": messages | json_values},
    optional={**chat_fields, "unknown_param": json_values},
)

# Near-valid requests: a valid body, then (usually) one field swapped for anything at all,
# so most requests get past parsing and into limits, routing, failover and the audit log.
plain_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=60
)
valid_messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant"]),
            "content": plain_text
            | st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": plain_text}),
                min_size=1,
                max_size=2,
            ),
        }
    ),
    min_size=1,
    max_size=3,
).map(lambda ms: [*ms, {"role": "user", "content": "hello"}])
valid_chat_fields = {
    "max_tokens": st.integers(1, 64),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "stop": plain_text | st.lists(plain_text, max_size=4),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "user": st.text(max_size=50),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "n": st.just(1),
    "metadata": st.dictionaries(plain_text, plain_text, max_size=2),
    "tool_choice": st.just("none"),
    "logprobs": st.just(False),
}
valid_chat = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS[:4]), "messages": valid_messages}, optional=valid_chat_fields
)


def _mutate(body: dict[str, Any], field: str, value: Any, keep: int) -> dict[str, Any]:
    return body if keep else {**body, field: value}


def near_valid(valid: st.SearchStrategy[dict[str, Any]], fields: list[str]) -> st.SearchStrategy:
    return st.builds(_mutate, valid, st.sampled_from(fields), json_values, st.integers(0, 2))


near_valid_chat = near_valid(valid_chat, ["model", "messages", *chat_fields])

datetimes = st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
future = st.datetimes(datetime(2030, 1, 1), datetime(9999, 12, 30), timezones=offsets)
valid_key = st.fixed_dictionaries(
    {"owner": plain_text},
    optional={
        "models": st.lists(st.sampled_from([*MODELS[:4], "*"]), min_size=1, max_size=3),
        "tier": st.sampled_from(["standard", "premium", "free"]),
        "rpm": st.integers(0, 10**6),
        "tpm": st.integers(0, 10**9),
        "expires_at": future.map(lambda d: d.isoformat()),
        "admin": st.booleans(),
    },
)
near_valid_key = near_valid(
    valid_key, ["owner", "models", "tier", "rpm", "tpm", "expires_at", "admin", "extra"]
)
key_bodies = st.fixed_dictionaries(
    {"owner": texts | json_values},
    optional={
        "models": st.lists(texts, max_size=4) | json_values,
        "tier": texts | json_values,
        "rpm": numbers | json_values,
        "tpm": numbers | json_values,
        "expires_at": datetimes | texts | json_values,
        "admin": st.booleans() | json_values,
        "extra": json_values,
    },
)

header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)
# HTTP itself (h11, on the client side) forbids whitespace around a value.
header_values = header_text.map(lambda t: t.strip(" \t").encode("latin-1"))
header_names = st.sampled_from(
    ["x-wardgate-data-class", "content-type", "accept", "x-forwarded-for", "user-agent"]
) | st.from_regex(r"\Ax-[a-z0-9-]{1,20}\Z")
extra_headers = st.dictionaries(header_names, header_values, max_size=3)
# Mostly keys that get in, so the requests reach what is behind authentication.
good_keys = st.sampled_from(["all", "admin", "premium", "auto"])
authorizations = st.one_of(
    good_keys,
    good_keys,
    good_keys,
    st.sampled_from(LIVE_KEYS),
    header_text.map(lambda t: "raw:" + t.strip(" \t")),
)


def _encode(body: Any) -> bytes:
    """JSON as a client would send it; lone surrogates go out as escapes."""
    return json.dumps(body, ensure_ascii=True, allow_nan=False).encode()


bodies = st.one_of(
    near_valid_chat.map(_encode),
    near_valid_chat.map(_encode),
    chat_bodies.map(_encode),
    st.binary(max_size=200),
    json_values.map(_encode),
)


# -- the checks --------------------------------------------------------------------------


def _audit_count(front_door: FrontDoor) -> int:
    assert front_door.gateway.audit.flush()
    with front_door.gateway.engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(audit_log)) or 0)


def _code(response: httpx.Response) -> str:
    if response.status_code < 400:
        return "ok"
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "not-openai-shaped"


def _authorization(front_door: FrontDoor, who: str | None) -> dict[str, bytes | str]:
    if who is None:
        return {}
    if who.startswith("raw:"):
        return {"authorization": who[4:].encode("latin-1")}
    return {"authorization": front_door.headers(who)["authorization"]}


def _send(
    front_door: FrontDoor,
    log: pytest.LogCaptureFixture,
    method: str,
    path: str,
    *,
    who: str | None,
    content: bytes | None = None,
    headers: dict[str, bytes] | None = None,
    audited: bool = True,
) -> httpx.Response:
    merged: dict[str, bytes | str] = {**(headers or {}), **_authorization(front_door, who)}
    if content is not None and "content-type" not in merged:
        merged["content-type"] = "application/json"
    before = _audit_count(front_door)
    response = httpx.request(
        method, front_door.url + path, content=content, headers=merged, timeout=60
    )
    after = _audit_count(front_door)
    # `pytest --hypothesis-show-statistics` shows how far the requests got.
    event(f"{response.status_code} {_code(response)}")

    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and isinstance(error["code"], str)
    for raw in front_door.keys.values():
        assert raw not in response.text
    assert after - before == (1 if audited else 0), (method, path, response.status_code)
    assert "Traceback" not in log.text, log.text[-2000:]
    assert "Exception in ASGI application" not in log.text
    return response


# -- the properties ----------------------------------------------------------------------


@FUZZ
@given(body=bodies, who=good_keys, headers=extra_headers)
def test_chat_completions(
    front_door: FrontDoor,
    gateway_log: pytest.LogCaptureFixture,
    body: bytes,
    who: str | None,
    headers: dict[str, bytes],
) -> None:
    response = _send(
        front_door,
        gateway_log,
        "POST",
        "/v1/chat/completions",
        who=who,
        content=body,
        headers=headers,
    )
    if response.status_code == 200 and response.headers["content-type"].startswith(
        "text/event-stream"
    ):
        assert response.text.rstrip().endswith("data: [DONE]")


@FUZZ
@given(
    body=st.one_of(
        near_valid_key.map(_encode), near_valid_key.map(_encode), key_bodies.map(_encode), bodies
    ),
    who=st.sampled_from(["admin", "admin", "all"]),
    headers=extra_headers,
)
def test_admin_create_key(
    front_door: FrontDoor,
    gateway_log: pytest.LogCaptureFixture,
    body: bytes,
    who: str | None,
    headers: dict[str, bytes],
) -> None:
    response = _send(
        front_door, gateway_log, "POST", "/admin/keys", who=who, content=body, headers=headers
    )
    if response.status_code == 201:
        created = response.json()
        assert created["key"].startswith("wg-") and created["owner"]


@FUZZ
@given(
    path=st.sampled_from(["/v1/chat/completions", "/admin/keys"]),
    body=st.one_of(valid_chat.map(_encode), valid_key.map(_encode)),
    who=authorizations,
)
def test_authorization_header(
    front_door: FrontDoor,
    gateway_log: pytest.LogCaptureFixture,
    path: str,
    body: bytes,
    who: str | None,
) -> None:
    _send(front_door, gateway_log, "POST", path, who=who, content=body)


watermark_bodies = st.fixed_dictionaries(
    {"text": plain_text | json_values},
    optional={
        "model": st.sampled_from(MODELS) | json_values,
        "key_id": texts | json_values,
        "threshold": numbers | json_values,
        "windows": st.sampled_from(["auto", "always", "never"]) | json_values,
    },
)


@FUZZ
@given(
    body=st.one_of(watermark_bodies.map(_encode), bodies),
    who=st.sampled_from(["admin", "admin", "all"]),
)
def test_watermark_detect(
    front_door: FrontDoor, gateway_log: pytest.LogCaptureFixture, body: bytes, who: str
) -> None:
    _send(front_door, gateway_log, "POST", "/v1/watermark/detect", who=who, content=body)


routes_with_parameters = st.sampled_from(
    [
        ("GET", "/v1/models/{}"),
        ("POST", "/admin/keys/{}/revoke"),
        ("POST", "/admin/keys/{}/rotate"),
    ]
)
parameters = texts.filter(lambda t: "\ud800" not in t) | st.sampled_from(
    ["premium", "auto", "../../admin/keys", "key_" + "0" * 16, "%00", "a/b", "x" * 5000]
)


@FUZZ
@given(route=routes_with_parameters, parameter=parameters, who=authorizations)
def test_path_parameters(
    front_door: FrontDoor,
    gateway_log: pytest.LogCaptureFixture,
    route: tuple[str, str],
    parameter: str,
    who: str | None,
) -> None:
    method, template = route
    path = template.format(quote(parameter, safe=""))
    # A parameter with an encoded slash still names one segment; the router may not
    # match it at all (404, unaudited): both are fine, a 5xx or a second record are not.
    merged = _authorization(front_door, who)
    before = _audit_count(front_door)
    response = httpx.request(method, front_door.url + path, headers=merged, timeout=60)
    after = _audit_count(front_door)
    assert response.status_code < 500, response.text
    assert after - before in (0, 1)
    if response.status_code != 404 or after - before == 1:
        assert after - before == 1
    assert "Traceback" not in gateway_log.text


@FUZZ
@given(
    route=st.sampled_from(
        [("GET", "/v1/models", True), ("GET", "/admin/keys", True), ("GET", "/healthz", False)]
    ),
    who=authorizations,
    headers=extra_headers,
    query=st.dictionaries(
        st.sampled_from(["include_revoked", "x", "model"]), header_text, max_size=2
    ),
)
def test_headers_and_queries(
    front_door: FrontDoor,
    gateway_log: pytest.LogCaptureFixture,
    route: tuple[str, str, bool],
    who: str | None,
    headers: dict[str, bytes],
    query: dict[str, str],
) -> None:
    method, path, audited = route
    if query:
        path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    _send(front_door, gateway_log, method, path, who=who, headers=headers, audited=audited)
