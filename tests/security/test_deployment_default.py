"""A model whose deployment is not stated counts as a vendor (finding 9 of the outside review).

An ``openai`` model pointed at a vendor's URL with no ``tags`` was tagged on-prem, so the rule
"PII only to on-prem models" sent PII to the vendor.
"""

from __future__ import annotations

from typing import Any

import pytest

from wardgate.config import GatewayConfig
from wardgate.errors import RoutingRefused
from wardgate.routing.failover import Failover
from wardgate.routing.policy import RoutingPolicy
from wardgate.routing.trace import SKIP_VENDOR_FALLBACK, RouteTrace


def _config(**tags: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "models": [
                {"name": "local", "backend": "llamacpp", "fallbacks": ["remote"]},
                {
                    "name": "remote",
                    "backend": "openai",
                    "base_url": "https://api.openai.example/v1",
                    **({"tags": tags} if tags else {}),
                },
            ],
            "routing": {"logical_models": {"auto": ["remote", "local"]}},
        }
    )


def test_unstated_network_model_is_a_vendor_for_the_pii_rule() -> None:
    config = _config()
    policy = RoutingPolicy(config.routing, config.models)
    decision = policy.decide("auto", ["pii"])
    assert decision.candidates == ["local"]
    assert "remote" not in decision.allowed
    with pytest.raises(RoutingRefused):
        policy.decide("remote", ["pii"])


def test_unstated_network_model_is_a_vendor_for_fallbacks() -> None:
    config = _config()
    models = {m.name: m for m in config.models}
    failover = Failover({name: object() for name in models}, models)  # type: ignore[misc]
    trace = RouteTrace(requested="local")
    assert failover.plan("local", trace=trace) == ["local"]
    assert [(a.model, a.detail) for a in trace.attempts] == [("remote", SKIP_VENDOR_FALLBACK)]


def test_stated_on_prem_network_model_is_trusted_and_llamacpp_defaults_on_prem() -> None:
    config = _config(deployment="on_prem")
    policy = RoutingPolicy(config.routing, config.models)
    assert policy.decide("auto", ["pii"]).candidates == ["remote", "local"]
    assert config.model("local").deployment == "on_prem"  # type: ignore[union-attr]


def test_unstated_deployment_is_warned_about() -> None:
    assert [w.split("'")[1] for w in _config().deployment_warnings()] == ["remote"]
    assert _config(deployment="vendor").deployment_warnings() == []
