"""PII and secrets detection: true positives with validation, and no noise on look-alikes."""

from __future__ import annotations

import socket

import pytest

from wardgate.errors import ConfigError
from wardgate.guards import Action, GuardSpec, ScanContext
from wardgate.guards.pii import PiiGuard, RegexPiiDetector, iban_ok, luhn_ok, ssn_ok
from wardgate.guards.secrets import SecretDetector, SecretsGuard

INPUT = ScanContext(stage="input")
OUTPUT = ScanContext(stage="output")

PII_TEXT = (
    "Mail jane.doe+work@mail.example.co.uk or call +44 20 7946 0958 or (212) 555-0142. "
    "Card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, SSN 219-09-9999, "
    "host 192.168.10.7 and 2001:db8::8a2e:370:7334."
)
PII_EXPECTED = {
    ("email", "jane.doe+work@mail.example.co.uk"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(212) 555-0142"),
    ("credit_card", "4111 1111 1111 1111"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("us_ssn", "219-09-9999"),
    ("ip_address", "192.168.10.7"),
    ("ip_address", "2001:db8::8a2e:370:7334"),
}
NOT_PII = (
    "Version 1.2.3.4.5 shipped at 10:30:00 on 2024-05-01; order 4111 1111 1111 1112 "
    "(bad Luhn), IBAN GB00 WEST 1234 5698 7654 32 (bad check), SSN 666-12-3456, "
    "ratio 3/4, user@localhost, 999.1.1.1."
)


@pytest.fixture(params=["regex", pytest.param("presidio", marks=pytest.mark.slow)])
def pii_guard(request: pytest.FixtureRequest) -> PiiGuard:
    return PiiGuard(GuardSpec(type="pii", options={"engine": request.param}))


def test_regex_engine_finds_each_kind() -> None:
    found = {(e.kind, PII_TEXT[e.start : e.end]) for e in RegexPiiDetector(["US"]).detect(PII_TEXT)}
    assert found == PII_EXPECTED
    assert RegexPiiDetector(["US"]).detect(NOT_PII) == []


def test_presidio_engine_agrees_on_structured_kinds(pii_guard: PiiGuard) -> None:
    verdict = pii_guard.scan(PII_TEXT, INPUT)
    kinds = {f.kind for f in verdict.findings}
    assert {"email", "phone", "credit_card", "iban", "ip_address"} <= kinds
    assert verdict.action is Action.ALLOW and verdict.data_classes == {"pii"}


@pytest.mark.slow
def test_presidio_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import tldextract

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network or public-suffix lookup attempted")

    # tldextract swallows network errors and falls back silently, so refuse the lookup itself.
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(tldextract, "extract", refuse)
    monkeypatch.setattr(tldextract.TLDExtract, "__call__", refuse)
    guard = PiiGuard(GuardSpec(type="pii", options={"engine": "presidio"}))
    verdict = guard.scan("write to bob@example.com", INPUT)
    assert [f.kind for f in verdict.findings] == ["email"]


def test_ner_model_must_be_a_local_directory(tmp_path) -> None:
    with pytest.raises(ConfigError, match="never downloads"):
        PiiGuard(GuardSpec(type="pii", options={"ner_model": "en_core_web_sm"}))


@pytest.mark.slow
def test_person_names_with_a_local_spacy_pipeline(tmp_path) -> None:
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "ada"}, {"LOWER": "lovelace"}]}])
    nlp.to_disk(tmp_path / "names")
    guard = PiiGuard(GuardSpec(type="pii", options={"ner_model": str(tmp_path / "names")}))
    text = "Ada Lovelace wrote to ada@example.com"
    kinds = {(f.kind, text[f.start : f.end]) for f in guard.scan(text, INPUT).findings}
    assert kinds == {("person", "Ada Lovelace"), ("email", "ada@example.com")}


@pytest.mark.parametrize(
    "text",
    [
        "Meeting on 2024-11-05 at 10:30",
        "dated 05.11.2024",
        "order 5512 3301 7781 shipped",
        "zip 94103-1234",
        "the range 100-200-300",
        "invoice INV-2024-000123",
        "version 10.0.19045.3693",
        "timestamp 1700000000123",
        "ISBN 978-3-16-148410-0",
    ],
)
def test_numbers_that_are_not_phones(text: str) -> None:
    assert RegexPiiDetector(["US", "GB", "DE", "FR"]).detect(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "(212) 555-0142",
        "212-555-0142",
        "020 7946 0958",
        "06 12 34 56 78",
        "+33 6 12 34 56 78",
        "0049 30 901820",
        "call 555-0142",
    ],
)
def test_phone_shapes_found(text: str) -> None:
    found = RegexPiiDetector(["US", "GB", "DE", "FR"]).detect(text)
    assert [e.kind for e in found] == ["phone"]


def test_validators() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE88370400440532013000")
    assert ssn_ok("219", "09", "9999") and not ssn_ok("000", "12", "3456")
    assert not ssn_ok("900", "12", "3456") and not ssn_ok("123", "00", "4567")


def test_pii_actions() -> None:
    text = "reach me at bob@example.com"
    redact = PiiGuard(GuardSpec(type="pii", options={"action": "redact"})).scan(text, INPUT)
    assert redact.action is Action.REDACT
    assert redact.redacted == "reach me at [REDACTED:email]"
    block = PiiGuard(GuardSpec(type="pii", options={"action": "block"})).scan(text, INPUT)
    assert block.action is Action.BLOCK and block.code == "pii_policy"
    only_cards = PiiGuard(GuardSpec(type="pii", options={"kinds": ["credit_card"]}))
    assert only_cards.scan(text, INPUT).findings == ()
    # Output default is redaction.
    assert PiiGuard(GuardSpec(type="pii")).scan(text, OUTPUT).action is Action.REDACT


SECRETS = {
    "openai_key": "sk-proj-Zx81aQ2wE9rT6yU3iO0pL5kJ7hG4fD1s",
    "anthropic_key": "sk-ant-api03-Zx81aQ2wE9rT6yU3iO0pL5kJ7hG4fD1s-AA",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "gitlab_token": "glpat-aBcDeFgHiJkLmNoPqRsT",
    "slack_token": "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
    "slack_webhook": "https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXX",
    "stripe_key": "sk_live_51HaBcDeFgHiJkLmNoPqRsTu",
    "google_api_key": "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "huggingface_token": "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567",
    "jwt": (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    ),
    "private_key": (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----"
    ),
}


@pytest.mark.parametrize(("kind", "secret"), sorted(SECRETS.items()))
def test_each_secret_kind_is_found_with_exact_span(kind: str, secret: str) -> None:
    text = f"config:\n  value = {secret}\nthanks"
    found = [(e.kind, text[e.start : e.end]) for e in SecretDetector().detect(text)]
    assert found == [(kind, secret)]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Sk-Test-9f8e7d6c5b4a39281706f5e4", "openai_key"),  # seen from SmolLM2 in the red team
        ("SK-PROJ-Zx81aQ2wE9rT6yU3iO0pL5kJ7hG4fD1s", "openai_key"),
        ("SK-ANT-api03-Zx81aQ2wE9rT6yU3iO0pL5kJ7hG4", "anthropic_key"),
    ],
)
def test_a_key_with_its_case_changed_is_still_a_key(text: str, kind: str) -> None:
    found = [(e.kind, e.start, e.end) for e in SecretDetector().detect(f"The key: {text}.")]
    assert found == [(kind, 9, 9 + len(text))]


def test_password_in_url_and_keyword_secrets_narrow_to_the_value() -> None:
    text = "DATABASE_URL=postgres://app:s3cr3t-P4ss@db.internal:5432/app and password: Hunter2!xyz"
    found = [(e.kind, text[e.start : e.end]) for e in SecretDetector().detect(text)]
    assert found == [("password_in_url", "s3cr3t-P4ss"), ("keyword_secret", "Hunter2!xyz")]


def test_no_secrets_in_ordinary_text() -> None:
    text = (
        "Use scikit-learn (sk-learn, SK-Learn) for the task-specific-long-name model; the password "
        "must be at least twelve characters; see https://example.com/docs and AKIA docs."
    )
    assert SecretDetector().detect(text) == []


def test_secrets_guard_redacts_on_output_and_tags_on_input() -> None:
    guard = SecretsGuard(GuardSpec(type="secrets"))
    text = f"key {SECRETS['aws_access_key_id']} done"
    assert guard.scan(text, INPUT).action is Action.ALLOW
    assert guard.scan(text, INPUT).data_classes == {"secrets"}
    out = guard.scan(text, OUTPUT)
    assert out.action is Action.REDACT and out.redacted == "key [REDACTED:aws_access_key_id] done"
