"""An embedding model in-process: the shipped all-MiniLM-L6-v2 (384 dimensions).

``backend: minilm`` serves ``POST /v1/embeddings`` with the same numpy MiniLM the harmful
guard's semantic stage uses (:mod:`wardgate.guards.embedding`: files SHA-256-pinned, nothing
fetched), so a RAG application can embed confidential documents without any of them leaving
the host. Its vectors are unit length, like sentence-transformers' ``normalize_embeddings``.
It has no chat: a chat request for it is a 400 ``model_not_chat``. Encoding runs on its own
one-thread executor, never on the event loop; ``dimensions`` other than 384 is a 400 (the
model was not trained to be shortened).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from wardgate.config import ModelConfig
from wardgate.embeddings import EmbeddingRequest, Embeddings
from wardgate.errors import InvalidRequest, Overloaded, UnsupportedParameter, UpstreamError

if TYPE_CHECKING:
    from wardgate.chat import ChatRequest, Completion, Delta

DIMENSIONS = 384


class MiniLMBackend:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"minilm-{config.name}"
        )
        self._encoder: Any = None
        self._admitted = 0

    async def start(self) -> None:
        from wardgate.guards.embedding import shared_encoder

        loop = asyncio.get_running_loop()
        self._encoder = await loop.run_in_executor(self._executor, shared_encoder)

    def preflight(self) -> list[tuple[str, str]]:
        from wardgate.guards.embedding import SemanticUnavailable, minilm_dir

        try:
            minilm_dir()
        except SemanticUnavailable as exc:
            return [("backend", str(exc))]
        return []

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        if self._encoder is None:
            raise UpstreamError(f"model {self.config.name!r} is not loaded", retryable=True)
        if request.dimensions is not None and request.dimensions != DIMENSIONS:
            raise UnsupportedParameter(
                f"model {self.config.name!r} makes {DIMENSIONS}-dimensional vectors only",
                param="dimensions",
            )
        if self._admitted > self.config.queue_size:
            raise Overloaded(f"model {self.config.name!r} is busy; retry later")
        self._admitted += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._encode, request.texts)
        finally:
            self._admitted -= 1

    def _encode(self, texts: list[str]) -> Embeddings:
        tokens = sum(len(ids) for ids in self._encoder.token_ids(texts))
        vectors = self._encoder.encode(texts)
        return Embeddings(vectors=[row.tolist() for row in vectors], prompt_tokens=tokens)

    def _no_chat(self) -> InvalidRequest:
        return InvalidRequest(
            f"model {self.config.name!r} is an embedding model; use /v1/embeddings",
            param="model",
            code="model_not_chat",
        )

    async def complete(self, request: ChatRequest) -> Completion:
        raise self._no_chat()

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        raise self._no_chat()
        yield  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def queue_depth(self) -> int:
        return self._admitted
