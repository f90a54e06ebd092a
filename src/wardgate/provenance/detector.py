"""Detection as a service: which model's watermark, which key, and a report a person can read.

Shared by ``wardgate watermark detect`` and ``POST /v1/watermark/detect``. Vocabularies load
lazily, once per model, and are only ever the GGUF tokenizer (:mod:`wardgate.provenance.vocab`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from wardgate.config import GatewayConfig, ModelConfig
from wardgate.errors import InvalidRequest, ModelNotFound
from wardgate.provenance.detect import WindowMode, detect_tokens
from wardgate.provenance.vocab import Vocabulary
from wardgate.provenance.watermark import Scheme, make_scheme
from wardgate.provenance.wmkey import load_watermark_key

#: Longest text accepted for detection (characters): ~25k tokens, a few seconds of CPU.
MAX_TEXT_CHARS = 100_000


class WatermarkDetector:
    def __init__(self, configs: dict[str, ModelConfig], schemes: dict[str, Scheme]) -> None:
        self._configs = configs
        self._schemes = schemes
        self._vocab: dict[str, Vocabulary] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: GatewayConfig) -> WatermarkDetector:
        """For offline use: keys are read, never created (a new key could detect nothing)."""
        secret_dir = Path(config.auth.secret_file).expanduser().parent
        schemes: dict[str, Scheme] = {}
        for model in config.models:
            if model.watermark is not None and model.watermark.enabled:
                key = load_watermark_key(model.watermark, secret_dir, create=False)
                schemes[model.name] = make_scheme(model.watermark, key)
        return cls({m.name: m for m in config.models}, schemes)

    @property
    def models(self) -> list[str]:
        return list(self._schemes)

    def _scheme_for(self, model: str | None) -> tuple[str, Scheme]:
        if model is None:
            if len(self._schemes) == 1:
                return next(iter(self._schemes.items()))
            names = ", ".join(self._schemes) or "none"
            raise InvalidRequest(
                f"name the model whose watermark to look for (watermarked models: {names})",
                param="model",
                code="model_required",
            )
        scheme = self._schemes.get(model)
        if scheme is None:
            known = model in self._configs
            raise ModelNotFound(
                f"model {model[:256]!r} "
                + ("does not watermark its answers" if known else "is not configured"),
                param="model",
                code="model_not_watermarked" if known else "model_not_found",
            )
        return model, scheme

    def vocabulary(self, model: str) -> Vocabulary:
        with self._lock:
            vocab = self._vocab.get(model)
            if vocab is None:
                vocab = self._vocab[model] = Vocabulary(self._configs[model])
            return vocab

    def detect(
        self,
        text: str,
        *,
        model: str | None = None,
        key_id: str | None = None,
        threshold: float | None = None,
        windows: WindowMode = "auto",
    ) -> dict[str, Any]:
        if not text.strip():
            raise InvalidRequest("the text is empty", param="text", code="empty_text")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidRequest(
                f"the text is longer than {MAX_TEXT_CHARS} characters; send an excerpt",
                param="text",
                code="text_too_long",
            )
        name, scheme = self._scheme_for(model)
        if key_id is not None and key_id != scheme.key_id:
            raise InvalidRequest(
                f"model {name!r} watermarks with key {scheme.key_id}, not {key_id[:64]!r}",
                param="key_id",
                code="wrong_key_id",
            )
        config = scheme.config
        tokens = self.vocabulary(name).tokenize(text)
        result = detect_tokens(
            scheme,
            tokens,
            threshold=threshold if threshold is not None else config.z_threshold,
            min_tokens=config.min_tokens,
            windows=windows,
        )
        report = {"model": name, **scheme.describe(), **result.as_dict()}
        if result.verdict == "insufficient_tokens":
            report["message"] = (
                f"insufficient tokens: {result.tokens_scored} scored, at least "
                f"{config.min_tokens} needed to decide (this is not a 'not watermarked')"
            )
        return report

    def close(self) -> None:
        for vocab in self._vocab.values():
            vocab.close()
        self._vocab.clear()
