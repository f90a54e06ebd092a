"""LLM-as-guard: any configured model judges the text with a Llama-Guard-3-style prompt.

The guard receives ``complete(model_name, request)`` from the gateway, so the judge is just
another configured model: Llama Guard 3 as a GGUF on llama.cpp, a vendor model, or the embedded
SmolLM2 for tests. The prompt lists the MLCommons hazard categories S1-S14 and asks for
``safe`` or ``unsafe`` followed by the violated categories on a second line, which is what
Llama Guard 3 was trained to answer.

``prompt: full`` (default) sends the whole task as one user message and works with any
instruction-tuned model. ``prompt: conversation`` sends the conversation as plain messages, for
a Llama Guard GGUF whose own chat template writes the task around them.

The parser is strict: an answer that does not start with ``safe`` or ``unsafe`` raises
:class:`JudgeOutputError`, which the pipeline treats as a failed guard and so (by default)
blocks. A judge that rambles must not be read as approval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field

from wardgate.chat import ChatMessage, ChatRequest
from wardgate.errors import ConfigError, WardgateError
from wardgate.guards.base import (
    Finding,
    Guard,
    GuardEnvironment,
    GuardOptions,
    RequestState,
    ScanContext,
    Verdict,
)
from wardgate.guards.config import GuardSpec

#: MLCommons AI Safety hazard taxonomy as used by Llama Guard 3.
CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes.",
    "S2": "Non-Violent Crimes.",
    "S3": "Sex Crimes.",
    "S4": "Child Exploitation.",
    "S5": "Defamation.",
    "S6": "Specialized Advice.",
    "S7": "Privacy.",
    "S8": "Intellectual Property.",
    "S9": "Indiscriminate Weapons.",
    "S10": "Hate.",
    "S11": "Self-Harm.",
    "S12": "Sexual Content.",
    "S13": "Elections.",
    "S14": "Code Interpreter Abuse.",
}

_TEMPLATE = """Task: Check if there is unsafe content in '{role}' messages in conversations \
according our safety policy with the below categories.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

{conversation}

<END CONVERSATION>

Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:
 - First line must read 'safe' or 'unsafe'.
 - If unsafe, a second line must include a comma-separated list of violated categories."""

_CATEGORY = re.compile(r"\bS(\d{1,2})\b")


class JudgeOutputError(WardgateError):
    """The judge's answer is not in the expected format (fails closed)."""

    code = "guard_judge_unparseable"


@dataclass(frozen=True, slots=True)
class Judgement:
    safe: bool
    categories: tuple[str, ...] = ()


def parse_judgement(answer: str) -> Judgement:
    """Parse ``safe`` / ``unsafe\\nS1,S2``; anything else raises :class:`JudgeOutputError`."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        raise JudgeOutputError("the judge returned an empty answer")
    head = lines[0].lower().strip(" .*`'\"")
    if head == "safe":
        return Judgement(safe=True)
    if head != "unsafe" and not head.startswith("unsafe"):
        raise JudgeOutputError("the judge's answer does not start with 'safe' or 'unsafe'")
    rest = " ".join([lines[0][len("unsafe") :], *lines[1:2]])
    found = tuple(f"S{int(n)}" for n in _CATEGORY.findall(rest) if f"S{int(n)}" in CATEGORIES)
    return Judgement(safe=False, categories=found)


def judge_prompt(role: Literal["User", "Agent"], conversation: list[tuple[str, str]],
                 categories: list[str]) -> str:  # fmt: skip
    listed = "\n".join(f"{code}: {CATEGORIES[code]}" for code in categories)
    turns = "\n\n".join(f"{speaker}: {text}" for speaker, text in conversation)
    return _TEMPLATE.format(role=role, categories=listed, conversation=turns)


class JudgeOptions(GuardOptions):
    #: Name of a configured model to act as the judge.
    model: str
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES))
    prompt: Literal["full", "conversation"] = "full"
    #: Input messages of these roles are judged (documents always are).
    roles: list[str] = Field(default_factory=lambda: ["user", "tool"])
    max_tokens: int = Field(default=16, ge=1, le=256)
    #: Judge ``unsafe`` with no category as a block (Llama Guard always names one).
    block_without_category: bool = True


class LLMJudgeGuard(Guard):
    type_name = "llm_judge"
    block_code = "unsafe_content"
    Options: ClassVar[type[JudgeOptions]] = JudgeOptions

    def __init__(self, spec: GuardSpec, env: GuardEnvironment | None = None) -> None:
        super().__init__(spec, env)
        unknown = sorted(set(self.options.categories) - set(CATEGORIES))
        if unknown:
            raise ConfigError(f"guard {self.name!r}: unknown categories {unknown}")
        if self.env.complete is None:
            raise ConfigError(f"guard {self.name!r}: the LLM judge needs a model runner")

    @property
    def referenced_models(self) -> list[str]:
        """Configured models this guard calls; ``wardgate config check`` checks they exist."""
        return [self.options.model]

    def prepare(self, request: ChatRequest, state: RequestState) -> ChatRequest:
        """Remember the last user message: the output judge needs it as context."""
        last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        state.extra[f"{self.name}:last_user"] = last_user
        return request

    async def check(self, text: str, ctx: ScanContext) -> Verdict:
        options: JudgeOptions = self.options
        if ctx.stage == "input" and ctx.source == "message" and ctx.role not in options.roles:
            return Verdict.allow()
        if ctx.stage == "input":
            role: Literal["User", "Agent"] = "User"
            turns = [("User", text)]
            messages = [ChatMessage(role="user", content=text)]
        else:
            role = "Agent"
            user = str(ctx.state.extra.get(f"{self.name}:last_user", ""))
            turns = [("User", user), ("Agent", text)]
            messages = [
                ChatMessage(role="user", content=user or "(no user message)"),
                ChatMessage(role="assistant", content=text),
            ]
        if options.prompt == "full":
            prompt = judge_prompt(role, turns, options.categories)
            messages = [ChatMessage(role="user", content=prompt)]
        request = ChatRequest(
            model=options.model, messages=messages, max_tokens=options.max_tokens, temperature=0.0
        )
        assert self.env.complete is not None
        completion = await self.env.complete(options.model, request)
        judgement = parse_judgement(completion.text)
        if judgement.safe:
            return Verdict.allow(scores={"unsafe": 0.0})
        relevant = [c for c in judgement.categories if c in options.categories]
        findings = tuple(Finding(code) for code in relevant)
        if relevant or (not judgement.categories and options.block_without_category):
            return Verdict.block(self.block_code, findings or (Finding("unsafe"),), {"unsafe": 1.0})
        return Verdict.allow(scores={"unsafe": 0.0})
