"""Guards, routing and pseudonymisation together, as the gateway chains them for a vendor."""

from __future__ import annotations

import random

from wardgate.chat import ChatRequest
from wardgate.config import ModelConfig, ModelTags
from wardgate.guards import GuardPipeline, default_guards_config
from wardgate.routing.config import RoutingConfig
from wardgate.routing.policy import RoutingPolicy

EMAIL = "jane.doe@example.com"
KEY = "sk-proj-Zx81aQ2wE9rT6yU3iO0pL5kJ7hG4fD1s"


def _policy() -> RoutingPolicy:
    models = [
        ModelConfig(name="local", tags=ModelTags(deployment="on_prem")),
        ModelConfig(
            name="gpt",
            backend="openai",
            base_url="http://127.0.0.1:9/v1",
            tags=ModelTags(deployment="vendor", weights="closed", region="us"),
        ),
    ]
    config = RoutingConfig.model_validate(
        {
            "logical_models": {"auto": ["gpt", "local"]},
            "rules": [
                {
                    "name": "pii-pseudonymised",
                    "when": {"data_classes": ["pii", "secrets"]},
                    "allow": {"deployment": ["on_prem"]},
                    "vendor_if_pseudonymised": True,
                }
            ],
        }
    )
    return RoutingPolicy(config, models)


async def test_vendor_sees_placeholders_and_client_gets_originals_back() -> None:
    pipeline = GuardPipeline.from_config(default_guards_config(learned=False))
    request = ChatRequest.model_validate(
        {
            "model": "auto",
            "messages": [
                {"role": "system", "content": "You are a mail assistant."},
                {"role": "user", "content": f"Draft a note to {EMAIL}; the key is {KEY}."},
            ],
        }
    )
    result = await pipeline.check_request(request)
    decision = _policy().decide("auto", result.data_classes, "standard", None)
    assert result.data_classes == {"pii", "secrets"}
    assert decision.candidates == ["gpt", "local"]
    assert decision.requires_pseudonymisation("gpt")

    pseudonymiser = pipeline.pseudonymiser()
    sent = pseudonymiser.apply(result.request)
    wire = sent.model_dump_json()
    assert EMAIL not in wire and KEY not in wire
    assert result.canary and result.canary in wire  # the canary travels with the prompt

    # The vendor answers with the placeholders; the stream splits them anywhere.
    answer = "Hi <EMAIL_1>, please rotate <OPENAI_KEY_1> today. Regards. " * 8
    rng = random.Random(7)
    scanner = pipeline.output_scanner(result)
    restorer = pseudonymiser.restore_stream()
    out, i = [], 0
    while i < len(answer):
        size = rng.randint(1, 9)
        out.append(restorer.feed(scanner.feed(answer[i : i + size])))
        i += size
    out.append(restorer.feed(scanner.finish()))
    out.append(restorer.finish())
    final = "".join(out)
    assert final == answer.replace("<EMAIL_1>", EMAIL).replace("<OPENAI_KEY_1>", KEY)
    assert {d["guard"] for d in scanner.decisions} == {
        "invisible_unicode",
        "secrets",
        "pii",
        "system_prompt_leak",
        "exfiltration",
    }
    pipeline.close()
