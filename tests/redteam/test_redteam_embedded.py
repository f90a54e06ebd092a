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
