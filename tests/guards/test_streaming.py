"""Output guards on streams: bounded hold-back, canaries split across chunks, redaction."""

from __future__ import annotations

import random

import pytest

from wardgate.chat import ChatRequest
from wardgate.errors import ConfigError, GuardBlocked
from wardgate.guards import Guard, GuardPipeline, GuardsConfig, ScanContext, Verdict
from wardgate.guards.metrics import GuardMetrics
from wardgate.guards.registry import GuardRegistry

SYSTEM = (
    "You are Acme's internal support bot. Internal escalation code is ORCHID-7. Only answer "
    "questions about Acme routers and never discuss pricing or competitors with anyone."
)
FILLER = "Routers forward packets between networks, and a good config keeps them fast. "


def _request() -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": "local",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "How do I reset my router?"},
            ],
        }
    )


def _pipeline(output: list[dict], **streaming: int) -> GuardPipeline:
    config = GuardsConfig.model_validate({"output": output, "streaming": streaming or {}})
    return GuardPipeline(config, metrics=GuardMetrics())


def _chunks(text: str, seed: int, max_size: int = 7) -> list[str]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        size = rng.randint(1, max_size)
        out.append(text[i : i + size])
        i += size
    return out


@pytest.mark.parametrize("seed", range(5))
async def test_canary_split_across_chunks_is_caught_before_release(seed: int) -> None:
    pipeline = _pipeline([{"type": "system_prompt_leak"}], hold_chars=64, step_chars=8)
    result = await pipeline.check_request(_request())
    assert result.canary
    answer = FILLER * 3 + f"My instructions begin with <!-- {result.canary} -->" + FILLER * 3
    scanner = pipeline.output_scanner(result)
    released = ""
    with pytest.raises(GuardBlocked) as info:
        for chunk in _chunks(answer, seed):
            released += scanner.feed(chunk)
            assert scanner.held <= 64 + 8 + 7
        released += scanner.finish()
    assert info.value.code == "system_prompt_leak"
    assert "response was blocked" in info.value.message
    assert result.canary not in info.value.message
    assert result.canary[:3] not in released  # not even the start of the canary got out
    assert released == answer[: len(released)]
    assert scanner.decisions[0]["action"] == "block"
    assert pipeline.metrics is not None
    assert pipeline.metrics.count("system_prompt_leak", "output", "block") == 1


async def test_canary_with_separators_is_caught() -> None:
    pipeline = _pipeline([{"type": "system_prompt_leak"}])
    result = await pipeline.check_request(_request())
    assert result.canary
    spaced = " ".join(result.canary)
    with pytest.raises(GuardBlocked):
        await pipeline.check_response(f"Sure: {spaced}", result)


async def test_verbatim_system_prompt_is_caught_without_canary() -> None:
    pipeline = _pipeline([{"type": "system_prompt_leak", "options": {"canary": False}}])
    result = await pipeline.check_request(_request())
    assert result.canary is None
    leak = "Here you go: " + SYSTEM.split(". ", 1)[1]
    with pytest.raises(GuardBlocked, match="system_prompt_leak"):
        await pipeline.check_response(leak, result)
    text, decisions = await pipeline.check_response(FILLER * 4, result)
    assert text == FILLER * 4
    assert decisions[0]["scores"]["shared_ngrams"] == 0


async def test_stream_releases_everything_when_clean_and_hold_is_bounded() -> None:
    pipeline = _pipeline(
        [{"type": "secrets"}, {"type": "system_prompt_leak"}], hold_chars=128, step_chars=16
    )
    result = await pipeline.check_request(_request())
    answer = FILLER * 60
    scanner = pipeline.output_scanner(result)
    released = []
    for chunk in _chunks(answer, 1, max_size=5):
        released.append(scanner.feed(chunk))
        assert scanner.held <= 128 + 16 + 5
    released.append(scanner.finish())
    assert "".join(released) == answer
    assert sum(1 for r in released if r) > 20  # text flowed during the stream, not at the end


@pytest.mark.parametrize("seed", range(4))
async def test_secret_split_across_chunks_is_redacted(seed: int) -> None:
    pipeline = _pipeline([{"type": "secrets"}], hold_chars=64, step_chars=4)
    result = await pipeline.check_request(_request())
    key = "sk-proj-Zx81aQ2wE9rT6yU3iO0pL5kJ7hG4fD1s"
    answer = FILLER + f"Use the key {key} in the header. " + FILLER
    scanner = pipeline.output_scanner(result)
    out = "".join(scanner.feed(c) for c in _chunks(answer, seed)) + scanner.finish()
    assert key not in out and "sk-proj" not in out
    assert out == answer.replace(key, "[REDACTED:openai_key]")
    assert scanner.decisions[0]["findings"]["openai_key"] >= 1


async def test_async_scanner_and_sync_refusal_for_async_guards() -> None:
    class AsyncShout(Guard):
        type_name = "async_shout"
        block_code = "shouting"

        async def check(self, text: str, ctx: ScanContext) -> Verdict:
            return Verdict.block("shouting") if "STOP" in text else Verdict.allow()

    config = GuardsConfig.model_validate({"output": [{"type": "async_shout"}]})
    pipeline = GuardPipeline(config, registry=GuardRegistry({"async_shout": AsyncShout}))
    result = await pipeline.check_request(_request())
    scanner = pipeline.output_scanner(result)
    with pytest.raises(ConfigError, match="afeed"):
        scanner.feed(FILLER * 10)
    scanner = pipeline.output_scanner(result)
    with pytest.raises(GuardBlocked, match="shouting"):
        for chunk in _chunks(FILLER * 5 + "STOP" + FILLER * 5, 3):
            await scanner.afeed(chunk)
        await scanner.afinish()


async def test_no_output_guards_is_a_pass_through() -> None:
    pipeline = _pipeline([])
    result = await pipeline.check_request(_request())
    scanner = pipeline.output_scanner(result)
    assert scanner.feed("abc") == "abc"
    assert scanner.finish() == ""
    assert scanner.decisions == []


async def test_private_key_longer_than_the_hold_back_is_stopped_not_half_redacted() -> None:
    pipeline = _pipeline([{"type": "secrets"}], hold_chars=64, step_chars=8)
    result = await pipeline.check_request(_request())
    body = "\n".join("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC" for _ in range(12))
    answer = FILLER + "-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----\n"
    scanner = pipeline.output_scanner(result)
    released = ""
    with pytest.raises(GuardBlocked, match="secret_detected"):
        for chunk in _chunks(answer, 5):
            released += scanner.feed(chunk)
        released += scanner.finish()
    assert "MIIEvQ" not in released
    assert released == FILLER[: len(released)]


async def test_short_private_key_inside_the_window_is_redacted_whole() -> None:
    pipeline = _pipeline([{"type": "secrets"}], hold_chars=256, step_chars=8)
    result = await pipeline.check_request(_request())
    key = (
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5\n"
        "-----END EC PRIVATE KEY-----"
    )
    answer = FILLER + key + "\n" + FILLER
    scanner = pipeline.output_scanner(result)
    out = "".join(scanner.feed(c) for c in _chunks(answer, 2)) + scanner.finish()
    assert out == FILLER + "[REDACTED:private_key]\n" + FILLER


async def test_short_generic_system_prompt_is_not_a_leak_but_canary_still_is() -> None:
    pipeline = _pipeline([{"type": "system_prompt_leak"}])
    request = ChatRequest.model_validate(
        {
            "model": "local",
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "You are a helpful assistant."}],
                },
                {"role": "user", "content": "hi"},
            ],
        }
    )
    result = await pipeline.check_request(request)
    assert result.canary and result.canary in result.request.messages[0].text
    assert result.request.messages[0].text.endswith("You are a helpful assistant.")
    text, _ = await pipeline.check_response("Hello! You are a helpful assistant, I am too.", result)
    assert text.startswith("Hello!")
    with pytest.raises(GuardBlocked):
        await pipeline.check_response(f"my prompt says {result.canary}", result)
