"""Refusal direction: the hooks do what Arditi et al. define, the weight edit equals the hooks,
and ``wardgate whitebox refusal-direction`` runs end to end on a tiny random model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tests.whitebox.tiny import TINY, tiny_state

from wardgate.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _tiny_model(seed: int = 0) -> object:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def _residuals(model: object, ids: object) -> list[object]:
    """Every residual-stream state: each layer's input, and the last layer's output."""
    seen: list[object] = []
    hooks = [block.register_forward_pre_hook(lambda _m, a, k: seen.append(
        (a[0] if a else k["hidden_states"]).detach()), with_kwargs=True)
        for block in model.model.layers]  # type: ignore[attr-defined]
    hooks.append(model.model.norm.register_forward_pre_hook(  # type: ignore[attr-defined]
        lambda _m, a: seen.append(a[0].detach())))
    with torch.no_grad():
        model(input_ids=ids)  # type: ignore[operator]
    for h in hooks:
        h.remove()
    return seen


def test_ablation_leaves_no_component_along_the_direction() -> None:
    from wardgate.whitebox.direction import intervention

    model = _tiny_model()
    direction = torch.randn(32)
    unit = direction / direction.norm()
    ids = torch.randint(0, 96, (2, 7))
    before = _residuals(model, ids)
    assert max(float((h @ unit).abs().max()) for h in before) > 1e-3  # there was some
    with intervention(model, "ablate", direction):
        after = _residuals(model, ids)
    assert len(after) == 4
    assert max(float((h @ unit).abs().max()) for h in after) < 1e-5
    # the hooks are gone afterwards: the model is unchanged
    again = _residuals(model, ids)
    assert all(torch.allclose(a, b) for a, b in zip(before, again, strict=True))


def test_addition_shifts_the_chosen_layer_input_by_the_vector() -> None:
    from wardgate.whitebox.direction import intervention

    model = _tiny_model()
    vector = torch.randn(32)
    ids = torch.randint(0, 96, (1, 5))
    before = _residuals(model, ids)
    with intervention(model, "add", vector, layer=1):
        after = _residuals(model, ids)
    assert torch.allclose(after[0], before[0])  # layer 0 untouched
    assert torch.allclose(after[1] - before[1], vector.expand_as(before[1]), atol=1e-5)


def test_orthogonalised_weights_equal_hook_ablation() -> None:
    """The GGUF-exportable weight edit gives the same logits as the hooks (tied head untied)."""
    from transformers import LlamaForCausalLM

    from wardgate.whitebox.direction import intervention, orthogonalised_state

    model = _tiny_model()
    direction = torch.randn(32)
    state = {k: torch.from_numpy(v) for k, v in orthogonalised_state(model, direction)}
    assert not torch.allclose(state["model.embed_tokens.weight"],
                              model.model.embed_tokens.weight)  # type: ignore[attr-defined]
    config = model.config  # type: ignore[attr-defined]
    config.tie_word_embeddings = False
    edited = LlamaForCausalLM(config)
    edited.load_state_dict(state, strict=False)
    edited.eval()
    ids = torch.randint(0, 96, (2, 9))
    with torch.no_grad():
        with intervention(model, "ablate", direction):
            hooked = model(input_ids=ids).logits  # type: ignore[operator]
        plain = model(input_ids=ids).logits  # type: ignore[operator]
        weights = edited(input_ids=ids).logits
    assert torch.allclose(hooked, weights, atol=1e-4)
    assert not torch.allclose(plain, weights, atol=1e-3)


def test_refusal_score_is_the_log_odds_of_the_refusal_tokens() -> None:
    from wardgate.whitebox.direction import kl_divergence, refusal_score

    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    scores = refusal_score(probs.log(), [0])
    assert torch.allclose(scores, torch.tensor([0.0, float(torch.log(torch.tensor(0.1 / 0.9)))]),
                          atol=1e-5)
    assert kl_divergence(probs.log(), probs.log()) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.slow
def test_refusal_direction_runs_end_to_end_on_a_tiny_gguf(tmp_path: Path) -> None:
    """Every stage on a random 3-layer model: means, selection on val, held-out runs through
    the harness (hooks and the orthogonalised GGUF in llama.cpp), report. Random weights meet
    no target, so the command exits 1 — the figures must still all be there."""
    from typer.testing import CliRunner

    from wardgate.cli.main import app
    from wardgate.embedded import embedded_model_path
    from wardgate.errors import ConfigError
    from wardgate.whitebox.data import find_splits
    from wardgate.whitebox.export import write_gguf

    try:
        find_splits()
    except ConfigError:
        pytest.skip("the public instruction splits are not beside this checkout")
    shape = dataclasses.replace(TINY, vocab_size=49152)
    gguf = write_gguf(tiny_state(5, shape).items(), tmp_path / "tiny.gguf", shape,
                      template=embedded_model_path(), name="tiny")
    out = tmp_path / "rd"
    args = ["whitebox", "refusal-direction", "-m", str(gguf), "-o", str(out), "--n-train", "4",
            "--n-val", "3", "--eval-n", "2", "--positions", "2", "--max-tokens", "4",
            "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    payload = json.loads((out / "refusal-direction.json").read_text())
    assert len(payload["candidates"]) == 2 * 2  # 80% of 3 layers → 2 layers × 2 positions
    assert len(payload["selection"]["separation"]) == 3
    ev = payload["evaluation"]
    assert ev["unchanged"]["harmful_refused"]["n"] == 2
    assert ev["unchanged"]["over_refusal"]["n"] == 2
    assert ev["ablated"]["harmful_refused"]["n"] == 2
    assert ev["added"]["over_refusal"]["n"] == 2
    assert ev["orthogonalised"]["harmful_refused"]["n"] == 2
    assert len(list(out.glob("orthogonalised-l*p*.gguf"))) == 1  # named by its direction
    assert (out / "direction.npy").is_file()
    assert "pair_minilm" in ev["judge"]["note"]
    html = (out / "refusal-direction.html").read_text()
    assert "<svg" in html and "Cohen" in html
    # resumable: a second run reuses means and selection
    stamp = (out / "means.pt").stat().st_mtime_ns
    again = CliRunner().invoke(app, args)
    assert again.exit_code == result.exit_code, again.output
    assert (out / "means.pt").stat().st_mtime_ns == stamp


def test_the_choice_skips_directionless_candidates_and_relaxes_in_order() -> None:
    # On the hardened SmolLM2, layer 0's template positions have a zero difference of means:
    # NaN scores, which won the old min() by default and ablated nothing useful.
    from wardgate.whitebox.direction import choose

    def cand(layer: int, ablate: float, add: float, kl: float) -> dict[str, float]:
        return {"layer": layer, "position": -1, "ablate_harmful_score": ablate,
                "add_harmless_score": add, "ablate_harmless_kl": kl}  # fmt: skip

    nan = float("nan")
    scored = [cand(0, nan, nan, nan), cand(1, -9.0, -2.0, 5.0), cand(2, -5.0, 1.3, 0.9),
              cand(3, -1.0, 0.5, 0.05)]  # fmt: skip
    assert choose(scored, 0.1) == (scored[3], "induces refusal and KL < 0.1")
    best, rule = choose(scored[:3], 0.1)
    assert best is scored[2] and rule.startswith("induces refusal (KL relaxed)")
    best, rule = choose(scored[:2], 0.1)
    assert best is scored[1] and rule.startswith("lowest ablated score")
    with pytest.raises(ConfigError, match="finite"):
        choose(scored[:1], 0.1)
