"""Personal data: e-mail, phones, cards, IBANs, SSNs, IPs, national IDs, addresses, names.

Two engines find the structured kinds, both offline:

* ``regex`` (default) - compiled patterns with real validation (Luhn for cards, ISO 7064
  mod-97 for IBANs, SSA rules for SSNs, :mod:`ipaddress` for IPs, ``phonenumbers`` metadata for
  phones). A single pass, ~0.1 ms per 1,000 characters.
* ``presidio`` - Microsoft Presidio's pattern recognizers on a no-op NLP engine. Same kinds,
  the ecosystem's recognizers; 10-60x slower on digit-heavy text because its phone recognizer
  runs ``phonenumbers``' matcher once per region (figures in ``docs/guards.md``).

National identifiers (``national_ids``), street addresses and dates of birth (``addresses``)
join the regex engine. Person names come from the shipped offline recogniser
(``wardgate.guards.names``, on by default: ``names: false`` turns it off); alternatively set
``ner_model`` to the *local path* of a spaCy pipeline and Presidio's spaCy recognizer adds
``person`` findings. Nothing is ever downloaded:
a missing path is a :class:`~wardgate.errors.ConfigError` at start-up (Presidio would otherwise
try ``spacy download``), and the e-mail recognizer's public-suffix lookup (``tldextract``,
which fetches a list over the network) is replaced by a local syntax check.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from wardgate.errors import ConfigError
from wardgate.guards.addresses import ADDRESS_KINDS, AddressDetector
from wardgate.guards.base import Guard, GuardEnvironment, ScanContext, Verdict
from wardgate.guards.entities import (
    DataGuardOptions,
    Detector,
    Entity,
    data_verdict,
    resolve_overlaps,
)
from wardgate.guards.national_ids import NATIONAL_ID_KINDS, NationalIdDetector

if TYPE_CHECKING:
    from wardgate.guards.config import GuardSpec

DATA_CLASS = "pii"
PII_KINDS = (
    "email",
    "phone",
    "credit_card",
    "iban",
    "us_ssn",
    "ip_address",
    "person",
    *NATIONAL_ID_KINDS,
    *ADDRESS_KINDS,
)
#: Phone regions for numbers written without a country code: the EU member states, the UK
#: and the US (ISO 3166 alpha-2; ``GR`` is Greece, which VAT numbers spell ``EL``).
DEFAULT_PHONE_REGIONS = (
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "BE", "AT", "PL", "SE", "IE", "PT", "DK", "FI",
    "CZ", "GR", "HU", "RO", "BG", "HR", "SK", "SI", "LT", "LV", "EE", "LU", "MT", "CY",
)  # fmt: skip

_EMAIL = re.compile(
    r"(?<![\w.+%\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-])"
)
# Not after a word, ``+``, ``-`` or ``#``: ``INV-2024-00123`` and ``#39485049`` are references.
_PHONE = re.compile(r"(?<![\w+\-#])(?:\+|00)?\(?\d[\d ().\-]{5,20}\d(?![\w])")
# Without a country code a digit group is only a phone number in a familiar national shape:
# North American (212) 555-0142 / 212-555-0142 / 1-212-555-0142, or a trunk-prefixed
# European 020 7946 0958.
_NANP_SHAPE = re.compile(r"(?:1[-. ])?(?:\(\d{3}\)\s?|\d{3}[-. ])\d{3}[-. ]\d{4}")
# A North American local number (exchange + line, no area code): only with a context word.
_NANP_LOCAL_SHAPE = re.compile(r"[2-9]\d{2}[-. ]\d{4}")
_TRUNK_SHAPE = re.compile(r"0\d{1,4}[ ./\-]?\d[\d ./\-]{4,14}\d")
# 123-45-6789 is the SSN shape; no numbering plan writes phone numbers that way.
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
# "809 - 86 - 3664" is arithmetic; numbering plans group with bare hyphens or spaces.
_OPERATOR = re.compile(r"\s[-–/*+=]\s")
#: How far before a number its context word may stand ("El teléfono de la oficina es ...").
PHONE_CONTEXT_CHARS = 40
#: How far after it ("She gave +44 7700 900418 as a callback number", "0612 … (mobile)").
PHONE_CONTEXT_AFTER_CHARS = 30
#: Score of a phone-shaped number in a phone context that the numbering plan calls invalid.
UNVERIFIED_PHONE_SCORE = 0.6
_DATE_SHAPE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
# Word starts (no right boundary: "telefono", "Handynummer", "llámame", "appelle-moi").
_PHONE_CONTEXT = re.compile(
    r"(?i)\b(?:phone|tel|t[ée]l[ée]|mobil|m[óo]vil|cell|call|fax|ring|text|sms|whats ?app|"
    r"handy|ruf|anruf|r[üu]ckruf|erreich|portable|appel|rappel|joindre|ll[aá]m|contact|kontakt|"
    r"chiam|cellulare|telemóvel|telem[óo]vel|bel\b|gsm)"
)
# A national-form number right after a token mixing letters and digits continues a code
# ("1Z 999 AA1 01 2345 6784"), and one right after a reference label with no phone word
# nearby is the reference ("Tracking: 0034 ...", "Bestellnummer 0221 ..."); numbers with a
# country code or a phone word nearby are unaffected.
_CODE_BEFORE = re.compile(r"(?:^|\s)(?=[A-Za-z0-9]*[A-Za-z])(?=[A-Za-z0-9]*\d)[A-Za-z0-9]+ $")
_REFERENCE_CONTEXT = re.compile(
    r"(?i)\b(?:tracking|order|invoice|sku|ref|reference|parcel|shipment|consignment|"
    r"bestell|auftrag|rechnung|paket|sendung|lieferschein|commande|facture|colis|envoi|"
    r"pedido|factura|env[íi]o|albar[áa]n|seguimiento)\w*\.?"
    r"\s*(?:(?:no|nr|n[°º]|number|nummer|num|id)\.?\s*)?[:#]?\s*$"
)
# Not glued to letters either: ``1Z23412630444701A1`` is a parcel, not a card.
_CARD = re.compile(r"(?<![\w\-])[2-6]\d{3}(?:[ \-]?\d){9,15}(?![\w\-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
# Registered IBAN lengths (SWIFT IBAN registry). Only consulted when trailing groups had to
# be dropped, where a shorter prefix would otherwise pass mod-97 by chance 1 time in 97.
_IBAN_LENGTHS = MappingProxyType(
    {
        **dict.fromkeys(("NO",), 15),
        **dict.fromkeys(("BE",), 16),
        **dict.fromkeys(("DK", "FI", "FO", "GL", "NL"), 18),
        **dict.fromkeys(("MK", "SI"), 19),
        **dict.fromkeys(("AT", "BA", "EE", "KZ", "LT", "LU", "XK"), 20),
        **dict.fromkeys(("CH", "HR", "LI", "LV"), 21),
        **dict.fromkeys(("BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS"), 22),
        **dict.fromkeys(("AE", "GI", "IL"), 23),
        **dict.fromkeys(("AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"), 24),
        **dict.fromkeys(("PT",), 25),
        **dict.fromkeys(("IS", "TR"), 26),
        **dict.fromkeys(("FR", "GR", "IT", "MC", "MR", "SM"), 27),
        **dict.fromkeys(("AL", "AZ", "CY", "DO", "GT", "HU", "LB", "PL"), 28),
        **dict.fromkeys(("BR", "EG", "PS", "QA", "UA"), 29),
        **dict.fromkeys(("JO", "KW", "MU"), 30),
        **dict.fromkeys(("MT",), 31),
    }
)
_SSN = re.compile(r"(?<![\d\-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d\-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 check digits (ISO 7064 mod 97-10)."""
    compact = iban.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA allocation rules: no 000/666/9xx area, no 00 group, no 0000 serial."""
    if area in ("000", "666") or area.startswith("9"):
        return False
    return group != "00" and serial != "0000"


class RegexPiiDetector:
    """Structured PII with validation; see the module docstring."""

    def __init__(self, phone_regions: list[str] | None = None) -> None:
        import phonenumbers  # a Presidio dependency; pure Python metadata, no network

        self._phonenumbers = phonenumbers
        self._regions = list(phone_regions or DEFAULT_PHONE_REGIONS)
        self._ids = NationalIdDetector()
        self._addresses = AddressDetector()

    def detect(self, text: str) -> list[Entity]:
        # Identifiers first: their digit groups must not also count as phone numbers.
        found: list[Entity] = self._ids.detect(text) + self._addresses.detect(text)
        for m in _EMAIL.finditer(text):
            found.append(Entity("email", m.start(), m.end(), 1.0, DATA_CLASS))
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group(0))
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                found.append(Entity("credit_card", m.start(), m.end(), 1.0, DATA_CLASS))
        # IBAN-shaped text that fails the check (a typo, a trailing upper-case word) still
        # hides the card- and phone-like digit runs inside it.
        iban_shaped: list[tuple[int, int]] = []
        for m in _IBAN.finditer(text):
            end = _valid_iban_end(m.group(0))
            if end:
                found.append(Entity("iban", m.start(), m.start() + end, 1.0, DATA_CLASS))
            else:
                iban_shaped.append((m.start(), m.end()))
        if iban_shaped:
            found = [
                e
                for e in found
                if e.kind != "credit_card"
                or not any(s <= e.start and e.end <= t for s, t in iban_shaped)
            ]
        for m in _SSN.finditer(text):
            if ssn_ok(m.group(1), m.group(3), m.group(4)):
                found.append(Entity("us_ssn", m.start(), m.end(), 0.85, DATA_CLASS))
        for m in _IPV4.finditer(text):
            if _ip_ok(m.group(0)):
                found.append(Entity("ip_address", m.start(), m.end(), 0.8, DATA_CLASS))
        for m in _IPV6.finditer(text):
            if m.group(0).count(":") >= 2 and _ip_ok(m.group(0)):
                found.append(Entity("ip_address", m.start(), m.end(), 0.8, DATA_CLASS))
        taken = [(e.start, e.end) for e in found] + iban_shaped
        for m in _PHONE.finditer(text):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            context = text[max(0, m.start() - PHONE_CONTEXT_CHARS) : m.start()]
            after = text[m.end() : m.end() + PHONE_CONTEXT_AFTER_CHARS]
            phone_context = bool(_PHONE_CONTEXT.search(context) or _PHONE_CONTEXT.search(after))
            if (
                not phone_context
                and not m.group(0).startswith(("+", "00"))
                and (_CODE_BEFORE.search(context) or _REFERENCE_CONTEXT.search(context))
            ):
                continue  # a national-form digit run inside a reference: "1Z 999 AA1 01 2345 6784"
            score = self._phone_score(m.group(0), phone_context)
            if score:
                found.append(Entity("phone", m.start(), m.end(), score, DATA_CLASS))
        return found

    def _phone_score(self, candidate: str, context: bool) -> float:
        pn = self._phonenumbers
        digits = sum(c.isdigit() for c in candidate)
        if (
            not 7 <= digits <= 15
            or _DATE_SHAPE.fullmatch(candidate)
            or _SSN_SHAPE.fullmatch(candidate)
            or _OPERATOR.search(candidate)
        ):
            return 0.0
        # Dotted groups are versions ("10.0.19045.4529") unless dialled like a number:
        # "04.78.62.13.40", "212.555.0142", "+33.4.78...".
        if (
            "." in candidate
            and not candidate.startswith(("0", "+", "("))
            and not _NANP_SHAPE.fullmatch(candidate)
        ):
            return 0.0
        regions: list[str | None]
        if candidate.startswith(("+", "00")):
            regions, score = [None], 0.9
        elif context:
            regions, score = list(self._regions), 0.8
        elif _NANP_SHAPE.fullmatch(candidate) and not candidate.lstrip("(").startswith("0"):
            # (North American area codes never start with 0; "086 123 9876" is Irish.)
            regions, score = ["US"], 0.7
        elif _TRUNK_SHAPE.fullmatch(candidate) and not candidate.isdigit():
            # An unbroken 0-led run (tracking and account numbers) needs a context word.
            regions, score = [r for r in self._regions if r not in ("US", "CA")], 0.7
        else:
            return 0.0
        number_text = "+" + candidate[2:] if candidate.startswith("00") else candidate
        possible = False
        for region in regions:
            if region is not None and not self._national_prefix_ok(candidate, region):
                continue
            try:
                number = pn.parse(number_text, region)
            except pn.NumberParseException:
                continue
            if pn.is_valid_number(number):
                return score
            if context and pn.is_possible_number(number):
                possible = True
        if context and _NANP_LOCAL_SHAPE.fullmatch(candidate) and "US" in self._regions:
            return score
        # Phone-shaped in a phone context but outside the allocated ranges (the UK's reserved
        # 07700 900xxx drama range, a newly opened block the metadata does not know yet): still
        # a person's number for routing purposes, at a lower score.
        # It must at least be dialled like a number: a country code or a trunk 0 and groups.
        dialled = candidate.startswith(("+", "00")) or (
            candidate.startswith("0") and not candidate.isdigit()
        )
        return UNVERIFIED_PHONE_SCORE if possible and dialled else 0.0

    def _national_prefix_ok(self, candidate: str, region: str) -> bool:
        """A national number is written with its trunk prefix (GB/DE/FR ``0``).

        ``phonenumbers`` also accepts the bare subscriber number, which turns ten-digit
        timestamps and tracking numbers near the word "call" into phone numbers.
        """
        meta = self._phonenumbers.PhoneMetadata.metadata_for_region(region)
        if meta is None or meta.country_code == 1 or not meta.national_prefix:
            return True
        first = next((c for c in candidate if c.isdigit()), "")
        return meta.national_prefix.startswith(first)


def _valid_iban_end(candidate: str) -> int:
    """Length of the longest valid IBAN at the start of ``candidate`` (0: none).

    The pattern is greedy over space-separated groups, so ``DE89 ... 00 BIC COBADEFF`` or an
    IBAN before a capitalised word matches too long; dropping trailing groups finds the IBAN.
    """
    end = len(candidate)
    registered = _IBAN_LENGTHS.get(candidate[:2])
    while end >= 15:
        trimmed = end < len(candidate)
        length_ok = registered is None or len(candidate[:end].replace(" ", "")) == registered
        if (length_ok or not trimmed) and iban_ok(candidate[:end]):
            return end
        cut = candidate.rfind(" ", 0, end)
        if cut < 4:
            return 0
        end = cut
    return 0


def _ip_ok(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


_PRESIDIO_KINDS = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "US_SSN": "us_ssn",
    "IP_ADDRESS": "ip_address",
    "PERSON": "person",
}


class PresidioPiiDetector:
    """Presidio's recognizers, configured never to reach the network.

    ``structured=False`` keeps only the NER recognizer (names), for use beside the regex engine.
    """

    def __init__(
        self,
        *,
        ner_model: str | None = None,
        phone_regions: list[str] | None = None,
        structured: bool = True,
    ) -> None:
        if ner_model and not Path(ner_model).is_dir():
            # Checked first: Presidio would otherwise try `spacy download` for a bare name.
            raise ConfigError(
                f"ner_model {ner_model!r} is not a local spaCy pipeline directory; "
                "Wardgate never downloads models at run time"
            )
        try:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import (
                CreditCardRecognizer,
                EmailRecognizer,
                IbanRecognizer,
                IpRecognizer,
                PhoneRecognizer,
                SpacyRecognizer,
                UsSsnRecognizer,
            )
        except ImportError as exc:
            raise ConfigError(
                "the 'presidio' PII engine needs presidio-analyzer (pip install 'wardgate[guards]')"
            ) from exc

        class OfflineEmailRecognizer(EmailRecognizer):
            """Presidio's e-mail pattern without the tldextract public-suffix download."""

            def validate_result(self, pattern_text: str) -> bool:
                return bool(_EMAIL.fullmatch(pattern_text))

        registry = RecognizerRegistry(supported_languages=["en"])
        if structured:
            regions = tuple(phone_regions or ["US"])
            for recognizer in (
                OfflineEmailRecognizer(),
                PhoneRecognizer(supported_regions=regions),
                CreditCardRecognizer(),
                IbanRecognizer(),
                UsSsnRecognizer(),
                IpRecognizer(),
            ):
                registry.add_recognizer(recognizer)
        nlp_engine: Any
        if ner_model:
            nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": ner_model}])
            registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON"]))
        else:
            nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
        nlp_engine.load()
        self._engine = AnalyzerEngine(
            registry=registry, nlp_engine=nlp_engine, supported_languages=["en"]
        )

    def detect(self, text: str) -> list[Entity]:
        found = []
        for result in self._engine.analyze(text, language="en"):
            kind = _PRESIDIO_KINDS.get(result.entity_type)
            if kind is None:
                continue
            # Presidio scores validated phones/IPs 0.4-0.6 for want of context words; the
            # recognizers validated them, so they count.
            score = max(float(result.score), 0.6)
            found.append(Entity(kind, result.start, result.end, score, DATA_CLASS))
        return found


class PiiOptions(DataGuardOptions):
    engine: Literal["regex", "presidio"] = "regex"
    #: The shipped offline person-name recogniser (``wardgate.guards.names``).
    names: bool = True
    #: Names scored below this are ignored; None: the threshold chosen at training time.
    names_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    #: Local path of a spaCy pipeline with an NER component; enables ``person``.
    ner_model: str | None = None
    #: Regions for phone numbers written without a country code (ISO 3166 alpha-2). The
    #: default covers the EU, the UK and the US; a list given here replaces it.
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))


class PiiDetector:
    """The configured engine, the shipped name recogniser and, if set, the spaCy NER model."""

    def __init__(self, options: PiiOptions) -> None:
        self._detectors: list[Detector] = []
        if options.names:
            from wardgate.guards.names import NameRecognizer

            self._detectors.append(NameRecognizer.shipped(options.names_threshold))
        if options.engine == "regex":
            self._detectors.append(RegexPiiDetector(options.phone_regions))
            if options.ner_model:
                self._detectors.append(
                    PresidioPiiDetector(ner_model=options.ner_model, structured=False)
                )
        else:
            self._detectors.append(
                PresidioPiiDetector(
                    ner_model=options.ner_model, phone_regions=options.phone_regions
                )
            )
            self._detectors += [NationalIdDetector(), AddressDetector()]

    def detect(self, text: str) -> list[Entity]:
        return resolve_overlaps(e for d in self._detectors for e in d.detect(text))


class PiiGuard(Guard):
    """Finds personal data; on input it tags the request ``pii`` (routing keeps it in-house)."""

    type_name = "pii"
    #: E-mail addresses are the longest kind (IBANs: 42 with spaces; IPv6: 39); 96 redacts
    #: addresses up to about 85 characters whole from a stream (bench/stream_hold.py).
    stream_hold_chars: ClassVar[int] = 96
    block_code = "pii_policy"
    Options: ClassVar[type[PiiOptions]] = PiiOptions

    def __init__(self, spec: GuardSpec, env: GuardEnvironment | None = None) -> None:
        super().__init__(spec, env)
        self.detector = PiiDetector(self.options)

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        return data_verdict(text, self.detector.detect(text), self.options, ctx, self.block_code)
