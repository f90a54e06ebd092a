"""The gateway's runtime: every long-lived component, built from one config and owned here.

``Gateway`` is what ``create_app`` attaches to the ASGI app. It holds no module-level state;
two gateways in one process (as the tests do) share nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wardgate.backends.base import Backend, create_backend
from wardgate.chat import ChatRequest, Completion
from wardgate.config import GatewayConfig, ModelConfig
from wardgate.errors import ConfigError, ModelNotFound
from wardgate.gateway.auth import KeyAuthenticator
from wardgate.gateway.key_events import KeyEvents
from wardgate.gateway.metrics import GatewayMetrics
from wardgate.guards.pipeline import GuardPipeline
from wardgate.monitor.hooks import EnforcingAuthenticator, ObservedAuditWriter
from wardgate.monitor.monitor import build_monitor
from wardgate.provenance.detector import WatermarkDetector
from wardgate.provenance.receipts import ReceiptSigner
from wardgate.provenance.signing_keys import SigningKeys
from wardgate.provenance.watermark import Scheme, make_scheme
from wardgate.provenance.wmkey import load_watermark_key
from wardgate.ratelimit import RateLimiter, create_rate_limiter
from wardgate.routing.failover import Failover
from wardgate.routing.policy import RoutingPolicy
from wardgate.store.db import open_database
from wardgate.store.keys import KeyStore
from wardgate.store.secret import load_or_create_secret

if TYPE_CHECKING:
    from wardgate.telemetry.tracing import Tracing

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Long-lived components of one gateway instance."""

    config: GatewayConfig
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)

    def __post_init__(self) -> None:
        cfg = self.config
        for warning in cfg.deployment_warnings():
            log.warning("%s", warning)
        self.engine = open_database(cfg.database_url)
        self.keys = KeyStore(self.engine, load_or_create_secret(cfg.auth))
        self.audit = ObservedAuditWriter(self.engine, cfg.audit)
        self.monitor = build_monitor(
            cfg.monitor,
            engine=self.engine,
            redis_url=cfg.redis_url,
            submit=self.audit.submit,
            registry=self.metrics.registry,
            is_admin=self._is_admin,
        )
        if cfg.monitor.enabled:
            self.audit.observer = self.monitor.observe
        self.auth: KeyAuthenticator = EnforcingAuthenticator(
            self.keys, ttl_s=cfg.auth.key_cache_ttl_s, enforcement=self.monitor.enforcement
        )
        self.key_events = KeyEvents(cfg.redis_url, self.auth.invalidate)
        self.limiter: RateLimiter = create_rate_limiter(cfg.redis_url)
        self.model_configs: dict[str, ModelConfig] = {m.name: m for m in cfg.models}
        self.backends: dict[str, Backend] = {m.name: create_backend(m) for m in cfg.models}
        #: Secrets (receipt key, watermark keys) default to the server secret's directory.
        self.secret_dir = Path(cfg.auth.secret_file).expanduser().parent
        #: Watermark schemes by model name (keys loaded, or created on first start).
        self.watermarks: dict[str, Scheme] = {}
        for model in cfg.models:
            if model.watermark is None or not model.watermark.enabled:
                continue
            key = load_watermark_key(model.watermark, self.secret_dir, create=True)
            scheme = make_scheme(model.watermark, key)
            attach = getattr(self.backends[model.name], "attach_watermark", None)
            if attach is None:
                raise ConfigError(f"model {model.name!r}: its backend cannot watermark")
            attach(scheme)
            self.watermarks[model.name] = scheme
        self.detector = WatermarkDetector(self.model_configs, self.watermarks)
        self.receipts: ReceiptSigner | None = (
            ReceiptSigner(SigningKeys.load(cfg.receipts, self.secret_dir))
            if cfg.receipts.enabled
            else None
        )
        self.failover = Failover(self.backends, self.model_configs)
        self.policy = RoutingPolicy(cfg.routing, cfg.models)
        self.guards = GuardPipeline.from_config(
            cfg.guards, complete=self.complete_direct, registry=self.metrics.registry
        )
        self.metrics.watch_queues(
            lambda: {name: b.queue_depth() for name, b in self.backends.items()}
        )
        self.metrics.watch_circuits(self.failover.circuit_states)
        self.tracing: Tracing | None = None
        if cfg.telemetry.tracing:
            try:
                from wardgate.telemetry.tracing import install
            except ImportError as exc:
                raise ConfigError(
                    "telemetry.tracing needs OpenTelemetry: pip install 'wardgate[telemetry]'"
                ) from exc
            self.tracing = install(self, cfg.telemetry)
        self.ready = False

    def _is_admin(self, key_id: str) -> bool:
        key = self.keys.get(key_id)
        return key is not None and key.admin

    async def start(self) -> None:
        self.audit.start()
        if self.config.monitor.enabled:
            self.monitor.start()
        await self.key_events.start()
        # Load local models one at a time: two llama.cpp loads compete for the same cores.
        for name, backend in self.backends.items():
            log.info("starting model %s (%s)", name, self.model_configs[name].backend)
            await backend.start()
        # Everything allocated so far lives for the whole process: move it out of the
        # collector's reach so full collections stay short (they otherwise stall requests).
        gc.collect()
        gc.freeze()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await asyncio.gather(*(b.aclose() for b in self.backends.values()), return_exceptions=True)
        await self.limiter.aclose()
        await self.key_events.aclose()
        self.guards.close()
        await asyncio.to_thread(self.monitor.stop)
        self.detector.close()
        await asyncio.to_thread(self.audit.close)
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)
        self.engine.dispose()

    def weights_of(self, model: str) -> dict[str, Any] | None:
        """What a receipt says produced an answer served by ``model``: the weight digest the
        backend checked at load, or, for a model behind an API, the upstream model id."""
        config = self.model_configs.get(model)
        if config is None:
            return None
        backend = self.backends[model]
        digest = getattr(backend, "weights_provenance", None)
        if callable(digest):
            found: dict[str, Any] | None = digest()
            if found is not None:
                return found
        return {"upstream_model": config.wire_model, "deployment": config.deployment}

    def watermark_of(self, model: str) -> dict[str, Any] | None:
        """The watermark parameters ``model`` applies to its answers, if any."""
        describe = getattr(self.backends.get(model), "watermark_parameters", None)
        return describe() if callable(describe) else None

    async def key_changed(self, key_id: str) -> None:
        """A key was revoked, rotated or updated: no cached verdict about it may outlive this,
        here or (through Redis, when configured) on any other replica."""
        self.auth.invalidate()
        await self.key_events.publish(key_id)

    async def complete_direct(self, model: str, request: ChatRequest) -> Completion:
        """Call one configured model without guards (LLM-as-judge uses this)."""
        backend = self.backends.get(model)
        if backend is None:
            raise ModelNotFound(f"the guard model {model!r} is not configured")
        return await backend.complete(request)
