"""Everything wrong with a configuration that can be found without the network.

``wardgate config check`` and ``wardgate serve`` both call :func:`check_config`, so a config
the check passes is one ``serve`` accepts, and every problem ``serve`` would stop on (or, worse,
serve around: a model list that is empty, a guard route nobody can reach) is reported before
anyone waits for a model to load. Each problem is one :class:`~wardgate.errors.ConfigProblem`
with a dotted path into the YAML file.

What is checked, in the order it is reported:

* ``models``: at least one; each backend resolves through the ``wardgate.backends`` registry
  and builds; whatever the backend's ``preflight()`` finds (llama.cpp: the weights file, the
  ``verify:`` settings, the chat template; vendors: the key's environment variable is set).
* ``routing``: logical models and rule ``models:`` name configured models.
* ``guards``: each configured guard type resolves, may run on its stage, accepts its
  ``options:`` and builds; a guard that calls a model (``llm_judge``) names a configured one;
  ``guards.routes`` keys name a model or a logical model.
* ``database_url`` and ``redis_url`` parse, and the database driver is installed.

Not checked, because they need the network or the real load: whether a vendor accepts the key,
whether a database or Redis answers, whether weights match their pinned digest or signature
(``wardgate model verify`` does that offline, on demand), and whether the port is free.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from wardgate.backends.base import backend_class
from wardgate.chat import ChatRequest, Completion
from wardgate.config import GatewayConfig, ModelConfig
from wardgate.errors import ConfigError, ConfigProblem
from wardgate.guards.base import GuardEnvironment
from wardgate.guards.config import GuardSpec
from wardgate.guards.registry import GuardRegistry
from wardgate.routing.policy import routing_problems
from wardgate.validation import join_path, problems_from


def check_config(
    config: GatewayConfig, *, guard_registry: GuardRegistry | None = None
) -> list[ConfigProblem]:
    """Every problem found; an empty list means ``serve`` will accept this config."""
    problems: list[ConfigProblem] = []
    if not config.models:
        problems.append(
            ConfigProblem(
                "models",
                "no models are configured, so the gateway would answer every request with an "
                "error; add at least one (see examples/wardgate.yaml)",
            )
        )
    for index, model in enumerate(config.models):
        problems += _model_problems(f"models.{index}", model)
    problems += routing_problems(config.routing, [m.name for m in config.models])
    problems += _guard_problems(config, guard_registry or GuardRegistry())
    problems += _store_problems(config)
    return problems


def _model_problems(where: str, model: ModelConfig) -> list[ConfigProblem]:
    try:
        cls = backend_class(model.backend)
    except ConfigError as exc:
        return [ConfigProblem(f"{where}.backend", exc.message)]
    except Exception as exc:  # a third-party entry point that fails to import
        return [ConfigProblem(f"{where}.backend", f"cannot load backend: {exc}")]
    try:
        backend = cls(model)
    except ConfigError as exc:
        return [ConfigProblem(where, exc.message)]
    preflight = getattr(backend, "preflight", None)
    if preflight is None:
        return []
    return [ConfigProblem(join_path(where, field), text) for field, text in preflight()]


async def _never_called(model: str, request: ChatRequest) -> Completion:  # pragma: no cover
    raise RuntimeError("config check does not run models")


def _guard_lists(config: GatewayConfig) -> Iterator[tuple[str, str, Sequence[GuardSpec]]]:
    guards = config.guards
    yield "guards.input", "input", guards.input
    yield "guards.output", "output", guards.output
    for route, override in guards.routes.items():
        if override.input is not None:
            yield f"guards.routes.{route}.input", "input", override.input
        if override.output is not None:
            yield f"guards.routes.{route}.output", "output", override.output


def _guard_problems(config: GatewayConfig, registry: GuardRegistry) -> list[ConfigProblem]:
    from pydantic import ValidationError

    problems: list[ConfigProblem] = []
    models = {m.name for m in config.models}
    env = GuardEnvironment(complete=_never_called)
    for base, stage, specs in _guard_lists(config):
        for index, spec in enumerate(specs):
            if not spec.enabled:
                continue  # serve does not build it either
            where = f"{base}.{index}"
            try:
                cls = registry.resolve(spec.type)
            except ConfigError as exc:
                problems.append(ConfigProblem(f"{where}.type", exc.message))
                continue
            if stage not in cls.stages:
                problems.append(
                    ConfigProblem(f"{where}.type", f"guard {spec.type!r} cannot run on {stage}")
                )
                continue
            try:
                cls.Options.model_validate(spec.options)
            except ValidationError as exc:
                problems += problems_from(exc, model=cls.Options, prefix=f"{where}.options")
                continue
            try:
                guard = cls(spec, env)
            except ConfigError as exc:
                problems.append(ConfigProblem(where, exc.message))
                continue
            for name in getattr(guard, "referenced_models", ()):
                if name not in models:
                    problems.append(
                        ConfigProblem(f"{where}.options.model", f"unknown model {name!r}")
                    )
    routes = models | set(config.routing.logical_models)
    for route in config.guards.routes:
        if route not in routes:
            problems.append(
                ConfigProblem(
                    f"guards.routes.{route}",
                    f"no model or logical model is named {route!r}, so these guards never run",
                )
            )
    return problems


def _store_problems(config: GatewayConfig) -> list[ConfigProblem]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    problems = []
    try:
        make_url(config.database_url).get_dialect()
    except ArgumentError:
        problems.append(ConfigProblem("database_url", "not a valid SQLAlchemy database URL"))
    except (NoSuchModuleError, ImportError) as exc:
        problems.append(ConfigProblem("database_url", f"no database driver for it: {exc}"))
    redis = config.redis_url
    if redis is not None and not redis.startswith(("redis://", "rediss://", "unix://")):
        problems.append(
            ConfigProblem("redis_url", "must start with redis://, rediss:// or unix://")
        )
    return problems
