"""National IDs, European phones, addresses, dates of birth and prefix-less secrets (issue 16).

Each kind is checked both ways: a valid value in its usual shape is found, and the same shape
with a broken check digit (or without the context the kind needs) is not.
"""

from __future__ import annotations

import pytest

from wardgate.chat import ChatRequest
from wardgate.guards import GuardPipeline, GuardSpec, ScanContext, default_guards_config
from wardgate.guards.national_ids import NATIONAL_ID_KINDS
from wardgate.guards.pii import PiiDetector, PiiGuard, PiiOptions
from wardgate.guards.secrets import SecretDetector, SecretsGuard

DETECTOR = PiiDetector(PiiOptions(names=False))


def found(text: str) -> set[tuple[str, str]]:
    return {(e.kind, text[e.start : e.end]) for e in DETECTOR.detect(text)}


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("NI number AB 12 34 56 C on file", "uk_nino", "AB 12 34 56 C"),
        ("Steuer-ID 60481372996", "de_tax_id", "60481372996"),
        ("Steuer-ID: 47 158 392 048", "de_tax_id", "47 158 392 048"),
        ("sécurité sociale 2 93 04 75 123 456 03", "fr_nir", "2 93 04 75 123 456 03"),
        ("BSN 903182749", "nl_bsn", "903182749"),
        ("DNI 73015284J", "es_dni", "73015284J"),
        ("NIE Z-0917263-M", "es_nie", "Z-0917263-M"),
        ("codice VRDLCU92C03H501V", "it_fiscal_code", "VRDLCU92C03H501V"),
        ("USt-IdNr. DE811569869", "eu_vat", "DE811569869"),
        ("VAT PL5260250274", "eu_vat", "PL5260250274"),
        ("passport no. 912345678", "passport", "912345678"),
        ("Reisepass Nr. C4J7X2K91", "passport", "C4J7X2K91"),
    ],
)
def test_national_ids_with_valid_checks_are_found(text: str, kind: str, value: str) -> None:
    assert (kind, value) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "NI number GB 12 34 56 C",  # GB is a prefix HMRC never issues
        "Steuer-ID 60481372997",  # check digit off by one
        "sécurité sociale 2 93 04 75 123 456 04",
        "BSN 903182748",  # fails the 11-proof
        "order reference 903182749",  # valid 11-proof, but no context word
        "DNI 73015284K",
        "NIE Z0917263N",
        "codice VRDLCU92C03H501X",
        "VAT DE811569868",
        "order 60481372996 shipped",  # a valid Steuer-ID shape without a tax word
        "the passport office opens at 9",
    ],
)
def test_broken_checks_and_missing_context_are_not_found(text: str) -> None:
    kinds = {k for k, _ in found(text)}
    assert not kinds & set(NATIONAL_ID_KINDS), found(text)


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("Llámanos al 622 45 67 89", "622 45 67 89"),  # ES: no trunk prefix, context word
        ("Chiamami al 347 123 4567", "347 123 4567"),  # IT mobile
        ("O meu telemóvel é 913 456 789", "913 456 789"),  # PT
        ("Siobhan's number is 086 123 9876", "086 123 9876"),  # IE, NANP-shaped but 0-led
        ("Bel me op 06-12345678", "06-12345678"),  # NL
        ("Tel. 0221 9876543", "0221 9876543"),
        ("Numéro : 07 81 23 45 67", "07 81 23 45 67"),
        ("ring +48 512 345 678", "+48 512 345 678"),
    ],
)
def test_eu_national_phone_formats(text: str, phone: str) -> None:
    assert ("phone", phone) in found(text)


def test_reserved_range_phone_in_context_is_found_with_a_lower_score() -> None:
    import phonenumbers

    assert not phonenumbers.is_valid_number(phonenumbers.parse("+44 7700 900123"))
    entities = DETECTOR.detect("Call me on +44 7700 900123 after six.")
    assert [(e.kind, e.score) for e in entities] == [("phone", 0.6)]
    # Without a phone word the same digits are not claimed.
    assert found("ref +44 7700 900123") == set()


@pytest.mark.parametrize(
    "text",
    [
        "She gave +44 7700 900418 as a callback number.",
        "Notfall: +44 7700 900418 (Handy), ab 18 Uhr.",
    ],
)
def test_a_phone_word_just_after_the_number_is_phone_context(text: str) -> None:
    assert [(e.kind, e.score) for e in DETECTOR.detect(text)] == [("phone", 0.6)]


def test_a_phone_word_far_after_the_number_is_not_context() -> None:
    far = "ref +44 7700 900123 was closed by the support team before the call"
    assert found(far) == set()


@pytest.mark.parametrize(
    "text",
    [
        "Notes from the call: 809 - 86 - 3664",  # arithmetic
        "Notes from the call: 10.0.10638.2466",  # a version
        "Shipment 7734001298 left the depot.",
        "Lieferschein 88120044 vom 12.03.2024",
        # National-form digits continuing a code, or right after a reference label.
        "Parcel 1Z 4X9 BB2 02 3456 7890 arrives Monday.",
        "Order no. 0221 5566 7788 was cancelled.",
        "Rechnungsnummer: 030 4403 2291",
        "Pedido: 0912 345 678",
    ],
)
def test_phone_look_alikes(text: str) -> None:
    assert not {k for k, _ in found(text)} & {"phone"}, found(text)


@pytest.mark.parametrize(
    "text",
    [
        "Order issue? Call 020 7946 0958.",  # a phone word beats the reference label
        "ref INV-22 and 020 7946 0958",  # the label names the other value
        "Tracking: +44 20 7946 0958",  # a country code is always dialled
    ],
)
def test_phones_near_references_are_still_phones(text: str) -> None:
    assert "phone" in {k for k, _ in found(text)}, found(text)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Send it to 17 Church Lane, Oxford.", "street_address", "17 Church Lane"),
        ("Lieferadresse: Bahnhofstr. 3, 80335 München", "street_address", "Bahnhofstr. 3"),
        ("au 8 boulevard Saint-Michel.", "street_address", "8 boulevard Saint-Michel"),
        ("en Paseo de Gracia 43, Barcelona", "street_address", "Paseo de Gracia 43"),
        ("DOB 1987-09-30", "date_of_birth", "1987-09-30"),
        ("am 4. März 1981 in Hamburg geboren", "date_of_birth", "4. März 1981"),
        ("nacida el 3 de junio de 1959", "date_of_birth", "3 de junio de 1959"),
    ],
)
def test_addresses_and_birth_dates(text: str, kind: str, value: str) -> None:
    assert (kind, value) in found(text)


def test_a_date_without_a_birth_word_is_not_a_birth_date() -> None:
    assert found("Invoice dated 1987-09-30, due 14/03/2024") == set()


SECRETS = SecretDetector()
AWS_LIKE = "Zm9yZXhhbXBsZW9ubHlub3RhcmVhbGtleTEyMzQ1"  # 40 characters, base64 alphabet
AWS_LIKE_2 = "Hq8vN2pLr0Tz+Wm5Xc7Yb3Kd9Fs1Gj4Ae6Ru2Ioq"


def secrets(text: str) -> set[tuple[str, str]]:
    return {(e.kind, text[e.start : e.end]) for e in SECRETS.detect(text)}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("the secret key is " + AWS_LIKE, AWS_LIKE),
        ("secret_access_key = " + AWS_LIKE_2, AWS_LIKE_2),
        ("The access token: 9sKd82LmQp0ZxVb7Rt4YwN3c", "9sKd82LmQp0ZxVb7Rt4YwN3c"),
        ("Mein Kennwort lautet Sommer2024!Berg", "Sommer2024!Berg"),
        ("my password is 5f4dcc3b5aa765d61d8327deb882cf99", "5f4dcc3b5aa765d61d8327deb882cf99"),
    ],
)  # fmt: skip
def test_prefixless_secrets_after_a_secret_word(text: str, value: str) -> None:
    assert ("contextual_secret", value) in secrets(text)


@pytest.mark.parametrize(
    "text",
    [
        "Rotate the secret every 90 days, as the policy says.",
        "token_count = 4096",
        "The password reset link expires in 15 minutes.",
        "api token sha256 d41d8cd98f00b204e9800998ecf8427e",  # a hash word vetoes hex
        "token: 5d41402abc4b2a76b9719d911017c592",  # plain hex needs a password word
        "commit 9fceb02d0ae598e95dc970b74dd5ecc8f1b3fe0b",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # 40 random characters, no secret word
        "The secret to good bread is time: 2 hours.",
    ],
)
def test_prose_and_hashes_are_not_secrets(text: str) -> None:
    assert not any(k == "contextual_secret" for k, _ in secrets(text)), secrets(text)


@pytest.mark.parametrize("action", ["redact", "flag", "restrict_on_prem", "block"])
def test_new_kinds_follow_the_guard_actions(action: str) -> None:
    guard = PiiGuard(GuardSpec(type="pii", options={"action": action, "names": False}))
    verdict = guard.scan("Steuer-ID 60481372996, DNI 73015284J", ScanContext(stage="input"))
    assert {f.kind for f in verdict.findings} == {"de_tax_id", "es_dni"}
    expected = {"flag": "allow"}.get(action, action)
    assert verdict.action == expected
    if action == "redact":
        assert verdict.redacted == "Steuer-ID [REDACTED:de_tax_id], DNI [REDACTED:es_dni]"


def test_contextual_secret_follows_the_secrets_guard_actions() -> None:
    guard = SecretsGuard(GuardSpec(type="secrets", options={"action": "redact"}))
    verdict = guard.scan("password is Tr0ub4dor&3xK9!", ScanContext(stage="output"))
    assert verdict.redacted == "password is [REDACTED:contextual_secret]"


async def test_pseudonymisation_covers_ids_phones_and_restores_them() -> None:
    pipeline = GuardPipeline.from_config(default_guards_config(learned=False))
    text = "Steuer-ID 60481372996, Handy 0176 4921 8830, NIE X1234567L"
    request = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}]}
    )
    result = await pipeline.check_request(request)
    assert "pii" in result.data_classes
    pseudonymiser = pipeline.pseudonymiser()
    sent = pseudonymiser.apply(result.request).messages[0].text
    for value in ("60481372996", "0176 4921 8830", "X1234567L"):
        assert value not in sent
    assert "<DE_TAX_ID_1>" in sent and "<ES_NIE_1>" in sent and "<PHONE_1>" in sent
    assert pseudonymiser.restore(sent) == text
    restorer = pseudonymiser.restore_stream()
    streamed = "".join(restorer.feed(sent[i : i + 3]) for i in range(0, len(sent), 3))
    assert streamed + restorer.finish() == text


async def test_streamed_output_redacts_an_id_split_across_chunks() -> None:
    pipeline = GuardPipeline.from_config(default_guards_config(learned=False))
    request = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    scanner = pipeline.output_scanner(await pipeline.check_request(request))
    text = "Her tax ID (Steuer-ID) is 47 158 392 048 and her DNI is 48291637D. Done."
    released = "".join(scanner.feed(text[i : i + 4]) for i in range(0, len(text), 4))
    released += scanner.finish()
    assert "392 048" not in released and "48291637D" not in released
    assert "[REDACTED:de_tax_id]" in released and "[REDACTED:es_dni]" in released
