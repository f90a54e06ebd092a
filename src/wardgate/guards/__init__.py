"""Input and output guards: one detector per module, a typed verdict per text, fail closed.

Public API (see :mod:`wardgate.guards.pipeline` for how the gateway drives it)::

    from wardgate.guards import GuardPipeline, default_guards_config
    pipeline = GuardPipeline.from_config(default_guards_config(), complete=complete)
    result = await pipeline.check_request(request)          # raises GuardBlocked
    scanner = pipeline.output_scanner(result)               # .feed(text) -> str, .finish()
    text, decisions = await pipeline.check_response(answer, result)

Writing a guard: subclass :class:`Guard` (see :mod:`wardgate.guards.base`).
"""

from wardgate.guards.base import (
    Action,
    Finding,
    Guard,
    GuardEnvironment,
    GuardOptions,
    RequestState,
    ScanContext,
    Verdict,
)
from wardgate.guards.config import GuardsConfig, GuardSpec
from wardgate.guards.defaults import default_guards_config
from wardgate.guards.execution import BlockedByGuard
from wardgate.guards.pipeline import GuardPipeline, InputResult
from wardgate.guards.registry import GuardRegistry
from wardgate.guards.streaming import OutputScanner

__all__ = [
    "Action",
    "BlockedByGuard",
    "Finding",
    "Guard",
    "GuardEnvironment",
    "GuardOptions",
    "GuardPipeline",
    "GuardRegistry",
    "GuardSpec",
    "GuardsConfig",
    "InputResult",
    "OutputScanner",
    "RequestState",
    "ScanContext",
    "Verdict",
    "default_guards_config",
]
