"""The strict OpenAI surface: what Wardgate does not implement is refused with a 400 naming
it (never silently dropped), types are never coerced, `models.retrieve` works with the key's
visibility, unknown routes are `invalid_request_error`s, and bad bytes are located exactly.

Behind the gateway is the fake OpenAI server, so every test also checks that a refused request
never reached the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest
from tests.conftest import serve_in_thread
from tests.fakes import FakeOpenAI, run_server

from wardgate.chat import TOLERATED_PARAMETERS, UNSUPPORTED_PARAMETERS
from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.store.audit import tail


@dataclass
class Env:
    url: str
    gateway: Gateway
    fake: FakeOpenAI
    keys: dict[str, str]
    ids: dict[str, str]

    def client(self, key: str = "all") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.keys[key], max_retries=0)

    def post(self, body: Any, *, key: str = "all", raw: bytes | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[key]}", "content-type": "application/json"}
        url = self.url + "/v1/chat/completions"
        if raw is not None:
            return httpx.post(url, content=raw, headers=headers, timeout=30)
        return httpx.post(url, json=body, headers=headers, timeout=30)

    def last_audit(self) -> dict[str, Any]:
        assert self.gateway.audit.flush()
        return tail(self.gateway.engine, 1)[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("strict")
    fake = FakeOpenAI(api_key="sk-strict")
    mp = pytest.MonkeyPatch()
    mp.setenv("WG_STRICT_KEY", "sk-strict")
    with run_server(fake.app) as upstream:
        model = {
            "backend": "openai",
            "base_url": f"{upstream}/v1",
            "api_key_env": "WG_STRICT_KEY",
            "retries": 0,
        }
        config = GatewayConfig.model_validate(
            {
                "database_url": f"sqlite:///{tmp / 'gw.db'}",
                "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_STRICT_NO_SECRET"},
                "guards": {"input": [], "output": []},
                "models": [{"name": "echo", **model}, {"name": "other", **model}],
                "routing": {"logical_models": {"auto": ["echo", "other"]}},
            }
        )
        gateway = Gateway(config)
        store = gateway.keys
        keys, ids = {}, {}
        for name, kwargs in {
            "all": {},
            "echo-only": {"models": ["echo"]},
            "revoked": {},
            "expired": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)},
        }.items():
            record, keys[name] = store.create(owner=name, **kwargs)
            ids[name] = record.id
        store.revoke(ids["revoked"])
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            yield Env(url, gateway, fake, keys, ids)
    mp.undo()


@pytest.fixture(autouse=True)
def _clean(env: Env) -> None:
    env.fake.requests.clear()


HELLO = [{"role": "user", "content": "hello"}]


def test_models_retrieve_with_the_sdk_follows_the_keys_visibility(env: Env) -> None:
    model = env.client().models.retrieve("echo")
    assert (model.id, model.object, model.owned_by) == ("echo", "model", "wardgate")
    assert env.client().models.retrieve("auto").id == "auto"  # logical models too
    assert [m.id for m in env.client("echo-only").models.list()] == ["echo"]
    assert env.client("echo-only").models.retrieve("echo").id == "echo"
    for key, name in [("echo-only", "other"), ("echo-only", "auto"), ("all", "ghost")]:
        with pytest.raises(openai.NotFoundError) as info:
            env.client(key).models.retrieve(name)
        error = info.value.body
        assert isinstance(error, dict)
        assert error["type"] == "invalid_request_error" and error["code"] == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        env.client("revoked").models.retrieve("echo")


# (keyword arguments for the SDK, the parameter the 400 must name)
UNSUPPORTED_VIA_SDK = [
    # The legacy spelling of tools (tests/gateway/test_tools_e2e.py covers ``tools``).
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"n": 2}, "n"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"extra_body": {"top_k": 40}}, "top_k"),  # vLLM's extension: OpenAI refuses it too
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "https://example/x.png"}},
                    ],
                }
            ]
        },
        "messages.0.content.1.type",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
                    ],
                }
            ]
        },
        "messages.0.content.0.type",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "param"), UNSUPPORTED_VIA_SDK, ids=[p for _, p in UNSUPPORTED_VIA_SDK]
)
def test_unsupported_features_are_refused_naming_the_parameter(
    env: Env, kwargs: dict[str, Any], param: str
) -> None:
    request: dict[str, Any] = {"model": "echo", "messages": HELLO, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        env.client().chat.completions.create(**request)
    error = info.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["code"] in ("unsupported_parameter", "unrecognized_parameter")
    assert env.fake.requests == []  # never reached the model


def test_harmless_values_of_unsupported_parameters_pass(env: Env) -> None:
    reply = env.client().chat.completions.create(
        model="echo",
        messages=HELLO,
        response_format={"type": "text"},
        logprobs=False,
        n=1,
        tool_choice="none",
        frequency_penalty=0,
        presence_penalty=0.0,
        parallel_tool_calls=True,
        service_tier="auto",
        metadata={"data_class": "public"},
        max_tokens=8,
    )
    assert reply.choices[0].message.content
    assert len(env.fake.requests) == 1


def test_every_table_entry_is_refused_and_every_tolerated_name_accepted(env: Env) -> None:
    for name in UNSUPPORTED_PARAMETERS:
        value: Any = 2 if name == "n" else {"surely": "not the default"}
        response = env.post({"model": "echo", "messages": HELLO, name: value})
        assert response.status_code == 400, name
        assert response.json()["error"]["param"] == name
    for name in TOLERATED_PARAMETERS:
        value = {"data_class": "public"} if name == "metadata" else "auto"
        if name == "parallel_tool_calls":
            value = False
        response = env.post({"model": "echo", "messages": HELLO, name: value, "max_tokens": 4})
        assert response.status_code == 200, (name, response.text)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", "10"),
        ("max_tokens", 10.0),
        ("max_tokens", True),
        ("stream", "yes"),
        ("stream", 1),
        ("temperature", "0.5"),
        ("seed", "7"),
        ("n", "1"),
        ("model", 42),
        ("user", 12345),
    ],
)
def test_types_are_never_coerced(env: Env, field: str, value: Any) -> None:
    body = {"model": "echo", "messages": HELLO, field: value}
    response = env.post(body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field
    assert env.fake.requests == []


def test_a_float_field_takes_a_json_integer(env: Env) -> None:
    response = env.post({"model": "echo", "messages": HELLO, "temperature": 1, "max_tokens": 4})
    assert response.status_code == 200, response.text


def test_unknown_top_level_parameters_are_refused_as_openai_does(env: Env) -> None:
    response = env.post({"model": "echo", "messages": HELLO, "temprature": 0.2})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error == {
        "message": "Unrecognized request argument supplied: temprature",
        "type": "invalid_request_error",
        "param": "temprature",
        "code": "unrecognized_parameter",
    }


def test_unknown_routes_and_methods_are_invalid_request_errors(env: Env) -> None:
    missing = httpx.get(env.url + "/v1/nope", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "Invalid URL (GET /v1/nope)",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    wrong = httpx.get(env.url + "/v1/chat/completions", timeout=10)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["allow"] == "POST"


def test_invalid_utf8_names_the_offset_of_the_bad_byte(env: Env) -> None:
    prefix = '{"model": "echo", "messages": [{"role": "user", "content": "héllo € '.encode()
    raw = prefix + b"\xff" + b'"}]}'
    response = env.post(None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        f"request body is not valid UTF-8: invalid byte at offset {len(prefix)}"
    )


def test_a_json_syntax_error_after_multibyte_text_names_its_byte_offset(env: Env) -> None:
    raw = '{"model": "échø", }'.encode()
    response = env.post(None, raw=raw)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.endswith(f"at byte {raw.index(b',')}")  # the comma, counted in bytes


@pytest.mark.parametrize(("key", "code"), [("revoked", "key_revoked"), ("expired", "key_expired")])
def test_a_refused_known_key_is_named_in_the_audit_record(env: Env, key: str, code: str) -> None:
    response = env.post({"model": "echo", "messages": HELLO}, key=key)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    record = env.last_audit()
    assert (record["key_id"], record["error_code"], record["status"]) == (env.ids[key], code, 401)
