"""A model's tokenizer from its GGUF file: the vocabulary only, no weights loaded or run.

Detection needs the exact token ids the model produced; llama.cpp's ``vocab_only`` load reads
the tokenizer tables from the GGUF header and skips every tensor (~0.2 s for SmolLM2). The
file goes through the same load-time checks as serving (pinned digest, decryption).
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import Any

from wardgate.config import ModelConfig
from wardgate.embedded import embedded_model_path
from wardgate.errors import ConfigError


class Vocabulary:
    """Tokenizes text the way the model's own tokenizer does; thread-safe."""

    def __init__(self, config: ModelConfig) -> None:
        from llama_cpp import Llama

        from wardgate.supplychain.verify_load import prepare_model_file

        source = Path(config.path) if config.path else embedded_model_path()
        if not source.is_file():
            raise ConfigError(f"model {config.name!r}: weights file not found: {source}")
        # llama.cpp warns that a vocabulary-only context has no training context length, via
        # a Python print to sys.stderr; that line would only confuse a CLI user.
        with (
            prepare_model_file(source, config.verify, template_policy="off") as path,
            contextlib.redirect_stderr(io.StringIO()),
        ):
            self._llm: Any = Llama(
                model_path=str(path), vocab_only=True, n_ctx=config.n_ctx, verbose=False
            )
        self.n_vocab: int = self._llm.n_vocab()
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        with self._lock:
            ids: list[int] = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return ids

    def close(self) -> None:
        self._llm.close()
