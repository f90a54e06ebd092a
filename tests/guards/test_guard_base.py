"""The guard interface and registry: what third-party and learned detectors build on."""

from __future__ import annotations

import pytest

from wardgate.errors import ConfigError
from wardgate.guards.base import (
    Action,
    Finding,
    Guard,
    GuardOptions,
    ScanContext,
    Verdict,
    worst,
)
from wardgate.guards.config import GuardsConfig, GuardSpec
from wardgate.guards.registry import GuardRegistry


class ShoutGuard(Guard):
    type_name = "shout"
    block_code = "shouting_detected"

    class Options(GuardOptions):
        threshold: float = 0.8

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        letters = [c for c in text if c.isalpha()]
        ratio = sum(c.isupper() for c in letters) / max(1, len(letters))
        if ratio >= self.options.threshold:
            return Verdict.block(self.block_code, scores={"upper_ratio": ratio})
        return Verdict.allow(scores={"upper_ratio": ratio})


async def test_sync_guard_answers_through_check() -> None:
    guard = ShoutGuard(GuardSpec(type="shout", options={"threshold": 0.5}))
    ctx = ScanContext(stage="input")
    assert (await guard.check("HELLO THERE", ctx)).action is Action.BLOCK
    assert (await guard.check("hello there", ctx)).action is Action.ALLOW
    assert not guard.is_async
    assert guard.name == "shout"


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="invalid options"):
        ShoutGuard(GuardSpec(type="shout", options={"treshold": 0.5}))


def test_worst_orders_by_severity() -> None:
    assert worst([Action.ALLOW, Action.REDACT]) is Action.REDACT
    assert worst([Action.RESTRICT_ON_PREM, Action.BLOCK, Action.REDACT]) is Action.BLOCK
    assert worst([]) is Action.ALLOW


def test_verdict_data_classes() -> None:
    verdict = Verdict.allow(
        findings=(
            Finding("email", 0, 5, data_class="pii"),
            Finding("aws_key", 6, 26, data_class="secrets"),
        )
    )
    assert verdict.data_classes == {"pii", "secrets"}


def test_registry_extra_and_unknown() -> None:
    registry = GuardRegistry({"shout": ShoutGuard})
    assert registry.resolve("shout") is ShoutGuard
    with pytest.raises(ConfigError, match="unknown guard type 'nope'"):
        registry.resolve("nope")


def test_route_overrides_fall_back_to_defaults() -> None:
    config = GuardsConfig.model_validate(
        {
            "input": [{"type": "pii"}, {"type": "secrets", "enabled": False}],
            "routes": {"gpt-4o": {"input": [{"type": "secrets"}]}},
        }
    )
    assert [s.type for s in config.input_for("local")] == ["pii"]
    assert [s.type for s in config.input_for("gpt-4o")] == ["secrets"]
    assert config.output_for("gpt-4o") == []


def test_duplicate_guard_names_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate guard names"):
        GuardsConfig.model_validate({"input": [{"type": "pii"}, {"type": "pii"}]})


def test_third_party_guard_through_an_entry_point(tmp_path, monkeypatch) -> None:
    """A package that declares ``[wardgate.guards]`` is found without touching Wardgate."""
    (tmp_path / "acme_guards.py").write_text(
        "from wardgate.guards.base import Guard, Verdict\n"
        "class AcmeGuard(Guard):\n"
        "    type_name = 'acme'\n"
        "    def scan(self, text, ctx):\n"
        "        return Verdict.block('acme_says_no') if 'acme' in text else Verdict.allow()\n"
    )
    dist = tmp_path / "acme_guards-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-guards\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wardgate.guards]\nacme = acme_guards:AcmeGuard\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = GuardRegistry()
    cls = registry.resolve("acme")
    assert cls.__name__ == "AcmeGuard"
    assert "acme" in registry.known()
    guard = cls(GuardSpec(type="acme"))
    assert guard.scan("acme inside", ScanContext(stage="input")).code == "acme_says_no"


def test_entry_point_that_is_not_a_guard_is_rejected(tmp_path, monkeypatch) -> None:
    (tmp_path / "not_a_guard.py").write_text("class Thing:\n    pass\n")
    dist = tmp_path / "not_a_guard-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: not-a-guard\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wardgate.guards]\nthing = not_a_guard:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="not a wardgate Guard"):
        GuardRegistry().resolve("thing")
