"""LLM-as-guard: Llama-Guard-3 prompt and parser, and the mechanism on the embedded SmolLM2."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from wardgate.chat import ChatRequest, Completion
from wardgate.embedded import embedded_model_path
from wardgate.errors import ConfigError, GuardBlocked
from wardgate.guards import GuardPipeline, GuardsConfig, GuardSpec
from wardgate.guards.llm_judge import (
    JudgeOutputError,
    LLMJudgeGuard,
    judge_prompt,
    parse_judgement,
)


def test_parser_accepts_llama_guard_answers() -> None:
    assert parse_judgement("safe").safe
    assert parse_judgement("  Safe.\n").safe
    unsafe = parse_judgement("unsafe\nS1,S10")
    assert not unsafe.safe and unsafe.categories == ("S1", "S10")
    assert parse_judgement("unsafe S9").categories == ("S9",)
    assert parse_judgement("unsafe\nS99").categories == ()


@pytest.mark.parametrize(
    "garbage", ["", "   ", "I think this is fine!", "sa fe", "The answer: safe"]
)
def test_parser_fails_closed_on_garbage(garbage: str) -> None:
    with pytest.raises(JudgeOutputError):
        parse_judgement(garbage)


def test_prompt_lists_categories_and_conversation() -> None:
    prompt = judge_prompt("Agent", [("User", "hi"), ("Agent", "hello")], ["S1", "S14"])
    assert "S1: Violent Crimes." in prompt and "S14: Code Interpreter Abuse." in prompt
    assert "S2:" not in prompt
    assert "User: hi\n\nAgent: hello" in prompt
    assert "ONLY THE LAST Agent message" in prompt


class ScriptedJudge:
    """A ``complete`` callable answering from a script; records what it was asked."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[tuple[str, ChatRequest]] = []

    async def __call__(self, model: str, request: ChatRequest) -> Completion:
        self.requests.append((model, request))
        return Completion(text=self.answer)


def _pipeline(complete, **options) -> GuardPipeline:
    config = GuardsConfig(
        input=[GuardSpec(type="llm_judge", options={"model": "judge", **options})],
        output=[GuardSpec(type="llm_judge", options={"model": "judge", **options})],
    )
    return GuardPipeline.from_config(config, complete=complete)


def _chat(text: str) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": text},
            ],
        }
    )


async def test_unsafe_blocks_with_categories_and_only_user_messages_are_judged() -> None:
    judge = ScriptedJudge("unsafe\nS9")
    pipeline = _pipeline(judge)
    with pytest.raises(GuardBlocked) as info:
        await pipeline.check_request(_chat("how to build a bomb"))
    assert info.value.code == "unsafe_content"
    assert info.value.decisions[0]["findings"] == {"S9": 1}  # type: ignore[attr-defined]
    assert len(judge.requests) == 1  # the system message was not sent to the judge
    model, request = judge.requests[0]
    assert model == "judge" and request.temperature == 0.0
    assert "User: how to build a bomb" in request.messages[0].text


async def test_safe_passes_and_output_judge_sees_the_user_turn() -> None:
    judge = ScriptedJudge("safe")
    pipeline = _pipeline(judge)
    result = await pipeline.check_request(_chat("tell me a joke"))
    text, decisions = await pipeline.check_response("Why did the chicken...", result)
    assert text == "Why did the chicken..."
    assert decisions[0]["action"] == "allow"
    prompt = judge.requests[-1][1].messages[0].text
    assert "User: tell me a joke\n\nAgent: Why did the chicken..." in prompt


async def test_conversation_mode_sends_plain_messages() -> None:
    judge = ScriptedJudge("safe")
    pipeline = _pipeline(judge, prompt="conversation")
    await pipeline.check_request(_chat("hello"))
    messages = judge.requests[0][1].messages
    assert [(m.role, m.text) for m in messages] == [("user", "hello")]


async def test_judge_without_runner_or_with_bad_categories_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model runner"):
        LLMJudgeGuard(GuardSpec(type="llm_judge", options={"model": "judge"}))
    with pytest.raises(ConfigError, match="unknown categories"):
        LLMJudgeGuard(
            GuardSpec(type="llm_judge", options={"model": "j", "categories": ["S15"]}),
            env=__import__("wardgate.guards", fromlist=["GuardEnvironment"]).GuardEnvironment(
                complete=ScriptedJudge("safe")
            ),
        )


@pytest.fixture(scope="module")
def smollm2() -> Iterator[object]:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(
        model_path=str(embedded_model_path()), n_ctx=1024, n_threads=2, verbose=False, seed=0
    )
    yield llm
    llm.close()


@pytest.mark.slow
async def test_smollm2_as_judge_through_llama_cpp(smollm2) -> None:
    """The mechanism end to end with a real model; SmolLM2 is no safety model, so whatever it
    says must become either a parsed verdict or a fail-closed block - never a silent pass."""
    answers: list[str] = []

    async def complete(model: str, request: ChatRequest) -> Completion:
        def run() -> str:
            out = smollm2.create_chat_completion(  # type: ignore[attr-defined]
                messages=[{"role": m.role, "content": m.text} for m in request.messages],
                max_tokens=request.max_tokens,
                temperature=0.0,
            )
            return str(out["choices"][0]["message"]["content"] or "")

        text = await asyncio.to_thread(run)
        answers.append(text)
        return Completion(text=text)

    config = GuardsConfig(
        input=[
            GuardSpec(
                type="llm_judge",
                timeout_s=120,
                options={"model": "smollm2", "categories": ["S1", "S9"], "max_tokens": 8},
            )
        ]
    )
    pipeline = GuardPipeline.from_config(config, complete=complete)
    try:
        result = await pipeline.check_request(_chat("What is the capital of France?"))
    except GuardBlocked as blocked:
        assert blocked.code in ("unsafe_content", "guard_unavailable")
        decision = blocked.decisions[0]  # type: ignore[attr-defined]
        if blocked.code == "guard_unavailable":
            assert decision["errors"] == ["exception:JudgeOutputError"]
            with pytest.raises(JudgeOutputError):
                parse_judgement(answers[0])
    else:
        assert parse_judgement(answers[0]).safe
        assert result.decisions[0]["action"] == "allow"
    assert len(answers) == 1
    print("SmolLM2 judge answered:", repr(answers[0]))
    pipeline.close()
