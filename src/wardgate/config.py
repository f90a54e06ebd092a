"""The one configuration tree, validated by pydantic, loaded once and passed down explicitly.

A YAML file (see ``examples/wardgate.yaml``) is parsed into :class:`GatewayConfig`. Nothing
else in Wardgate reads configuration from the environment except where a field says so
(vendor API keys and the server secret are *named* here and read from the environment, so
they never sit in the file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wardgate.console.config import ConsoleConfig
from wardgate.errors import ConfigError
from wardgate.guards.config import GuardsConfig
from wardgate.guards.defaults import default_guards_config
from wardgate.monitor.config import MonitorConfig
from wardgate.provenance.config import ReceiptsConfig, WatermarkConfig
from wardgate.routing.config import RoutingConfig
from wardgate.telemetry.config import TelemetryConfig
from wardgate.tools import ToolPolicyConfig
from wardgate.validation import field_error, problems_from


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a security config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


Deployment = Literal["on_prem", "vendor"]
#: Backends whose weights run inside the gateway's own process: on-prem by construction.
IN_PROCESS_BACKENDS = frozenset({"llamacpp", "minilm"})


class ModelTags(StrictModel):
    """Tags the routing policy and failover rules read."""

    #: Where the model runs. Left unset, :attr:`ModelConfig.deployment` decides, failing
    #: closed: only a ``llamacpp`` model (weights loaded in this process) counts as on-prem.
    deployment: Deployment | None = None
    weights: Literal["open", "closed"] = "open"
    region: str = "local"


class CircuitBreakerConfig(StrictModel):
    failure_threshold: int = Field(default=5, ge=1)
    reset_after_s: float = Field(default=30.0, gt=0)


class VerifyConfig(StrictModel):
    """Load-time integrity checks for local weights (see ``wardgate.supplychain``)."""

    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    signature: str | None = None
    public_key: str | None = None
    certificate_chain: list[str] = Field(default_factory=list)
    require_signature: bool = False
    decryption_key_env: str | None = None
    decryption_key_file: str | None = None
    #: Audit the GGUF chat template at load: log findings, refuse to load, or skip.
    template_audit: Literal["warn", "fail", "off"] = "warn"
    #: Known-good SHA-256 of the chat template; a different template is a finding.
    chat_template_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class ModelConfig(StrictModel):
    """One model the gateway can serve. Backend-specific fields are checked per backend."""

    name: str = Field(min_length=1, max_length=256)
    backend: str = "llamacpp"
    tags: ModelTags = Field(default_factory=ModelTags)

    # llamacpp
    path: str | None = None
    n_ctx: int = Field(default=2048, ge=128)
    n_threads: int | None = Field(default=None, ge=1)
    queue_size: int = Field(default=16, ge=1)
    #: llamacpp: longest a request waits for its turn before a 503 + Retry-After. Time queued
    #: is not the model failing: it never counts towards ``timeout_s`` or the breaker.
    queue_wait_s: float = Field(default=10.0, gt=0)
    chat_template: str | None = None
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    #: Text watermark on this model's answers (llamacpp only); off unless set.
    watermark: WatermarkConfig | None = None

    # openai / anthropic
    base_url: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None
    max_connections: int = Field(default=100, ge=1)

    # failover
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_s: float = Field(default=0.2, ge=0)
    fallbacks: list[str] = Field(default_factory=list)
    allow_vendor_fallback: bool = False
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)

    max_output_tokens: int = Field(default=4096, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _backend_fields(self) -> ModelConfig:
        if self.backend in ("openai", "anthropic"):
            if not self.base_url:
                raise field_error("base_url", f"backend {self.backend!r} needs base_url")
            if not self.base_url.startswith(("http://", "https://")):
                raise field_error("base_url", "base_url must be an http(s) URL")
        if self.watermark is not None and self.backend != "llamacpp":
            raise field_error(
                "watermark", "a watermark needs the logits of a local model (backend llamacpp)"
            )
        return self

    @property
    def deployment(self) -> Deployment:
        """The deployment every routing and fallback decision uses.

        An unstated deployment is ``on_prem`` only for ``llamacpp`` (local weights, in this
        process); any other backend is reached over the network and may be a vendor, so it
        counts as ``vendor`` until the config says otherwise: PII never follows a guess.
        """
        if self.tags.deployment is not None:
            return self.tags.deployment
        return "on_prem" if self.backend in IN_PROCESS_BACKENDS else "vendor"

    @property
    def wire_model(self) -> str:
        """The model name sent upstream (``upstream_model``, else ``name``)."""
        return self.upstream_model or self.name


class ServerConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Log prompts and keys? Off by default; only for local debugging.
    log_content: bool = False


class AuthConfig(StrictModel):
    #: Name of the environment variable holding the HMAC secret for key hashes.
    secret_env: str = "WARDGATE_SECRET"  # noqa: S105 - a variable name, not a secret
    #: Used when the environment variable is unset; created (0600) on first start.
    secret_file: str = ".wardgate/secret"  # noqa: S105 - a path, not a secret
    #: Seconds a verified key stays cached in-process. Revocation through this process's
    #: admin API is immediate; other processes see it within this many seconds.
    key_cache_ttl_s: float = Field(default=2.0, ge=0)


class AuditConfig(StrictModel):
    store_prompts: Literal["none", "sha256", "full"] = "none"
    batch_size: int = Field(default=200, ge=1)
    flush_interval_s: float = Field(default=0.2, gt=0)
    queue_size: int = Field(default=100_000, ge=1)


class RateLimitConfig(StrictModel):
    #: Defaults for keys that do not set their own limits; 0 means unlimited.
    default_rpm: int = Field(default=0, ge=0)
    default_tpm: int = Field(default=0, ge=0)


class GatewayConfig(StrictModel):
    server: ServerConfig = Field(default_factory=ServerConfig)
    database_url: str = "sqlite:///wardgate.db"
    redis_url: str | None = None
    auth: AuthConfig = Field(default_factory=AuthConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    models: list[ModelConfig] = Field(default_factory=list)
    #: Secure by default: without a ``guards:`` key the default pipeline runs.
    #: ``guards: {input: [], output: []}`` turns every guard off.
    guards: GuardsConfig = Field(default_factory=default_guards_config)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    receipts: ReceiptsConfig = Field(default_factory=ReceiptsConfig)
    #: Which tools answers may call (see :mod:`wardgate.tools`); default: any.
    tools: ToolPolicyConfig = Field(default_factory=ToolPolicyConfig)
    #: Anomaly detection on the request stream, alerts and actions (docs/monitoring.md).
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    #: The admin console at /console (docs/console.md).
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    #: OpenTelemetry traces and JSON logs; off by default (docs/monitoring.md).
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for index, model in enumerate(models):
            if model.name in seen:
                raise field_error(f"{index}.name", f"duplicate model name {model.name!r}")
            seen.add(model.name)
        return models

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> GatewayConfig:
        names = {m.name for m in self.models}
        for index, model in enumerate(self.models):
            for fallback in model.fallbacks:
                where = f"models.{index}.fallbacks"
                if fallback not in names:
                    raise field_error(where, f"unknown fallback {fallback!r}")
                if fallback == model.name:
                    raise field_error(where, f"model {model.name!r} cannot fall back to itself")
        return self

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def deployment_warnings(self) -> list[str]:
        """One line per network model whose ``tags.deployment`` is not stated."""
        return [
            f"model {m.name!r} (backend {m.backend}) does not state tags.deployment; it is "
            "treated as 'vendor' (no PII, secrets or confidential data): set "
            "'deployment: on_prem' if it runs in-house, or 'vendor' to silence this"
            for m in self.models
            if m.tags.deployment is None and m.backend not in IN_PROCESS_BACKENDS
        ]


def default_config() -> GatewayConfig:
    """The zero-configuration gateway: the embedded SmolLM2 model on 127.0.0.1:8080, behind
    the default guard pipeline."""
    return GatewayConfig(models=[ModelConfig(name="smollm2-135m", backend="llamacpp")])


def load_config(path: str | os.PathLike[str] | None) -> GatewayConfig:
    """Load and validate a YAML config; ``None`` gives :func:`default_config`.

    Errors name the file and the offending field and never include secret values.
    """
    if path is None:
        return default_config()
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {file}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {_yaml_problem(exc)}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        problems = problems_from(exc, model=GatewayConfig)
        raise ConfigError(
            f"{file} is not a valid Wardgate config:\n" + "\n".join(f"  {p}" for p in problems),
            problems=problems,
        ) from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: ``line 3, column 5: mapping values are not allowed here``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
