"""Scoring fixed text with llama.cpp itself: the prompt a chat model sees, and an answer's NLL.

Perplexity is taken from the same runtime the gateway serves with, so a quantised file is
scored as it would answer (llama.cpp's own kernels), not as torch would dequantise it. The
``Llama`` must be created with ``logits_all=True`` for :func:`answer_nll`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def chat_renderer(llm: Any) -> Callable[[str], list[int]]:
    """Token ids of one user message in the model's own chat template (ChatML if it has none),
    ending where the assistant's answer begins."""
    from wardgate.backends.chat_template import CHATML_TEMPLATE, ChatTemplate
    from wardgate.chat import ChatMessage

    meta = dict(llm.metadata or {})
    bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="replace")
    eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="replace")
    template = ChatTemplate(meta.get("tokenizer.chat_template") or CHATML_TEMPLATE,
                            bos_token=bos, eos_token=eos)  # fmt: skip

    def render(prompt: str) -> list[int]:
        text = template.render([ChatMessage(role="user", content=prompt)])
        ids: list[int] = llm.tokenize(text.encode(), add_bos=True, special=True)
        return ids

    return render


def answer_nll(llm: Any, prompt_ids: Sequence[int], answer_ids: Sequence[int]) -> tuple[float, int]:
    """Summed negative log-likelihood of ``answer_ids`` after ``prompt_ids``, and their count
    (the prompt itself is not scored)."""
    import numpy as np

    if not answer_ids:
        return 0.0, 0
    llm.reset()
    llm.eval([*prompt_ids, *answer_ids])
    start = len(prompt_ids) - 1
    rows = np.asarray(llm.scores[start : start + len(answer_ids)], dtype=np.float64)
    rows = rows - rows.max(axis=1, keepdims=True)
    logp = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(answer_ids)), list(answer_ids)].sum()), len(answer_ids)
