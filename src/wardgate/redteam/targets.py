"""What the harness attacks: a model called directly, a vendor URL, or the gateway itself.

Every target answers one conversation at a time through :meth:`Target.send` and reports a
:class:`Reply`. A refusal by a *guard* (the gateway's 400 ``guard_blocked``-style errors, a
vendor's ``content_filter``) is a normal reply with ``blocked=True``, not an error: for the
attacker it is simply a defended attempt. Transport problems are errors, retried by the runner
when ``UpstreamError.retryable`` says so.

Target specs on the command line::

    model:NAME          a model from the gateway config (--config), called with no guards
    embedded            the embedded SmolLM2 model, no guards (same as model:smollm2-135m)
    openai:URL          any OpenAI-compatible base URL (…/v1); key from --api-key-env
    anthropic:URL       an Anthropic Messages endpoint; key from --api-key-env
    gateway:URL         Wardgate itself with its guards on (OpenAI-compatible; key from
                        --api-key-env, default WARDGATE_API_KEY)
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from wardgate.chat import ChatMessage, ChatRequest
from wardgate.errors import ConfigError, UpstreamError, UpstreamTimeout

#: 400-class codes that are plain client errors, not a guard's refusal.
_NOT_A_GUARD = frozenset({
    "invalid_request", "context_length_exceeded", "max_tokens_too_large", "request_too_large",
    "model_not_found", "invalid_api_key", "model_not_allowed", "rate_limit_exceeded",
})
#: The gateway's fail-closed answer when a guard errs: still a defended attempt.
_GUARD_UNAVAILABLE = "guard_unavailable"
#: The tool policy refusing a call (403): a defended attempt too, not a rejected key.
_TOOL_NOT_ALLOWED = "tool_not_allowed"


class TargetUnreachable(UpstreamError):
    """The target cannot be reached at all (refused connection, DNS, TLS)."""

    code = "redteam_target_unreachable"


@dataclass(frozen=True, slots=True)
class SendParams:
    """Sampling settings for one attempt; the runner varies seed and temperature per repeat."""

    max_tokens: int = 128
    temperature: float = 0.0
    seed: int | None = None
    #: Agent items: the tools declared in the request and ``tool_choice`` (OpenAI shapes).
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None

    def tool_fields(self) -> dict[str, Any]:
        """``tools`` / ``tool_choice`` for a Chat Completions body, when the item has tools."""
        out: dict[str, Any] = {}
        if self.tools:
            out["tools"] = list(self.tools)
            if self.tool_choice is not None:
                out["tool_choice"] = self.tool_choice
        return out


@dataclass(slots=True)
class Reply:
    """One answer, or the guard's refusal in its place."""

    text: str
    blocked: bool = False
    block_code: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    #: The tool calls the answer made: ``{"id", "name", "arguments"}`` each (arguments as
    #: the JSON text the model wrote).
    tool_calls: list[dict[str, str]] = field(default_factory=list)


@runtime_checkable
class Target(Protocol):
    """Anything the harness can attack."""

    #: Short label used in reports (e.g. ``smollm2-135m`` or ``gateway``).
    name: str
    #: Where it is, for the run record (never includes a key).
    description: str

    async def start(self) -> None: ...

    async def send(self, messages: Sequence[dict[str, Any]], params: SendParams) -> Reply: ...

    async def aclose(self) -> None: ...


class BackendTarget:
    """Any Wardgate backend called directly: no guards, no gateway in between."""

    def __init__(self, backend: Any, *, name: str | None = None, description: str = "") -> None:
        self.backend = backend
        self.name = name or backend.config.name
        self.description = description or f"backend:{backend.config.backend}:{self.name}"

    @classmethod
    def from_config(cls, model: Any) -> BackendTarget:
        """Build from a :class:`~wardgate.config.ModelConfig` through ``create_backend``."""
        from wardgate.backends.base import create_backend

        return cls(create_backend(model), name=model.name,
                   description=f"model:{model.name} (backend {model.backend}, no guards)")

    async def start(self) -> None:
        await self.backend.start()

    async def send(self, messages: Sequence[dict[str, Any]], params: SendParams) -> Reply:
        request = ChatRequest.model_validate({
            "model": self.backend.config.name,
            "messages": [ChatMessage.model_validate(m) for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "seed": params.seed,
            **params.tool_fields(),
        })
        started = time.perf_counter()
        completion = await self.backend.complete(request)
        return Reply(
            tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments}
                        for c in completion.tool_calls],
            text=completion.text,
            blocked=completion.finish_reason == "content_filter",
            block_code="content_filter" if completion.finish_reason == "content_filter" else None,
            finish_reason=completion.finish_reason,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            latency_s=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        await self.backend.aclose()


class OpenAITarget:
    """An OpenAI-compatible ``/chat/completions`` endpoint: a vendor, a local server, Wardgate."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        name: str | None = None,
        timeout_s: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"target URL must be http(s): {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.description = f"openai:{self.base_url} model={model}"
        self._api_key_env = api_key_env
        self._timeout = timeout_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        headers = {"Content-Type": "application/json"}
        if self._api_key_env:
            key = os.environ.get(self._api_key_env)
            if not key:
                raise ConfigError(
                    f"environment variable {self._api_key_env} (the API key) is unset"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self._timeout, connect=10.0),
            transport=self._transport,
        )

    async def send(self, messages: Sequence[dict[str, Any]], params: SendParams) -> Reply:
        if self._client is None:
            raise UpstreamError("target not started", retryable=False)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            **params.tool_fields(),
        }
        if params.seed is not None:
            body["seed"] = params.seed
        started = time.perf_counter()
        try:
            response = await self._client.post("/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"target {self.name} timed out", retryable=True) from exc
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
            raise TargetUnreachable(
                f"cannot reach target {self.name} at {self.base_url}: {type(exc).__name__}",
                retryable=False,
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"target {self.name}: {type(exc).__name__}") from exc
        latency = time.perf_counter() - started
        return self._reply(response, latency)

    def _reply(self, response: httpx.Response, latency: float) -> Reply:
        try:
            data: Any = response.json()
        except ValueError:
            data = {}
        if response.status_code == 200 and isinstance(data, dict) and data.get("choices"):
            choice = data["choices"][0]
            message = choice.get("message") or {}
            usage = data.get("usage") or {}
            finish = choice.get("finish_reason")
            refusal = message.get("refusal")
            return Reply(
                tool_calls=_tool_calls(message.get("tool_calls")),
                text=str(message.get("content") or refusal or ""),
                blocked=finish == "content_filter",
                block_code="content_filter" if finish == "content_filter" else None,
                finish_reason=finish,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                latency_s=latency,
            )
        error = data.get("error") if isinstance(data, dict) else None
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
        status = response.status_code
        if ((status == 400 and code and code not in _NOT_A_GUARD)
                or code in (_GUARD_UNAVAILABLE, _TOOL_NOT_ALLOWED)):
            return Reply(text="", blocked=True, block_code=code, finish_reason="content_filter",
                         latency_s=latency)
        message = f"target {self.name} answered HTTP {status}" + (f" ({code})" if code else "")
        retryable = status in (408, 409, 429) or status >= 500
        raise UpstreamError(message, retryable=retryable, upstream_status=status)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _tool_calls(raw: Any) -> list[dict[str, str]]:
    """``message.tool_calls`` of a Chat Completions answer as ``{"id", "name", "arguments"}``."""
    out = []
    for call in raw if isinstance(raw, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            out.append({"id": str(call.get("id") or ""), "name": str(function.get("name") or ""),
                        "arguments": str(function.get("arguments") or "")})
    return out


def anthropic_target(base_url: str, model: str, *, api_key_env: str | None,
                     timeout_s: float = 120.0) -> BackendTarget:  # fmt: skip
    """An Anthropic Messages endpoint, through Wardgate's own anthropic backend."""
    from wardgate.config import ModelConfig, ModelTags

    config = ModelConfig(
        name=model, backend="anthropic", base_url=base_url, api_key_env=api_key_env,
        timeout_s=timeout_s, retries=0,
        tags=ModelTags(deployment="vendor", weights="closed"),
    )
    target = BackendTarget.from_config(config)
    target.description = f"anthropic:{base_url} model={model}"
    return target


def parse_target(
    spec: str,
    *,
    config_path: Path | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    name: str | None = None,
    timeout_s: float = 120.0,
) -> Target:
    """Build a target from its command-line spec (see the module docstring)."""
    from wardgate.config import load_config
    from wardgate.embedded import EMBEDDED_MODEL_NAME

    kind, _, rest = spec.partition(":")
    if spec == "embedded":
        kind, rest = "model", EMBEDDED_MODEL_NAME
    if kind == "model":
        config = load_config(config_path)
        model_config = config.model(rest)
        if model_config is None:
            known = ", ".join(m.name for m in config.models) or "none"
            raise ConfigError(f"no model {rest!r} in the config (models: {known})")
        target = BackendTarget.from_config(model_config)
        if name:
            target.name = name
        return target
    if kind in ("openai", "gateway"):
        env = api_key_env or ("WARDGATE_API_KEY" if kind == "gateway" else None)
        wire = model or EMBEDDED_MODEL_NAME
        label = name or (f"gateway:{wire}" if kind == "gateway" else wire)
        return OpenAITarget(rest, wire, api_key_env=env, name=label, timeout_s=timeout_s)
    if kind == "anthropic":
        if not model:
            raise ConfigError("an anthropic target needs --model")
        target = anthropic_target(rest, model, api_key_env=api_key_env, timeout_s=timeout_s)
        if name:
            target.name = name
        return target
    raise ConfigError(
        f"unknown target {spec!r}; use model:NAME, embedded, openai:URL, anthropic:URL "
        "or gateway:URL"
    )


__all__ = [
    "BackendTarget",
    "OpenAITarget",
    "Reply",
    "SendParams",
    "Target",
    "TargetUnreachable",
    "anthropic_target",
    "parse_target",
]
