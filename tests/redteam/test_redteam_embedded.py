"""The harness against the real embedded SmolLM2, called directly through its backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from redteam_helpers import ITEMS, run_pinned, write_suite

from wardgate.config import GatewayConfig
from wardgate.redteam.harness import Selection, load_run
from wardgate.redteam.runner import RunSettings
from wardgate.redteam.targets import BackendTarget


@pytest.mark.slow
async def test_embedded_model_run_is_reproducible(tmp_path: Path) -> None:
    config = GatewayConfig.model_validate(
        {"models": [{"name": "smol", "backend": "llamacpp", "n_ctx": 512, "n_threads": 1,
                     "max_output_tokens": 16}]})
    suite = write_suite(tmp_path / "s.jsonl", [ITEMS[0], ITEMS[4]])
    settings = RunSettings(repeats=1, seed=5, max_tokens=12, temperatures=(0.0,))
    for out in ("a", "b"):
        target = BackendTarget.from_config(config.models[0])
        outcome = await run_pinned(target, Selection((str(suite),)), tmp_path / out, settings)
        assert outcome.done == 2 and outcome.errors == 0
        assert outcome.model_s > 0 and outcome.tokens["completion"] > 0
    _, first, summary = load_run(tmp_path / "a")
    _, second, _ = load_run(tmp_path / "b")
    # Same seed, temperature 0, fresh KV cache: the same answers, hence the same verdicts.
    assert [r["response"] for r in first] == [r["response"] for r in second]
    assert all(r["response"] for r in first)
    assert summary["overall"]["n"] == 1 and summary["false_refusal"]["n"] == 1
    assert first[0]["usage"]["completion_tokens"] <= 12


@pytest.mark.slow
async def test_agent_items_against_the_embedded_model(tmp_path: Path) -> None:
    """The agent suite's requests reach llama.cpp with their tools and history: with
    ``tool_choice: required`` the grammar-sampled answer comes back as a tool call, judged
    from that call."""
    config = GatewayConfig.model_validate(
        {"models": [{"name": "smol", "backend": "llamacpp", "n_ctx": 2048, "n_threads": 1,
                     "max_output_tokens": 96, "timeout_s": 300}]})
    target = BackendTarget.from_config(config.models[0])
    settings = RunSettings(max_tokens=96, timeout_s=300)
    await run_pinned(target, Selection(("agent_tools",), limit_per_category=2),
                     tmp_path / "agent", settings)
    _, records, _ = load_run(tmp_path / "agent")
    by_choice = {r["item_id"]: r for r in records}
    required = by_choice["ag-001"]  # ag-000 is the same turn with tool_choice auto
    assert required["error"] is None and required["method"] == "tool_call_match"
    if required["finish_reason"] != "length":  # a grammar bounds the shape, not the length
        assert required["tool_calls"] and required["tool_calls"][0]["name"] in (
            "http_get", "save_note")
        assert required["judge"]["tool_calls"][0]["name"] == required["tool_calls"][0]["name"]
