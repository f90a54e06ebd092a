"""The smallest streaming hold-back each shipped output guard needs, measured.

A streamed answer passes the output guards in windows (``wardgate.guards.streaming``): the
scanner holds back ``hold`` characters so a pattern split across chunks is seen whole before any
of it is sent. Each guard declares the hold it needs (``Guard.hold_chars``); this script is where
those numbers come from. For every value in a corpus of realistic ones (the formats real
credentials, e-mail addresses, phone numbers, cards, IBANs, canaries and system-prompt leaks
have), embedded in an answer and split at *every* character boundary around it, and also fed in
token-sized chunks, it streams the answer through the guard with each candidate hold and
compares with what the same guard does to the whole answer at once. A hold passes for a value
when every split gives exactly the non-streamed result: the same redaction, or a block with
nothing released that the whole-answer scan would have withheld.

Values with no length bound (PEM private keys, long JWTs) cannot be redacted from a window
shorter than themselves: for those the requirement is only that nothing of them leaks (the
stream is stopped instead), reported separately.

    .venv/bin/python bench/stream_hold.py            # per-guard minimal holds
    .venv/bin/python bench/stream_hold.py --verbose  # and the value that needs the most
"""

from __future__ import annotations

import argparse
import base64
import random
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from wardgate.chat import ChatRequest
from wardgate.errors import GuardBlocked
from wardgate.guards import GuardPipeline, GuardsConfig
from wardgate.guards.metrics import GuardMetrics

CANDIDATE_HOLDS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256)
BEFORE = "Sure, here is what you asked for: "
AFTER = " and that is all I can tell you about it today."
SYSTEM_PROMPT = (
    "You are the support assistant of Northwind Logistics. Answer questions about shipments, "
    "customs paperwork and delivery windows in a friendly, concise tone. Never quote internal "
    "tariff tables, never reveal the names of warehouse staff, and escalate any complaint about "
    "damaged goods to a human agent by telling the customer to email the claims team."
)


@dataclass(frozen=True)
class Case:
    """One value to stream: ``guard`` is the guard type, ``bounded`` whether the value has a
    length bound (then streaming must equal whole-answer scanning; else it must not leak)."""

    guard: str
    kind: str
    value: str
    bounded: bool = True
    #: False for text the guard must leave alone (an emoji flag), also when split.
    acts: bool = True


def _random(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
UPPER_DIGITS = string.ascii_uppercase + string.digits


def secret_cases(rng: random.Random) -> list[Case]:
    """Credentials in the formats and lengths the providers issue (as of 2025)."""
    jwt_header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    claims = b'{"sub":"1234567890","name":"Jane Doe","iat":1716239022}'
    jwt_body = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    pem_body = "\n".join(_random(rng, ALNUM + "+/", 64) for _ in range(25))
    values = [
        ("openai_key", "sk-" + _random(rng, ALNUM, 48)),  # legacy user key, 51
        ("openai_key", "sk-proj-" + _random(rng, URLSAFE, 156)),  # project key, 164
        ("openai_key", "sk-svcacct-" + _random(rng, URLSAFE, 156)),  # service account, 167
        ("anthropic_key", "sk-ant-api03-" + _random(rng, URLSAFE, 93) + "AA"),  # 108
        ("aws_access_key_id", "AKIA" + _random(rng, UPPER_DIGITS, 16)),
        ("aws_secret_key", "aws_secret_access_key = " + _random(rng, ALNUM + "/+", 40)),
        ("github_token", "ghp_" + _random(rng, ALNUM, 36)),
        ("github_token", "github_pat_" + _random(rng, ALNUM + "_", 82)),
        ("gitlab_token", "glpat-" + _random(rng, URLSAFE, 20)),
        ("slack_token", "xoxb-1234567890123-1234567890123-" + _random(rng, ALNUM, 24)),
        (
            "slack_webhook",
            "https://hooks.slack.com/services/T0"
            + _random(rng, UPPER_DIGITS, 8)
            + "/B0"
            + _random(rng, UPPER_DIGITS, 8)
            + "/"
            + _random(rng, ALNUM, 24),
        ),
        ("stripe_key", "sk_live_" + _random(rng, ALNUM, 99)),  # 107
        ("google_api_key", "AIza" + _random(rng, URLSAFE, 35)),
        ("huggingface_token", "hf_" + _random(rng, ALNUM, 34)),
        ("npm_token", "npm_" + _random(rng, ALNUM, 36)),
        ("pypi_token", "pypi-AgEIcHlwaS5vcmc" + _random(rng, URLSAFE, 159)),  # 179
        ("sendgrid_key", "SG." + _random(rng, URLSAFE, 22) + "." + _random(rng, URLSAFE, 43)),
        ("jwt", f"{jwt_header}.{jwt_body}." + _random(rng, URLSAFE, 43)),  # 143
        ("password_in_url", "postgres://app:" + _random(rng, ALNUM, 16) + "@db.internal:5432/app"),
        ("keyword_secret", "password: " + _random(rng, ALNUM, 14) + "!9"),
    ]
    cases = [Case("secrets", kind, value) for kind, value in values]
    pem = f"-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----"
    cases.append(Case("secrets", "private_key", pem, bounded=False))
    return cases


def pii_cases() -> list[Case]:
    values = [
        ("email", "jane.doe@example.com"),
        ("email", "firstname.lastname@subsidiary.example-company.co.uk"),
        ("email", "customer.service.escalations.team@northwind-logistics.example.org"),
        ("phone", "call me on +44 20 7946 0958"),
        ("phone", "phone: (212) 555-0142"),
        ("phone", "+1-212-555-0142"),
        ("credit_card", "4111 1111 1111 1111"),
        ("credit_card", "5500-0000-0000-0004"),
        ("iban", "GB82 WEST 1234 5698 7654 32"),
        ("iban", "MT84 MALT 0110 0001 2345 MTLC AST0 01S"),
        ("us_ssn", "SSN 219-09-9999"),
        ("ip_address", "203.0.113.195"),
        ("ip_address", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ]
    return [Case("pii", kind, value) for kind, value in values]


def canary_spellings(canary: str) -> list[tuple[str, str]]:
    """How a model may repeat the canary: verbatim, in the marker, spaced, dashed, shouted."""
    return [
        ("canary", canary),
        ("canary_marker", f"<!-- {canary} -->"),
        ("canary_spaced", " ".join(canary)),
        ("canary_dashed", "-".join(canary)),
        ("canary_upper", canary.upper()),
    ]


#: The canary the harness puts in the request state (a real one is random per request).
CANARY = "wgc0123456789abcdef"


def leak_cases() -> list[Case]:
    cases = [Case("system_prompt_leak", kind, value) for kind, value in canary_spellings(CANARY)]
    cases.append(Case("system_prompt_leak", "prompt_overlap", SYSTEM_PROMPT))
    return cases


SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


def unicode_cases() -> list[Case]:
    return [
        Case("invisible_unicode", "flag_sequence", f"Scotland {SCOTLAND} rules", acts=False),
        Case("invisible_unicode", "zwj_emoji", f"family {FAMILY} photo", acts=False),
        Case("invisible_unicode", "zero_width", "pass\u200bword\u200c\u200dhidden"),
        Case("invisible_unicode", "tag_run", "ok " + "".join(chr(0xE0000 + ord(c)) for c in "x")),
    ]


def all_cases(seed: int = 7) -> list[Case]:
    rng = random.Random(seed)
    return [*secret_cases(rng), *pii_cases(), *leak_cases(), *unicode_cases()]


# -- streaming one answer ------------------------------------------------------------------


@dataclass
class Harness:
    """One guard type behind a pipeline; streams answers with a given hold."""

    guard: str
    step: int = 32
    _pipelines: dict[int | None, GuardPipeline] = field(default_factory=dict)
    _inputs: dict[int | None, object] = field(default_factory=dict)

    def pipeline(self, hold: int | None) -> GuardPipeline:
        if hold not in self._pipelines:
            streaming: dict[str, int] = {"step_chars": self.step}
            if hold is not None:
                streaming["hold_chars"] = hold
            config = GuardsConfig.model_validate(
                {"output": [{"type": self.guard}], "streaming": streaming}
            )
            self._pipelines[hold] = GuardPipeline(config, metrics=GuardMetrics())
        return self._pipelines[hold]

    def declared_hold(self) -> int:
        return self.pipeline(None).output_scanner(_input(self.pipeline(None))).hold

    def streamed(
        self, chunks: Iterable[str], hold: int | None, canary: str | None
    ) -> tuple[bool, str]:
        pipeline = self.pipeline(hold)
        if hold not in self._inputs:
            self._inputs[hold] = _input(pipeline)
        result = self._inputs[hold]
        result.state.canary = canary  # type: ignore[attr-defined]
        scanner = pipeline.output_scanner(result)  # type: ignore[arg-type]
        released, blocked = "", False
        try:
            for chunk in chunks:
                released += scanner.feed(chunk)
            released += scanner.finish()
        except GuardBlocked:
            blocked = True
        return blocked, released


def _input(pipeline: GuardPipeline):  # type: ignore[no-untyped-def]
    """An InputResult for a request with the bench's system prompt."""
    import asyncio

    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "hi"},
            ],
        }
    )
    return asyncio.run(pipeline.check_request(request))


def splits(answer: str, start: int, end: int) -> Iterator[list[str]]:
    """Two chunks split at every boundary in ``[start-1, end+1]``, then token-sized chunks."""
    for cut in range(max(0, start - 1), min(len(answer), end + 1) + 1):
        yield [answer[:cut], answer[cut:]]
    for size in (1, 2, 3, 4, 5, 7, 11):
        yield [answer[i : i + size] for i in range(0, len(answer), size)]


@dataclass
class Verdict:
    case: Case
    hold: int | None
    ok: bool
    detail: str = ""


#: Text before the value: a short opening, and one long enough that the scanner is in its
#: steady state (releasing behind the hold) when the value arrives.
PREAMBLES = (BEFORE, "Of course. " * 24 + BEFORE)


def check(harness: Harness, case: Case, hold: int | None) -> Verdict:
    """Does streaming with ``hold`` give the whole-answer result for every split of ``case``?

    Where the whole answer is redacted, the stream must carry exactly the same text. Where it
    is blocked, the stream must be blocked too, with nothing of the value released before.
    Unbounded values only must not leak.
    """
    for before in PREAMBLES:
        answer = before + case.value + AFTER
        start, end = len(before), len(before) + len(case.value)
        reference = harness.streamed([answer], 1 << 16, CANARY)
        if (reference == (False, answer)) == case.acts:
            what = "does not act on" if case.acts else "alters"
            raise AssertionError(f"{case.guard} {what} {case.kind} in a whole answer")
        for chunks in splits(answer, start, end):
            blocked, released = harness.streamed(chunks, hold, CANARY)
            if not case.bounded:
                if _leaks(case.value, released):
                    return Verdict(case, hold, False, "part of the value was released")
            elif reference[0]:
                if not blocked:
                    return Verdict(case, hold, False, "not blocked")
                if not answer[:start].startswith(released):
                    return Verdict(case, hold, False, "released part of the value before blocking")
            elif (blocked, released) != reference:
                return Verdict(case, hold, False, "differs from the whole-answer redaction")
    return Verdict(case, hold, True)


def _leaks(value: str, released: str, run: int = 8) -> bool:
    pieces = [value[i : i + run] for i in range(0, max(1, len(value) - run + 1))]
    return any(piece.strip() and piece in released for piece in pieces)


def minimal_hold(harness: Harness, case: Case) -> int | None:
    for hold in CANDIDATE_HOLDS:
        if check(harness, case, hold).ok:
            return hold
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--step", type=int, default=32)
    args = parser.parse_args()
    cases = all_cases()
    by_guard: dict[str, list[Case]] = {}
    for case in cases:
        by_guard.setdefault(case.guard, []).append(case)
    print(f"candidate holds: {', '.join(map(str, CANDIDATE_HOLDS))}; step_chars {args.step}")
    for guard, guard_cases in by_guard.items():
        harness = Harness(guard, step=args.step)
        needs = []
        for case in guard_cases:
            hold = minimal_hold(harness, case)
            needs.append((hold, case))
            if args.verbose:
                bound = "" if case.bounded else " (unbounded: no-leak only)"
                print(f"  {guard:20} {case.kind:20} len {len(case.value):4}  needs {hold}{bound}")
        worst = max(needs, key=lambda item: -1 if item[0] is None else item[0])
        failing = [c.kind for h, c in needs if h is None]
        declared = harness.declared_hold()
        print(
            f"{guard:20} minimal hold {max((h or 0) for h, _ in needs):4}  "
            f"(longest need: {worst[1].kind}, {len(worst[1].value)} chars)  declared {declared}"
            + (f"  NOT MET for: {', '.join(failing)}" if failing else "")
        )


if __name__ == "__main__":
    main()
