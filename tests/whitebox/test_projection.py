"""Refusal-direction projection as a score: it reads the same activations as the means, runs
only the layers it needs, and its choice and threshold follow the val rules (tiny random model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

PROMPTS = ["How do I bake bread?", "hi", "Explain the water cycle to a child in detail.",
           "Write a poem", "What is 2+2?"]  # fmt: skip


class CharTokenizer:
    """Just enough of a Hugging Face tokenizer for the projection code: one id per character
    (ids 2…95 of the tiny model's 96), a fixed chat template around the message."""

    pad_token_id = 0
    eos_token_id = 1

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:  # fmt: skip
        return "<user>" + messages[0]["content"] + "</user>\n<bot>"

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [2 + ord(c) % 94 for c in text]}


def _tiny_model(seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def test_residuals_are_the_activations_the_means_are_taken_from() -> None:
    from wardgate.whitebox.direction import mean_activations
    from wardgate.whitebox.projection import residuals

    model, tok = _tiny_model(), CharTokenizer()
    _, last = mean_activations(model, tok, PROMPTS, positions=1, batch_size=16)
    # other batches, so other padding, and prompts reordered by length inside
    acts = residuals(model, tok, PROMPTS, n_layers=3, positions=2, batch_size=2)
    assert acts.shape == (len(PROMPTS), 3, 2, 32)
    assert np.allclose(acts[:, :, -1, :], last.numpy(), atol=1e-4)


def test_the_forward_pass_stops_at_the_chosen_layer() -> None:
    from wardgate.whitebox.projection import residuals

    model, tok = _tiny_model(), CharTokenizer()
    calls = [0, 0, 0]
    hooks = [layer.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, layer in enumerate(model.model.layers)]  # fmt: skip
    residuals(model, tok, PROMPTS, n_layers=2, positions=1, batch_size=16)
    for h in hooks:
        h.remove()
    assert calls == [1, 0, 0]  # the input of layer 1 is layer 0's output: layer 1 never runs
    with pytest.raises(ValueError):
        residuals(model, tok, PROMPTS, n_layers=4, positions=1)


def test_the_scorer_is_the_projection_of_its_candidate() -> None:
    from wardgate.whitebox.projection import ProjectionScorer, projections, unit_directions

    model, tok = _tiny_model(), CharTokenizer()
    units = unit_directions(torch.randn(3, 2, 32))
    table = projections(model, tok, PROMPTS, units, batch_size=3)
    assert table.shape == (len(PROMPTS), 3, 2)
    scorer = ProjectionScorer(model, tok, units[1, 0], layer=1, position=-2, threshold=0.0)
    one_at_a_time = scorer.scores(PROMPTS)
    assert np.allclose(one_at_a_time, table[:, 1, 0], atol=1e-4)
    assert (scorer.flags(PROMPTS) == (one_at_a_time >= 0.0)).all()


def test_unit_directions_leave_a_zero_difference_zero() -> None:
    from wardgate.whitebox.projection import unit_directions

    diff = torch.randn(2, 3, 8)
    diff[0, 1] = 0  # layer 0's template tokens: the same embedding for every prompt
    units = unit_directions(diff)
    assert np.allclose(units[0, 1], 0)
    norms = np.linalg.norm(units, axis=-1)
    assert np.allclose(np.delete(norms.ravel(), 1), 1, atol=1e-6)


def test_auroc_is_the_pairwise_win_rate_with_ties_counting_half() -> None:
    from wardgate.whitebox.projection import auroc

    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 60).astype(float)
    brute = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auroc(pos, neg) == pytest.approx(brute)
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5
    with pytest.raises(ValueError):
        auroc(np.array([]), np.array([1.0]))


def test_the_candidate_is_the_best_separator_and_ties_go_to_the_earlier_layer() -> None:
    from wardgate.whitebox.projection import choose_candidate

    rng = np.random.default_rng(1)
    harmful, harmless = rng.normal(size=(30, 4, 3)), rng.normal(size=(40, 4, 3))
    harmful[:, 2, 1] += 5  # layer 2, position -2 separates perfectly
    best = choose_candidate(harmful, harmless)
    assert (best.layer, best.position, best.auroc) == (2, -2, 1.0)
    harmful[:, 3, 0] += 5  # a later layer as good: the cheaper one wins
    assert choose_candidate(harmful, harmless).layer == 2


def test_the_threshold_keeps_the_val_false_positive_budget() -> None:
    from wardgate.whitebox.projection import threshold_at_fpr

    benign = np.arange(100, dtype=float)
    t = threshold_at_fpr(benign, 0.03)
    assert (benign >= t).sum() == 3  # and it is the tightest: one step lower flags a fourth
    assert (benign >= np.nextafter(t, -np.inf)).sum() == 4
    assert (benign >= threshold_at_fpr(benign, 0.0)).sum() == 0
    tied = np.ones(50)  # a tie cannot be split: none flagged rather than all
    assert (tied >= threshold_at_fpr(tied, 0.05)).sum() == 0
    with pytest.raises(ValueError):
        threshold_at_fpr(benign, 1.0)


def test_the_recall_matched_threshold_flags_at_least_that_share() -> None:
    from wardgate.whitebox.projection import threshold_at_tpr

    harmful = np.arange(10, dtype=float)
    assert (harmful >= threshold_at_tpr(harmful, 0.88)).sum() == 9  # ceil(8.8)
    assert (harmful >= threshold_at_tpr(harmful, 0.9)).sum() == 9
    assert threshold_at_tpr(harmful, 1.0) == 0.0
    with pytest.raises(ValueError):
        threshold_at_tpr(harmful, 0.0)
