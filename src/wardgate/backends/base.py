"""The backend interface: one class per kind of model, one method per mode.

A backend turns a validated :class:`~wardgate.chat.ChatRequest` into a
:class:`~wardgate.chat.Completion` (``complete``) or an async stream of
:class:`~wardgate.chat.Delta` (``stream``). Backends raise only :mod:`wardgate.errors`
types; :class:`~wardgate.errors.UpstreamError` with ``retryable=True`` tells failover that
another attempt or a fallback may succeed.

Third parties add a backend through the ``wardgate.backends`` entry point: the entry's name
is the ``backend:`` value in the config, its object a class taking a ``ModelConfig``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from wardgate.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from wardgate.chat import ChatRequest, Completion, Delta
    from wardgate.config import ModelConfig


@runtime_checkable
class Backend(Protocol):
    """A model the gateway can call."""

    config: ModelConfig

    async def start(self) -> None:
        """Load weights or open connection pools. Called once before serving."""

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer the whole request."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Answer chunk by chunk; the last delta carries ``finish_reason``."""
        ...

    async def aclose(self) -> None:
        """Release resources. Safe to call twice."""

    def queue_depth(self) -> int:
        """Requests waiting for this backend (for metrics and 503 decisions)."""
        ...


# Optional, not part of the protocol: ``preflight(self) -> list[tuple[str, str]]`` returns the
# problems ``start()`` would hit that can be found without the network or loading weights
# (a missing file, an unset key variable), as ``(field, problem)`` pairs relative to the model
# entry. ``wardgate config check`` and ``wardgate serve`` both report them (wardgate.configcheck).
# Also optional: ``queue_wait_s: float``, for a backend that queues requests itself (llamacpp).
# It is the longest a request waits for its turn before the backend answers ``Overloaded``;
# failover allows that much on top of ``timeout_s``, which such a backend enforces itself
# from the moment a request starts, so time spent queued never counts as the model failing.
# Also optional: ``stream_batches(self, request) -> AsyncIterator[list[Delta]]``, the deltas of
# ``stream`` grouped as they arrived (one list per network read for a remote backend), so
# failover and the chat route handle a read's worth of deltas at once; the lists hold the
# same deltas in the same order as ``stream``, and none is empty.
# Constructors must not acquire resources (threads, sockets): the check builds backends too.


BackendClass = type


#: The shipped backends, also found from a checkout whose entry points are not (re)installed.
BUILTIN_BACKENDS = {
    "llamacpp": "wardgate.backends.llamacpp:LlamaCppBackend",
    "openai": "wardgate.backends.openai_compat:OpenAICompatBackend",
    "anthropic": "wardgate.backends.anthropic:AnthropicBackend",
    "minilm": "wardgate.backends.minilm:MiniLMBackend",
}


def backend_class(kind: str) -> BackendClass:
    """The class registered for ``kind`` under the ``wardgate.backends`` entry point."""
    entries = list(entry_points(group="wardgate.backends"))
    for entry in entries:
        if entry.name == kind:
            loaded: BackendClass = entry.load()
            return loaded
    if kind in BUILTIN_BACKENDS:
        module, _, name = BUILTIN_BACKENDS[kind].partition(":")
        builtin: BackendClass = getattr(importlib.import_module(module), name)
        return builtin
    known = sorted({e.name for e in entries} | set(BUILTIN_BACKENDS))
    close = difflib.get_close_matches(kind, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown backend {kind!r}{hint}; known backends: {', '.join(known)}")


def create_backend(config: ModelConfig) -> Backend:
    """Instantiate the backend a model entry names."""
    cls = backend_class(config.backend)
    backend: Backend = cls(config)
    return backend


def output_token_limit(config: ModelConfig, request: ChatRequest) -> int:
    """The completion-token cap for one request: the client's ``max_tokens`` if it is within
    the model's ``max_output_tokens``, else a 400; the model's cap when the client sets none,
    so no upstream call is ever uncapped."""
    limit = request.token_limit
    if limit is not None and limit > config.max_output_tokens:
        raise InvalidRequest(
            f"max_tokens {limit} exceeds this model's limit of {config.max_output_tokens}",
            param="max_tokens",
            code="max_tokens_too_large",
        )
    return limit or config.max_output_tokens
