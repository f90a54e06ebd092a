"""Each output guard declares the hold-back it needs; the scanner holds the largest.

The corpus and the split-everywhere harness are bench/stream_hold.py's (where the declared
numbers were measured): every value is embedded in an answer, split at every character
boundary around it and also fed in token-sized chunks, and the stream must give exactly what
the same guard gives the whole answer (the same redaction; a block with nothing of the value
released), or, for values with no length bound, release nothing of them.
"""

from __future__ import annotations

import pytest
from bench.stream_hold import Case, Harness, all_cases, check

from wardgate.chat import ChatRequest
from wardgate.guards import Guard, GuardPipeline, GuardsConfig, ScanContext, Verdict
from wardgate.guards.metrics import GuardMetrics
from wardgate.guards.registry import GuardRegistry

CASES = all_cases()


@pytest.fixture(scope="module")
def harnesses() -> dict[str, Harness]:
    return {guard: Harness(guard) for guard in {c.guard for c in CASES}}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.guard}-{c.kind}-{len(c.value)}" for c in CASES])
def test_value_split_anywhere_is_caught_with_the_declared_hold(
    case: Case, harnesses: dict[str, Harness]
) -> None:
    verdict = check(harnesses[case.guard], case, None)  # None: the guard's declared hold
    assert verdict.ok, f"{case.kind}: {verdict.detail}"


def test_a_shorter_hold_than_declared_stops_long_secrets_but_never_leaks_them(
    harnesses: dict[str, Harness],
) -> None:
    """One grid step below the secrets hold, PyPI tokens (179 characters) can no longer be
    redacted whole from a stream: it is stopped instead, and nothing of the token leaks."""
    pypi = next(c for c in CASES if c.kind == "pypi_token")
    shorter = check(harnesses["secrets"], pypi, 176)
    assert not shorter.ok and shorter.detail == "differs from the whole-answer redaction"
    unbounded = Case(pypi.guard, pypi.kind, pypi.value, bounded=False)
    assert check(harnesses["secrets"], unbounded, 176).ok


def _pipeline(output: list[dict], registry: GuardRegistry | None = None, **streaming: int):
    config = GuardsConfig.model_validate({"output": output, "streaming": streaming})
    return GuardPipeline(config, metrics=GuardMetrics(), registry=registry)


async def _scanner(pipeline: GuardPipeline):
    request = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    )
    return pipeline.output_scanner(await pipeline.check_request(request))


@pytest.mark.parametrize(
    ("output", "hold"),
    [
        ([{"type": "pii"}], 96),
        ([{"type": "invisible_unicode"}, {"type": "pii"}], 96),
        ([{"type": "pii"}, {"type": "secrets"}, {"type": "system_prompt_leak"}], 192),
        ([{"type": "system_prompt_leak", "options": {"min_shared": 20}}], 8 * 24),
        ([], 0),
    ],
)
async def test_the_scanner_holds_the_largest_declared_hold(output: list[dict], hold: int) -> None:
    assert (await _scanner(_pipeline(output))).hold == hold


async def test_the_config_overrides_the_declared_hold() -> None:
    scanner = await _scanner(_pipeline([{"type": "secrets"}], hold_chars=48))
    assert scanner.hold == 48


class _SlowJudge(Guard):
    """A guard judging meaning over long spans, as a moderation model would."""

    type_name = "slow_judge"
    stream_hold_chars = 400

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        return Verdict.allow()


async def test_a_plugged_in_guard_raises_the_hold_to_what_it_declares() -> None:
    registry = GuardRegistry({"slow_judge": _SlowJudge})
    scanner = await _scanner(_pipeline([{"type": "pii"}, {"type": "slow_judge"}], registry))
    assert scanner.hold == 400
    text = "word " * 100  # 500 characters: at most hold + step + one chunk stay behind
    released = "".join(scanner.feed(text[i : i + 10]) for i in range(0, len(text), 10))
    assert len(text) - len(released) <= 400 + 32 + 10
    assert released + scanner.finish() == text


async def test_without_output_guards_nothing_is_held_or_kept() -> None:
    scanner = await _scanner(_pipeline([]))
    assert scanner.feed("a" * 1000) == "a" * 1000
    assert scanner._tail == ""  # no context kept without a hold
