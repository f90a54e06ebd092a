"""Hybrid routing policy: sensitive data stays on-prem; refusal rather than leakage."""

from __future__ import annotations

import json

import pytest

from wardgate.config import GatewayConfig, ModelConfig, ModelTags
from wardgate.errors import ConfigError, ModelNotFound, RoutingRefused
from wardgate.routing.config import RoutingConfig
from wardgate.routing.policy import RoutingPolicy, request_label


def _models() -> list[ModelConfig]:
    return [
        ModelConfig(
            name="local", tags=ModelTags(deployment="on_prem", weights="open", region="eu")
        ),
        ModelConfig(
            name="gpt",
            backend="openai",
            base_url="http://127.0.0.1:9/v1",
            tags=ModelTags(deployment="vendor", weights="closed", region="us"),
        ),
        ModelConfig(
            name="claude-eu",
            backend="anthropic",
            base_url="http://127.0.0.1:9",
            tags=ModelTags(deployment="vendor", weights="closed", region="eu"),
        ),
    ]


def _policy(**routing: object) -> RoutingPolicy:
    config = RoutingConfig.model_validate({"logical_models": {"auto": ["gpt", "local"]}, **routing})
    return RoutingPolicy(config, _models())


def test_clean_request_may_use_vendor_via_logical_model() -> None:
    decision = _policy().decide("auto", set(), "standard", None)
    assert decision.candidates == ["gpt", "local"]
    assert decision.allowed == {"gpt", "local", "claude-eu"}
    assert decision.reason == "no routing rule applied"
    json.dumps(decision.as_dict())


@pytest.mark.parametrize(
    ("classes", "tier", "label", "restrict", "rule"),
    [
        ({"pii"}, "standard", None, False, "sensitive-data-on-prem"),
        ({"secrets"}, "standard", None, False, "sensitive-data-on-prem"),
        (set(), "restricted", None, False, "restricted-tier-on-prem"),
        (set(), "standard", "confidential", False, "confidential-label-on-prem"),
        (set(), "standard", None, True, "guard-restricted"),
        (set(), "standard", "Confidentail", False, "unknown-label-on-prem"),
    ],
)
def test_default_rules_keep_sensitive_requests_on_prem(
    classes: set[str], tier: str, label: str | None, restrict: bool, rule: str
) -> None:
    decision = _policy().decide("auto", classes, tier, label, restrict_on_prem=restrict)
    assert decision.candidates == ["local"]
    assert decision.allowed == {"local"}
    assert rule in decision.rules
    assert "skipped gpt" in decision.reason
    assert decision.as_dict()["excluded"]["gpt"].startswith("excluded by rule")


def test_refuses_rather_than_sending_elsewhere() -> None:
    policy = _policy()
    with pytest.raises(RoutingRefused) as info:
        policy.decide("gpt", {"pii"}, "standard", None)
    assert info.value.code == "no_allowed_model"
    assert info.value.status == 400
    assert info.value.decision["candidates"] == []  # type: ignore[attr-defined]
    assert "sensitive-data-on-prem" in info.value.message


def test_vendor_allowed_when_pseudonymised() -> None:
    policy = _policy(
        rules=[
            {
                "name": "pii-pseudonymised",
                "when": {"data_classes": ["pii"]},
                "allow": {"deployment": ["on_prem"]},
                "vendor_if_pseudonymised": True,
            },
            {
                "name": "secrets-home",
                "when": {"data_classes": ["secrets"]},
                "allow": {"deployment": ["on_prem"]},
            },
        ]
    )
    decision = policy.decide("auto", {"pii"}, "standard", None)
    assert decision.candidates == ["gpt", "local"]
    assert decision.requires_pseudonymisation("gpt")
    assert not decision.requires_pseudonymisation("local")
    # Secrets are not covered by the pseudonymisation allowance.
    assert policy.decide("auto", {"pii", "secrets"}, "standard", None).candidates == ["local"]


def test_region_rule_and_rules_intersect() -> None:
    policy = _policy(
        rules=[
            {"name": "eu-only", "when": {"labels": ["eu-personal"]}, "allow": {"regions": ["eu"]}},
            {"name": "no-closed", "when": {"tiers": ["research"]}, "allow": {"weights": ["open"]}},
        ],
        known_labels=["eu-personal"],
    )
    eu = policy.decide("auto", set(), "standard", "eu-personal")
    assert eu.candidates == ["local"] and eu.allowed == {"local", "claude-eu"}
    both = policy.decide("auto", set(), "research", "eu-personal")
    assert both.allowed == {"local"}


def test_empty_rules_mean_no_restrictions_and_unknown_label_refusal() -> None:
    assert _policy(rules=[]).decide("gpt", {"pii"}, "restricted", None).candidates == ["gpt"]
    with pytest.raises(RoutingRefused) as info:
        _policy(unknown_label="refuse").decide("auto", set(), "standard", "typo")
    assert info.value.code == "unknown_data_class"


def test_unknown_models_and_bad_config() -> None:
    policy = _policy()
    with pytest.raises(ModelNotFound):
        policy.decide("nope", set(), "standard", None)
    assert policy.known("auto") and policy.known("local") and not policy.known("nope")
    with pytest.raises(ConfigError, match="unknown model 'missing'"):
        RoutingPolicy(RoutingConfig(logical_models={"auto": ["missing"]}), _models())
    with pytest.raises(ValueError, match="needs a condition"):
        RoutingConfig.model_validate(
            {"rules": [{"name": "x", "when": {}, "allow": {"deployment": ["on_prem"]}}]}
        )


def test_label_from_header_or_metadata() -> None:
    assert request_label(" Confidential ", {"data_class": "public"}) == "confidential"
    assert request_label(None, {"data_class": "Restricted"}) == "restricted"
    assert request_label(None, None) is None


def test_routing_config_loads_inside_gateway_config() -> None:
    config = GatewayConfig.model_validate(
        {
            "models": [m.model_dump() for m in _models()],
            "routing": {
                "logical_models": {"auto": ["gpt", "local"]},
                "rules": [
                    {
                        "name": "pii",
                        "when": {"data_classes": ["pii"]},
                        "allow": {"deployment": ["on_prem"]},
                    }
                ],
            },
        }
    )
    policy = RoutingPolicy(config.routing, config.models)
    assert policy.decide("auto", {"pii"}, "standard", None).candidates == ["local"]


def test_decisions_are_remembered_per_distinct_inputs_and_refusals_are_not() -> None:
    remembering = _policy(unknown_label="refuse")
    inputs = [
        ("auto", set(), "standard", None, False, None),
        ("auto", {"pii"}, "standard", None, False, None),
        ("auto", {"pii", "secrets"}, "standard", None, False, ("gpt", "local")),
        ("auto", set(), "restricted", None, False, None),
        ("auto", set(), "standard", "confidential", False, None),
        ("auto", set(), "standard", " Confidential ", False, None),
        ("auto", set(), "standard", None, True, None),
        ("gpt", set(), "standard", None, False, ("gpt",)),
        ("local", set(), None, None, False, ("*",)),
    ]
    for _ in range(2):
        for model, classes, tier, label, restrict, key_models in inputs:
            got = remembering.decide(
                model, classes, tier, label, restrict_on_prem=restrict, key_models=key_models
            )
            fresh = _policy(unknown_label="refuse").decide(
                model, classes, tier, label, restrict_on_prem=restrict, key_models=key_models
            )
            assert got == fresh
            assert got is remembering.decide(
                model, list(classes), tier, label, restrict_on_prem=restrict,
                key_models=key_models,
            )  # fmt: skip
    # The same model under a different key scope is a different decision.
    assert remembering.decide("auto", key_models=("local",)).candidates == ["local"]
    assert remembering.decide("auto").candidates == ["gpt", "local"]
    # Refusals are raised every time, never served from memory.
    for _ in range(2):
        with pytest.raises(RoutingRefused):
            remembering.decide("gpt", {"pii"}, "standard", None)
        with pytest.raises(RoutingRefused):
            remembering.decide("auto", set(), "standard", "no-such-label")
        with pytest.raises(ModelNotFound):
            remembering.decide("missing")
