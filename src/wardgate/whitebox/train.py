"""Torch side of the white-box commands: load a GGUF into transformers, LoRA, perplexity.

Needs the ``whitebox`` extra. The model comes from the GGUF itself (``gguf_file=``: transformers
de-quantises it), so what is trained is exactly the weights the gateway serves, and the
tokenizer and chat template are the file's own.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

IGNORE = -100


@dataclass(frozen=True, slots=True)
class Example:
    prompt: str
    answer: str
    kind: str  # "refusal" | "helpful" | "harmful" | "benign"


@dataclass(frozen=True, slots=True)
class LoraSettings:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    lr: float = 5e-4
    epochs: float = 2.0
    batch_size: int = 8
    max_answer_tokens: int = 48
    seed: int = 0
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                "up_proj", "down_proj")  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def load_model(gguf: Path) -> tuple[Any, Any]:
    """(model in float32, tokenizer) from a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    gguf = Path(gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32)  # fmt: skip
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def prompt_text(tokenizer: Any, prompt: str) -> str:
    text: str = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                              tokenize=False, add_generation_prompt=True)
    return text


def end_of_turn(tokenizer: Any) -> str:
    """The token that closes an assistant turn in this chat template (``<|im_end|>``…)."""
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": "ANSWER"}],
        tokenize=False)
    tail = full.split("ANSWER", 1)[1].strip()
    return tail or (tokenizer.eos_token or "")


def encode(tokenizer: Any, example: Example, max_answer_tokens: int,
           eot: str) -> tuple[list[int], list[int]]:  # fmt: skip
    """Token ids and labels (prompt masked): the prompt as llama.cpp formats it, then the answer."""
    text = prompt_text(tokenizer, example.prompt)
    prefix = tokenizer(text, add_special_tokens=False)["input_ids"]
    answer = tokenizer(example.answer, add_special_tokens=False)["input_ids"]
    if len(answer) <= max_answer_tokens:
        answer = answer + tokenizer(eot, add_special_tokens=False)["input_ids"]
    else:
        answer = answer[:max_answer_tokens]
    return prefix + answer, [IGNORE] * len(prefix) + answer


def _batches(encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, pad: int,
             ) -> Iterator[tuple[Any, Any, Any]]:  # fmt: skip
    import torch

    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (i, lab) in enumerate(encoded):
        ids[row, : len(i)] = torch.tensor(i)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(i)] = 1
    yield ids, mask, labels


def plan_steps(n_examples: int, settings: LoraSettings) -> list[list[int]]:
    """The example indices of every optimiser step, fixed by the seed (so a resumed run takes
    the same batches it would have taken)."""
    rng = random.Random(settings.seed)
    order: list[int] = []
    total = max(1, math.ceil(n_examples * settings.epochs))
    while len(order) < total:
        epoch = list(range(n_examples))
        rng.shuffle(epoch)
        order.extend(epoch)
    order = order[:total]
    return [order[i: i + settings.batch_size] for i in range(0, total, settings.batch_size)]


ProgressFn = Callable[[int, int, float], None]


def lora_finetune(model: Any, tokenizer: Any, examples: Sequence[Example], settings: LoraSettings,
                  checkpoint: Path, *, checkpoint_every: int = 10,
                  progress: ProgressFn | None = None) -> dict[str, Any]:  # fmt: skip
    """LoRA fine-tune in place and merge the adapters into ``model``; resumable from
    ``checkpoint`` (adapter weights, optimiser state and step, saved every few steps)."""
    import torch
    from peft import (
        LoraConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )

    torch.manual_seed(settings.seed)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=list(settings.targets),
                        task_type="CAUSAL_LM")  # fmt: skip
    peft_model = get_peft_model(model, config)
    eot = end_of_turn(tokenizer)
    encoded = [encode(tokenizer, e, settings.max_answer_tokens, eot) for e in examples]
    steps = plan_steps(len(encoded), settings)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / 5) * max(0.0, 1 - s / len(steps)))
    start, losses = 0, []
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        set_peft_model_state_dict(peft_model, saved["lora"])
        optimiser.load_state_dict(saved["optimiser"])
        schedule.load_state_dict(saved["schedule"])
        start, losses = int(saved["step"]), list(saved["losses"])
    peft_model.train()
    pad = int(tokenizer.pad_token_id)
    for step in range(start, len(steps)):
        batch = [encoded[i] for i in steps[step]]
        for ids, mask, labels in _batches(batch, settings.batch_size, pad):
            loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
            losses.append(round(float(loss.detach()), 5))
        if progress:
            progress(step + 1, len(steps), losses[-1])
        if (step + 1) % checkpoint_every == 0 or step + 1 == len(steps):
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"lora": get_peft_model_state_dict(peft_model),
                        "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                        "step": step + 1, "losses": losses}, tmp)  # fmt: skip
            tmp.replace(checkpoint)
    peft_model.eval()
    merged = peft_model.merge_and_unload()
    return {"steps": len(steps), "losses": losses, "examples": len(encoded),
            "trainable_params": sum(p.numel() for p in params), "model": merged}


def perplexity(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]],
               max_answer_tokens: int = 128) -> float:  # fmt: skip
    """exp(mean NLL) of the answers' tokens given their prompts (the prompt is not scored)."""
    import torch

    eot = end_of_turn(tokenizer)
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for prompt, answer in pairs:
            ids, labels = encode(tokenizer, Example(prompt, answer, "benign"), max_answer_tokens,
                                 eot)  # fmt: skip
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            target = torch.tensor(labels[1:])
            keep = target != IGNORE
            nll = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
            total_nll += float(nll)
            total_tokens += int(keep.sum())
    return math.exp(total_nll / max(1, total_tokens))


def export_state(model: Any) -> Iterator[tuple[str, np.ndarray]]:
    """The model's tensors as numpy, one at a time, for :func:`~.export.write_gguf`."""
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        yield name, tensor.detach().to("cpu").float().numpy()
