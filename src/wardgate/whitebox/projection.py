"""The refusal direction as a harmful-intent score: project a prompt's own activations on it.

The refusal-direction command (``direction.py``) finds, per (layer, post-instruction position),
the difference of the mean residual activations of harmful and harmless *train* instructions.
If that direction encodes "this request is harmful", the projection of a new prompt's
activation onto it is a detector score that costs one partial forward pass of the model — no
generation, no second model. This module computes those projections, picks the candidate by
*val* AUROC and a threshold at a *val* false-positive budget, so ``bench/whitebox_projection
_guard.py`` can measure it on *test* beside the shipped harmful detector.

Only the layers up to the chosen one run: a forward pre-hook records the input of each needed
layer (``resid_pre``, the same activation ``mean_activations`` reads) and stops the pass as soon
as the last one is recorded, so scoring at layer ``L`` costs ``L`` decoder layers.

Needs the ``whitebox`` extra (torch); never imported on the serving path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np


class _Stop(Exception):
    """Raised by the last capture hook: the layers after it are not needed."""


def unit_directions(diff: Any) -> np.ndarray:
    """``diff`` ``[layer, position, d]`` scaled to unit length; a zero difference (layer 0's
    template tokens embed identically for every prompt) stays zero, so it scores 0 for all."""
    d = np.asarray(diff.detach().cpu().numpy() if hasattr(diff, "detach") else diff,
                   dtype=np.float64)  # fmt: skip
    norms = np.linalg.norm(d, axis=-1, keepdims=True)
    return np.divide(d, norms, out=np.zeros_like(d), where=norms > 1e-12).astype(np.float32)


@contextmanager
def _capture(model: Any, n_layers: int, positions: int) -> Iterator[list[Any]]:
    """Record the last ``positions`` rows of the input of layers ``0 … n_layers-1``; stop the
    forward pass once layer ``n_layers-1``'s input is recorded."""
    seen: list[Any] = []

    def hook_for(index: int) -> Any:
        def hook(_module: Any, args: Any, kwargs: Any) -> None:
            x = args[0] if args else kwargs["hidden_states"]
            seen.append(x[:, -positions:, :].float())
            if index == n_layers - 1:
                raise _Stop

        return hook

    layers = model.model.layers
    handles = [layers[i].register_forward_pre_hook(hook_for(i), with_kwargs=True)
               for i in range(n_layers)]  # fmt: skip
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def residuals(model: Any, tokenizer: Any, prompts: Sequence[str], n_layers: int,
              positions: int, batch_size: int = 16) -> np.ndarray:  # fmt: skip
    """``[n, n_layers, positions, d]``: the input of each of the first ``n_layers`` decoder
    layers at the last ``positions`` tokens of each prompt's chat template, in prompt order.
    Prompts are batched by token length (left-padded), so little work goes to padding."""
    import torch

    from wardgate.whitebox.direction import _encode_prompts
    from wardgate.whitebox.train import prompt_text

    if not 1 <= n_layers <= len(model.model.layers):
        raise ValueError(f"n_layers must be 1..{len(model.model.layers)}, got {n_layers}")
    lengths = [len(tokenizer(prompt_text(tokenizer, p), add_special_tokens=False)["input_ids"])
               for p in prompts]  # fmt: skip
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    out: np.ndarray | None = None
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            ids, mask = _encode_prompts(tokenizer, [prompts[i] for i in idx])
            with _capture(model, n_layers, positions) as seen, suppress(_Stop):
                model.model(input_ids=ids, attention_mask=mask)
            acts = torch.stack(seen, dim=1).numpy()  # [b, layer, pos, d]
            if out is None:
                out = np.zeros((len(prompts), *acts.shape[1:]), dtype=np.float32)
            out[idx] = acts
    if out is None:
        raise ValueError("no prompts")
    return out


def projections(model: Any, tokenizer: Any, prompts: Sequence[str], units: np.ndarray,
                batch_size: int = 16) -> np.ndarray:  # fmt: skip
    """``[n, layer, position]``: each prompt's activation at every candidate (layer, position)
    of ``units`` (``[layer, position, d]``, layers from 0) projected on that candidate's unit
    direction. Runs only ``units.shape[0]`` layers."""
    n_layers, positions = units.shape[0], units.shape[1]
    scores = []
    for start in range(0, len(prompts), 256):  # bounded memory: 256 prompts' activations
        acts = residuals(model, tokenizer, prompts[start: start + 256], n_layers, positions,
                         batch_size)  # fmt: skip
        scores.append(np.einsum("nlpd,lpd->nlp", acts, units))
    return np.concatenate(scores, axis=0)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    if not len(pos) or not len(neg):
        raise ValueError("AUROC needs both classes")
    ranks = _ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))  # fmt: skip


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), float)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i: j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@dataclass(frozen=True, slots=True)
class Candidate:
    layer: int
    position: int  # negative: -1 is the last token of the chat template
    auroc: float


def choose_candidate(harmful: np.ndarray, harmless: np.ndarray) -> Candidate:
    """The (layer, position) whose projection separates harmful from harmless (val) prompts
    best by AUROC; ties go to the earlier layer, the cheaper one to run. Inputs are
    ``[n, layer, position]`` scores; a candidate with a zero direction scores AUROC 0.5."""
    n_layers, n_pos = harmful.shape[1], harmful.shape[2]
    table = np.array([[auroc(harmful[:, layer, pos], harmless[:, layer, pos])
                       for pos in range(n_pos)] for layer in range(n_layers)])  # fmt: skip
    best = max(((layer, pos) for layer in range(n_layers) for pos in range(n_pos)),
               key=lambda lp: (round(float(table[lp]), 9), -lp[0]))  # fmt: skip
    return Candidate(layer=best[0], position=best[1] - n_pos, auroc=float(table[best]))


def auroc_table(harmful: np.ndarray, harmless: np.ndarray) -> list[list[float]]:
    """AUROC of every candidate, ``[layer][position]`` (for the report's per-layer view)."""
    return [[auroc(harmful[:, layer, pos], harmless[:, layer, pos])
             for pos in range(harmful.shape[2])] for layer in range(harmful.shape[1])]  # fmt: skip


def threshold_at_fpr(benign: np.ndarray, fpr: float) -> float:
    """The lowest threshold ``t`` (flag when score ≥ ``t``) whose false-positive rate on
    ``benign`` is at most ``fpr``: just above the benign score at that quantile."""
    if not 0 <= fpr < 1:
        raise ValueError("fpr must be in [0, 1)")
    ordered = np.sort(np.asarray(benign, float))[::-1]
    allowed = int(np.floor(fpr * len(ordered)))  # benign scores that may reach the threshold
    # Every value equal to the (allowed+1)-th highest must stay below: step just above it.
    return float(np.nextafter(ordered[allowed], np.inf)) if allowed < len(ordered) else -np.inf


def threshold_at_tpr(harmful: np.ndarray, tpr: float) -> float:
    """The highest threshold ``t`` (flag when score ≥ ``t``) that still flags at least ``tpr``
    of ``harmful``: the ``ceil(tpr·n)``-th highest harmful score."""
    if not 0 < tpr <= 1:
        raise ValueError("tpr must be in (0, 1]")
    ordered = np.sort(np.asarray(harmful, float))[::-1]
    return float(ordered[max(1, int(np.ceil(tpr * len(ordered) - 1e-9))) - 1])


@dataclass(frozen=True, slots=True)
class ProjectionScorer:
    """One prompt's harmful-intent score: its activation at the input of ``layer`` at
    ``position`` projected on the unit refusal direction there. Runs ``layer`` decoder layers."""

    model: Any
    tokenizer: Any
    direction: np.ndarray  # [d], unit
    layer: int
    position: int  # negative
    threshold: float

    def scores(self, prompts: Sequence[str], batch_size: int = 1) -> np.ndarray:
        acts = residuals(self.model, self.tokenizer, prompts, self.layer + 1, -self.position,
                         batch_size)  # fmt: skip
        return acts[:, self.layer, 0, :] @ self.direction

    def flags(self, prompts: Sequence[str], batch_size: int = 1) -> np.ndarray:
        return self.scores(prompts, batch_size) >= self.threshold
