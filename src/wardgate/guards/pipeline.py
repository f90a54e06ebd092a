"""The guard pipeline: every input text and the answer pass the configured guards, in order.

The gateway uses exactly this API::

    pipeline = GuardPipeline.from_config(config.guards, complete=complete,
                                         registry=prometheus_registry)
    result = await pipeline.check_request(request, documents=[...])   # raises GuardBlocked
    # result.request        - the request to send on (redacted, canary in the system prompt)
    # result.data_classes   - e.g. {"pii", "secrets"}, for the routing policy
    # result.restrict_on_prem, result.decisions (JSON-able, for audit), result.canary
    scanner = pipeline.output_scanner(result)        # streaming: scanner.feed(chunk) -> str
    text, decisions = await pipeline.check_response(answer_text, result)   # non-streaming
    pipeline.close()                                 # at shutdown: stops the guard executor

Guards run in config order; the first block stops the pipeline and raises
:class:`~wardgate.guards.execution.BlockedByGuard` (a :class:`~wardgate.errors.GuardBlocked`
carrying the decisions so far). A redaction is seen by every later guard. A guard that raises
or overruns ``timeout_s`` blocks (status 503, code ``guard_unavailable``) unless its spec says
``on_error: allow``. Every message is scanned (system, user, assistant history, tool results),
every text part of a multi-part message, and every document the application passes in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wardgate.errors import ConfigError
from wardgate.guards.base import (
    SYSTEM_ROLES,
    Action,
    CompleteFn,
    Guard,
    GuardEnvironment,
    RequestState,
    ScanContext,
    Source,
)
from wardgate.guards.execution import DecisionLog, blocked, run_guard, unavailable
from wardgate.guards.metrics import GuardMetrics
from wardgate.guards.registry import GuardRegistry
from wardgate.guards.streaming import OutputScanner

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from wardgate.chat import ChatMessage, ChatRequest
    from wardgate.guards.config import GuardsConfig, GuardSpec
    from wardgate.guards.pseudonymise import Pseudonymiser


@dataclass(slots=True)
class InputResult:
    """What the input stage decided; pass it on to the output stage of the same request."""

    request: ChatRequest
    data_classes: set[str]
    restrict_on_prem: bool
    decisions: list[dict[str, Any]]
    canary: str | None
    documents: list[str]
    route: str
    state: RequestState = field(default_factory=RequestState)


@dataclass(slots=True)
class _Text:
    """One scannable text of the request: a message, a text part of one, or a document."""

    text: str
    source: str
    index: int
    role: str | None = None
    part: int | None = None
    changed: bool = False


class GuardPipeline:
    """Input and output guards per route, built once from the config and shared by requests."""

    def __init__(
        self,
        config: GuardsConfig,
        *,
        registry: GuardRegistry | None = None,
        env: GuardEnvironment | None = None,
        metrics: GuardMetrics | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._registry = registry or GuardRegistry()
        self._env = env or GuardEnvironment()
        self._own_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=config.executor_workers, thread_name_prefix="wardgate-guard"
        )
        self._input: dict[str, list[Guard]] = {"": self._build(config.input, "input")}
        self._output: dict[str, list[Guard]] = {"": self._build(config.output, "output")}
        for route, override in config.routes.items():
            tuned = set(override.options)
            # A route's option overrides rebuild only the stage whose guards they touch.
            if override.input is not None or tuned & {s.label for s in config.input_for(route)}:
                self._input[route] = self._build(config.input_for(route), "input")
            if override.output is not None or tuned & {s.label for s in config.output_for(route)}:
                self._output[route] = self._build(config.output_for(route), "output")

    @classmethod
    def from_config(
        cls,
        config: GuardsConfig,
        *,
        complete: CompleteFn | None = None,
        registry: CollectorRegistry | None = None,
        guard_registry: GuardRegistry | None = None,
    ) -> GuardPipeline:
        """Build every configured guard now, so a bad config fails at start-up.

        ``registry`` is the Prometheus registry the guard counters go to (a fresh private one
        when None); ``guard_registry`` resolves guard types (built-ins + entry points).
        """
        return cls(
            config,
            registry=guard_registry,
            env=GuardEnvironment(complete=complete),
            metrics=GuardMetrics(registry),
        )

    def _build(self, specs: Sequence[GuardSpec], stage: str) -> list[Guard]:
        guards = []
        for spec in specs:
            if not spec.enabled:
                continue
            cls = self._registry.resolve(spec.type)
            if stage not in cls.stages:
                raise ConfigError(f"guard {spec.label!r} ({spec.type}) cannot run on {stage}")
            guards.append(cls(spec, self._env))
        return guards

    def input_guards(self, route: str | None = None) -> list[Guard]:
        return self._input.get(route or "", self._input[""])

    def output_guards(self, route: str | None = None) -> list[Guard]:
        return self._output.get(route or "", self._output[""])

    def close(self) -> None:
        """Stop the guard executor (only if the pipeline created it)."""
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- input -----------------------------------------------------------------------------

    async def check_request(
        self,
        request: ChatRequest,
        *,
        documents: Sequence[str] = (),
        route: str | None = None,
    ) -> InputResult:
        """Scan every message and document; raise GuardBlocked or return what to send on.

        ``route`` selects per-route guard lists (default: the requested model name).
        """
        route = request.model if route is None else route
        if not self.input_guards(route) and not self.output_guards(route):
            # Nothing will read the texts or the state: pass the request on as it came.
            return InputResult(
                request=request,
                data_classes=set(),
                restrict_on_prem=False,
                decisions=[],
                canary=None,
                documents=list(documents),
                route=route,
            )
        state = RequestState(system_prompt=_system_text(request.messages))
        texts = _texts_of(request, documents)
        logs: list[DecisionLog] = []
        restrict = False
        for guard in self.input_guards(route):
            log = DecisionLog.for_guard(guard, "input")
            logs.append(log)
            selected = [t for t in texts if _applies(guard, t)]
            if len(selected) == 1:  # the common case: no task to create and gather
                one = selected[0]
                outcomes = [await run_guard(guard, one.text, _context(one, state), self._executor)]
            else:
                outcomes = await asyncio.gather(
                    *(run_guard(guard, t.text, _context(t, state), self._executor)
                      for t in selected)
                )  # fmt: skip
            failed = Action.BLOCK if guard.spec.on_error == "block" else Action.ALLOW
            for item, outcome in zip(selected, outcomes, strict=True):
                log.add(outcome, failed_action=failed)
                verdict = outcome.verdict
                if verdict is None:
                    if failed is Action.BLOCK:
                        raise unavailable(guard, self._finish(logs))
                    continue
                if verdict.action is Action.BLOCK:
                    raise blocked(guard, verdict.code or guard.block_code, self._finish(logs))
                if verdict.action is Action.REDACT and verdict.redacted is not None:
                    item.text, item.changed = verdict.redacted, True
                restrict = restrict or verdict.action is Action.RESTRICT_ON_PREM
        out = _rebuilt(request, texts)
        for guard in [*self.input_guards(route), *self.output_guards(route)]:
            out = guard.prepare(out, state)
        decisions = self._finish(logs)
        return InputResult(
            request=out,
            data_classes=set().union(*(log.data_classes for log in logs)),
            restrict_on_prem=restrict,
            decisions=decisions,
            canary=state.canary,
            documents=[t.text for t in texts if t.source == "document"],
            route=route,
            state=state,
        )

    def _finish(self, logs: list[DecisionLog]) -> list[dict[str, Any]]:
        for log in logs:
            log.record(self.metrics)
        return [log.as_dict() for log in logs if log.texts]

    # -- output ----------------------------------------------------------------------------

    def output_scanner(self, result: InputResult) -> OutputScanner:
        """A streaming scanner for this request's answer (see :class:`OutputScanner`)."""
        return OutputScanner(
            self.output_guards(result.route),
            result.state,
            self.config.streaming,
            metrics=self.metrics,
            executor=self._executor,
        )

    async def check_response(
        self, text: str, result: InputResult
    ) -> tuple[str, list[dict[str, Any]]]:
        """Scan a whole answer; returns the (possibly redacted) text and the decisions."""
        if not self.output_guards(result.route):
            return text, []
        scanner = self.output_scanner(result)
        released = await scanner.scan_whole(text)
        return released, scanner.decisions

    def pseudonymiser(self, route: str | None = None) -> Pseudonymiser:
        """A fresh per-request pseudonymiser (placeholders are per request).

        It uses the same detectors as the route's ``pii`` and ``secrets`` input guards (so
        what was flagged is what gets replaced), and the defaults for whichever is missing.
        Use it when ``config.pseudonymise`` is on (or the routing decision asks for it) and
        the chosen model is a ``vendor`` one: ``p.apply(result.request)`` before sending,
        ``p.restore(text)`` or ``p.restore_stream().feed(chunk)`` on the answer *after* the
        output guards (they should judge what the model wrote, placeholders included).
        """
        from wardgate.guards.pii import PiiDetector, PiiGuard, PiiOptions
        from wardgate.guards.pseudonymise import Pseudonymiser
        from wardgate.guards.secrets import SecretDetector, SecretsGuard

        guards = self.input_guards(route)
        pii = next((g.detector for g in guards if isinstance(g, PiiGuard)), None)
        secrets = next((g.detector for g in guards if isinstance(g, SecretsGuard)), None)
        return Pseudonymiser([pii or PiiDetector(PiiOptions()), secrets or SecretDetector()])


def _system_text(messages: Sequence[ChatMessage]) -> str:
    return "\n".join(m.text for m in messages if m.role in SYSTEM_ROLES)


def _texts_of(request: ChatRequest, documents: Sequence[str]) -> list[_Text]:
    texts: list[_Text] = []
    for i, message in enumerate(request.messages):
        if isinstance(message.content, str):
            texts.append(_Text(message.content, "message", i, message.role))
        elif message.content:
            for j, part in enumerate(message.content):
                if part.type == "text" and part.text:
                    texts.append(_Text(part.text, "message", i, message.role, part=j))
        for j, call in enumerate(message.tool_calls or []):
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str) and arguments:
                texts.append(_Text(arguments, "tool_call", i, message.role, part=j))
    for k, document in enumerate(documents):
        texts.append(_Text(document, "document", k))
    return texts


def _applies(guard: Guard, text: _Text) -> bool:
    if text.source == "document":
        return guard.spec.documents
    roles = guard.spec.roles
    return roles is None or text.role in roles


def _context(text: _Text, state: RequestState) -> ScanContext:
    source: Source = "document" if text.source == "document" else "message"
    return ScanContext(stage="input", source=source, role=text.role, index=text.index, state=state)


def _rebuilt(request: ChatRequest, texts: list[_Text]) -> ChatRequest:
    """The request with redacted texts put back in place (untouched messages are reused)."""
    changed = [t for t in texts if t.changed and t.source != "document"]
    if not changed:
        return request
    messages = list(request.messages)
    for item in changed:
        message = messages[item.index]
        if item.source == "tool_call":
            assert item.part is not None and message.tool_calls is not None
            calls = [dict(c) for c in message.tool_calls]
            function = dict(calls[item.part].get("function") or {})
            function["arguments"] = item.text
            calls[item.part]["function"] = function
            messages[item.index] = message.model_copy(update={"tool_calls": calls})
        elif item.part is None:
            messages[item.index] = message.model_copy(update={"content": item.text})
        else:
            assert isinstance(message.content, list)
            parts = list(message.content)
            parts[item.part] = parts[item.part].model_copy(update={"text": item.text})
            messages[item.index] = message.model_copy(update={"content": parts})
    return request.model_copy(update={"messages": messages})
