"""``POST /v1/responses`` (stateless subset) with the official ``openai`` SDK: text, streaming
events through ``responses.stream()``, function tools and their outputs, structured output
with ``responses.parse``, and clear 400s for what is not supported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel
from tests.fakes import FakeAnthropic, FakeOpenAI, run_server
from tests.harness import RunningGateway, running_gateway, vendor_model

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class Env:
    def __init__(self, served: RunningGateway, oai: FakeOpenAI) -> None:
        self.gateway, self.oai, self.last_audit = served.gateway, oai, served.last_audit
        key = served.create_key("responses-app")
        self.client = openai.OpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    oai, ant = FakeOpenAI(api_key="sk-r-oai"), FakeAnthropic(api_key="sk-r-ant")
    with run_server(oai.app) as oai_url, run_server(ant.app) as ant_url:
        config = {
            "guards": {"input": [], "output": []},
            "models": [
                {"name": "smol", "backend": "llamacpp", "n_ctx": 1024, "max_output_tokens": 32},
                vendor_model("gpt", "openai", oai_url, "WG_R_OAI"),
                vendor_model("claude", "anthropic", ant_url, "WG_R_ANT"),
            ],
        }
        keys = {"WG_R_OAI": "sk-r-oai", "WG_R_ANT": "sk-r-ant"}
        with running_gateway(tmp_path_factory.mktemp("responses"), config, env=keys) as served:
            yield Env(served, oai)


@pytest.mark.parametrize("model", ["gpt", "claude", "smol"])
def test_text_response(env: Env, model: str) -> None:
    response = env.client.responses.create(
        model=model, instructions="Be brief.", input="Say hi to Ada.", max_output_tokens=16
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    if model != "smol":
        assert response.output_text == "Echo: Say hi to Ada."
        assert response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens > 0
    if model == "gpt":
        sent = env.oai.bodies[-1]
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent["max_tokens"] == 16


@pytest.mark.parametrize("model", ["gpt", "claude", "smol"])
def test_streamed_response_through_the_sdk_helper(env: Env, model: str) -> None:
    with env.client.responses.stream(
        model=model, input="Count to three.", max_output_tokens=16
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    assert final.output_text
    if model != "smol":
        assert final.output_text == "Echo: Count to three."
    assert final.usage is not None and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("stream", [False, True])
def test_function_call_and_output_round_trip(env: Env, model: str, stream: bool) -> None:
    request: dict[str, Any] = {
        "model": model,
        "input": 'CALL get_weather {"city": "Lisbon"}',
        "tools": [WEATHER],
    }
    if stream:
        with env.client.responses.stream(**request) as events:
            kinds = [e.type for e in events]
            response = events.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    else:
        response = env.client.responses.create(**request)
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Lisbon"}
    follow = env.client.responses.create(
        model=model,
        tools=[WEATHER],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": request["input"]},
            calls[0].model_dump(exclude_none=True),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "21C, sunny"},
        ],
    )
    assert follow.output_text == "Echo: 21C, sunny"


class Place(BaseModel):
    city: str
    country: str


def test_parse_with_a_pydantic_model(env: Env) -> None:
    response = env.client.responses.parse(
        model="gpt", input='{"city": "Kyoto", "country": "Japan"}', text_format=Place
    )
    assert response.output_parsed == Place(city="Kyoto", country="Japan")
    assert env.oai.bodies[-1]["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"background": True}, "background"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content.0.type",
        ),
    ],
)
def test_unsupported_parts_are_clear_400s(env: Env, extra: dict[str, Any], param: str) -> None:
    request: dict[str, Any] = {"model": "gpt", "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as info:
        env.client.responses.create(**request)
    assert info.value.body["param"] == param  # type: ignore[index]
    assert info.value.code == "unsupported_parameter"
    assert env.last_audit()["error_code"] == "unsupported_parameter"
