"""A stand-in for ``llama_cpp.Llama`` that is slow on purpose and costs no CPU.

The real SmolLM2 answers too fast (and too unevenly on a shared machine) to keep a queue of
24 requests busy for a predictable time. This fake keeps everything else of the llamacpp
backend real — the worker thread, the admission count, the turn queue, the deadline checks —
and replaces only the model: each token takes ``seconds_per_token`` of ``time.sleep`` on the
worker thread, which holds the model exactly like generation does and frees the cores.

>>> monkeypatch.setattr("llama_cpp.Llama", slow_llama(seconds_per_token=0.05))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any


def slow_llama(seconds_per_token: float, tokens: int = 10) -> type:
    """A ``Llama`` class whose every completion is ``tokens`` tokens, one per interval."""

    class SlowLlama:
        metadata: dict[str, str] = {}
        started = 0
        finished = 0

        def __init__(self, model_path: str, **_options: Any) -> None:
            self.model_path = model_path

        def token_bos(self) -> int:
            return 1

        def token_eos(self) -> int:
            return 2

        def detokenize(self, ids: list[int], special: bool = False) -> bytes:
            return b""

        def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
            return [3] * max(1, len(text) // 4)

        def reset(self) -> None:
            return None

        def create_completion(self, *, max_tokens: int, **_options: Any) -> Iterator[dict]:
            type(self).started += 1
            count = min(tokens, max_tokens)
            for index in range(count):
                time.sleep(seconds_per_token)
                last = index == count - 1
                yield {
                    "choices": [{"text": f" t{index}", "finish_reason": "stop" if last else None}]
                }
            type(self).finished += 1

        def close(self) -> None:
            return None

    return SlowLlama
