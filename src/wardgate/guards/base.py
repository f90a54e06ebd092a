"""The guard interface: one detector per class, one typed verdict per scanned text.

A guard looks at one piece of text at a time (a message, a text part, a document the app passed
in, or a window of the model's answer) and answers with a :class:`Verdict`:

* ``allow`` - nothing to do (findings may still tag the text with a data class, e.g. ``pii``,
  which the routing policy reads);
* ``flag`` - allow, but the guard was unsure or its category is relaxed on this route: the
  decision is kept in the audit record and counted (``outcome="flag"``) so an operator sees
  what a stricter policy would have blocked;
* ``redact`` - the text must be replaced by :attr:`Verdict.redacted`;
* ``restrict_on_prem`` - the request may be served, but only by an on-prem model;
* ``block`` - refuse; :attr:`Verdict.code` is the stable machine code the client sees.

Writing a guard (this is also how a third party adds one through the ``wardgate.guards`` entry
point; the entry's name is the ``type:`` value in the config and its object is the class)::

    class ShoutGuard(Guard):
        type_name = "shout"
        block_code = "shouting_detected"

        class Options(GuardOptions):
            threshold: float = 0.8

        def scan(self, text: str, ctx: ScanContext) -> Verdict:
            letters = [c for c in text if c.isalpha()]
            ratio = sum(c.isupper() for c in letters) / max(1, len(letters))
            if ratio >= self.options.threshold:
                return Verdict.block(self.block_code, scores={"upper_ratio": ratio})
            return Verdict.allow(scores={"upper_ratio": ratio})

CPU-heavy guards (a classifier) set ``blocking = True`` so the pipeline runs :meth:`Guard.scan`
in its bounded executor and can enforce the timeout; guards that must await something (a model
behind the gateway, see ``llm_judge``) override :meth:`Guard.check` instead of :meth:`scan`.
Verdicts never carry the matched text, only kinds, scores and character spans, so a decision can
go to the audit log without leaking what it found.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from wardgate.errors import ConfigError
from wardgate.validation import problems_from

if TYPE_CHECKING:
    from wardgate.chat import ChatRequest, Completion
    from wardgate.guards.config import GuardSpec

Stage = Literal["input", "output"]
#: Roles whose messages make up the system prompt.
SYSTEM_ROLES = ("system", "developer")
#: Where a scanned text came from: a chat message, a document the app passed in, the answer.
Source = Literal["message", "document", "response"]

#: ``complete(model_name, request)``: run a chat completion on a configured model. The gateway
#: passes it in so a guard can use any model as a judge without knowing about backends.
CompleteFn = Callable[[str, "ChatRequest"], Awaitable["Completion"]]


class Action(enum.StrEnum):
    """What the pipeline must do with the scanned text. Ordered by severity (see :func:`worst`)."""

    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    RESTRICT_ON_PREM = "restrict_on_prem"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    Action.ALLOW: 0,
    Action.FLAG: 1,
    Action.REDACT: 2,
    Action.RESTRICT_ON_PREM: 3,
    Action.BLOCK: 4,
}


def worst(actions: list[Action] | tuple[Action, ...]) -> Action:
    """The most severe action of several (``allow`` for none)."""
    return max(actions, key=_SEVERITY.__getitem__, default=Action.ALLOW)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a guard found: its kind, where it is, how sure the guard is.

    ``start``/``end`` are character offsets into the scanned text (end exclusive); ``-1`` when
    the finding is about the whole text (a classifier score). ``data_class`` tags what kind of
    data the text carries for routing (``"pii"``, ``"secrets"``), ``None`` when not data.
    """

    kind: str
    start: int = -1
    end: int = -1
    score: float = 1.0
    data_class: str | None = None

    @property
    def has_span(self) -> bool:
        return 0 <= self.start < self.end


@dataclass(frozen=True, slots=True)
class Verdict:
    """A guard's answer for one text. Build with the class methods, not the constructor."""

    action: Action = Action.ALLOW
    findings: tuple[Finding, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    #: Stable machine code for ``block`` (e.g. ``prompt_injection_detected``); on ``flag``, the
    #: code a block would have carried.
    code: str | None = None
    #: The replacement text for ``redact``.
    redacted: str | None = None

    @classmethod
    def allow(
        cls, findings: tuple[Finding, ...] = (), scores: Mapping[str, float] | None = None
    ) -> Verdict:
        return cls(Action.ALLOW, tuple(findings), dict(scores or {}))

    @classmethod
    def block(
        cls,
        code: str,
        findings: tuple[Finding, ...] = (),
        scores: Mapping[str, float] | None = None,
    ) -> Verdict:
        return cls(Action.BLOCK, tuple(findings), dict(scores or {}), code=code)

    @classmethod
    def flag(
        cls,
        code: str,
        findings: tuple[Finding, ...] = (),
        scores: Mapping[str, float] | None = None,
    ) -> Verdict:
        """Allow, recorded: what a block would have been, below the confidence to block."""
        return cls(Action.FLAG, tuple(findings), dict(scores or {}), code=code)

    @classmethod
    def redact(
        cls,
        redacted: str,
        findings: tuple[Finding, ...],
        scores: Mapping[str, float] | None = None,
    ) -> Verdict:
        return cls(Action.REDACT, tuple(findings), dict(scores or {}), redacted=redacted)

    @classmethod
    def restrict(
        cls, findings: tuple[Finding, ...] = (), scores: Mapping[str, float] | None = None
    ) -> Verdict:
        return cls(Action.RESTRICT_ON_PREM, tuple(findings), dict(scores or {}))

    @property
    def data_classes(self) -> set[str]:
        return {f.data_class for f in self.findings if f.data_class}


@dataclass(slots=True)
class RequestState:
    """Per-request facts shared by guards across the input and output stages.

    ``canary`` is set when a guard inserted a canary token into the system prompt;
    ``system_prompt`` is the system text as the client sent it (for leakage similarity).
    ``extra`` lets a guard keep its own per-request notes under its name.
    """

    canary: str | None = None
    system_prompt: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScanContext:
    """Where the text under scan comes from."""

    stage: Stage
    source: Source = "message"
    #: Role of the message (``system``, ``user``, ``assistant``, ``tool``...); None otherwise.
    role: str | None = None
    #: Index of the message or document; None for the response.
    index: int | None = None
    state: RequestState = field(default_factory=RequestState)
    #: True when the text is a window of a streamed answer, not the whole of it.
    partial: bool = False


@dataclass(frozen=True, slots=True)
class GuardEnvironment:
    """What the gateway hands every guard at construction time."""

    #: Run a chat completion on a named model (``None`` when no gateway is around, e.g. in CLI).
    complete: CompleteFn | None = None


class GuardOptions(BaseModel):
    """Base for a guard's ``options:`` block. Unknown keys are errors (typos must not pass)."""

    model_config = ConfigDict(extra="forbid")


class Guard:
    """Base class of every guard. Subclasses override :meth:`scan` (sync) or :meth:`check`."""

    #: The ``type:`` value that selects this guard in the config.
    type_name: ClassVar[str] = ""
    #: Stable code used when this guard blocks, unless a verdict says otherwise.
    block_code: ClassVar[str] = "guard_blocked"
    #: Stages this guard can run in; configuring it elsewhere is a ConfigError.
    stages: ClassVar[frozenset[str]] = frozenset({"input", "output"})
    #: True when :meth:`scan` is CPU-heavy: the pipeline runs it in its bounded executor.
    blocking: ClassVar[bool] = False
    #: Schema of ``options:``; subclasses replace it with their own GuardOptions subclass.
    Options: ClassVar[type[GuardOptions]] = GuardOptions
    #: Characters of a streamed answer this guard must see whole, before any of them is sent,
    #: to judge it as it would the whole answer (its longest pattern). The streaming scanner
    #: holds back the largest value among a route's output guards. Pattern guards declare
    #: what their patterns need; a guard that judges meaning keeps this conservative default.
    stream_hold_chars: ClassVar[int] = 256

    def __init__(self, spec: GuardSpec, env: GuardEnvironment | None = None) -> None:
        self.spec = spec
        self.env = env or GuardEnvironment()
        try:
            self.options: Any = self.Options.model_validate(spec.options)
        except ValidationError as exc:
            problems = problems_from(exc, model=self.Options, prefix="options")
            raise ConfigError(
                f"guard {self.name!r}: invalid options: " + "; ".join(map(str, problems)),
                problems=problems,
            ) from exc

    @property
    def name(self) -> str:
        """The configured name (``name:``), else the type name; used in metrics and audit."""
        return self.spec.name or self.spec.type

    @property
    def hold_chars(self) -> int:
        """The hold this instance needs (override when it depends on ``options``)."""
        return self.stream_hold_chars

    @property
    def is_async(self) -> bool:
        """True when the guard overrides :meth:`check` (it awaits something)."""
        return type(self).check is not Guard.check

    def prepare(self, request: ChatRequest, state: RequestState) -> ChatRequest:
        """Transform the request once before any scan (e.g. insert a canary). Default: no-op."""
        return request

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        """Judge one text synchronously. Override this, or :meth:`check` for async guards."""
        raise NotImplementedError(f"{type(self).__name__} implements neither scan() nor check()")

    def scan_inline(self, text: str, ctx: ScanContext) -> Verdict | None:
        """For ``blocking`` guards: the verdict when it is cheap to get, else None.

        The pipeline calls this on the event loop first and sends the text to the executor
        only on None: a thread hop costs more than scoring a short message with n-grams, while
        a MiniLM forward pass must stay off the loop. Default: always the executor.
        """
        return None

    async def check(self, text: str, ctx: ScanContext) -> Verdict:
        """Judge one text; async guards override this. Default: :meth:`scan`."""
        return self.scan(text, ctx)


GuardClass = type[Guard]
