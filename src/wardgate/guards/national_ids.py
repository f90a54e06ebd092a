"""National identifiers with check digits, and passport numbers by context.

Candidates are found by shape and confirmed by the identifier's own check (``python-stdnum``
for the algorithms; it is pure Python and never reaches the network unless one calls its
``check_vies``, which this module does not):

* ``uk_nino`` - UK National Insurance number: HMRC's prefix and suffix rules (it has no
  check digit, so the allocation rules are the whole validation).
* ``de_tax_id`` - German Steuer-Identifikationsnummer: ISO 7064 mod 11,10 plus the
  repeated-digit rule. Eleven bare digits are common (order and account numbers), so it
  needs a context word (``Steuer-ID``, ``IdNr``, ``tax ID``...).
* ``fr_nir`` - French INSEE/NIR (numéro de sécurité sociale): 15 digits, mod-97 key.
* ``nl_bsn`` - Dutch burgerservicenummer: the 11-proof. One random nine-digit number in
  eleven passes it, so it needs a context word (``BSN``, ``burgerservicenummer``...).
* ``es_dni`` / ``es_nie`` - Spanish DNI and NIE: mod-23 check letter.
* ``it_fiscal_code`` - Italian codice fiscale: its structure and check character.
* ``eu_vat`` - EU VAT numbers, each member state's checksum (``stdnum.eu.vat``).
* ``passport`` - no shared check digit exists outside the machine-readable zone, so only a
  passport-shaped token right after a passport word in EN/DE/FR/ES/IT/NL counts.

A context word raises the score; for the identifiers with a distinctive shape and a strong
check (NIR, DNI/NIE, codice fiscale, VAT with country prefix, NINO) none is needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.eu import vat
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn

from wardgate.guards.entities import Entity

DATA_CLASS = "pii"
NATIONAL_ID_KINDS = (
    "uk_nino",
    "de_tax_id",
    "fr_nir",
    "nl_bsn",
    "es_dni",
    "es_nie",
    "it_fiscal_code",
    "eu_vat",
    "passport",
)

_L = r"(?<![A-Za-z0-9])"
_R = r"(?![A-Za-z0-9])"
#: How far before a candidate a context word may stand (characters).
CONTEXT_CHARS = 48

# HMRC: first letter not D F I Q U V; second not D F I O Q U V; these prefixes never issued.
_NINO = re.compile(
    _L + r"([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])" + _R
)
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
_DE_TAX = re.compile(_L + r"\d{2} ?\d{3} ?\d{3} ?\d{3}" + _R)
_NIR = re.compile(
    _L + r"[1-478] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}" + _R
)
_BSN = re.compile(_L + r"(?:\d{4}[ .]?\d{2}[ .]?\d{3}|\d{3}[ .]\d{3}[ .]\d{3})" + _R)
_DNI = re.compile(_L + r"\d{8}[ \-]?[A-Z]" + _R)
_NIE = re.compile(_L + r"[XYZ][ \-]?\d{7}[ \-]?[A-Z]" + _R)
_CF = re.compile(
    _L
    + r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-EHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]"
    + _R
)
_VAT_PREFIXES = (
    "AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI"
)
_VAT = re.compile(_L + rf"(?:{_VAT_PREFIXES}) ?[0-9A-Z][0-9A-Z .]{{6,14}}[0-9A-Z]" + _R)
_PASSPORT = re.compile(
    r"(?i:passport|reisepass|passeport|pasaporte|passaporto|paspoort|pass-nr|passnummer)"
    r"[^\n\d]{0,30}?(?<![A-Za-z0-9])(?P<v>(?=[A-Z0-9]{0,8}\d)[A-Z0-9]{6,9})" + _R
)

_CONTEXT = {
    "uk_nino": re.compile(r"(?i)national insurance|\bni\b|\bnino\b|\bnin\b"),
    "de_tax_id": re.compile(r"(?i)steuer|\bidnr|identifikationsnummer|\btax\b|\btin\b|\bst-?id"),
    "fr_nir": re.compile(r"(?i)s[ée]curit[ée] sociale|\bnir\b|insee|\bssn\b|social security"),
    "nl_bsn": re.compile(r"(?i)\bbsn\b|burgerservice|sofi|citizen service"),
    "es_dni": re.compile(r"(?i)\bdni\b|\bnif\b|documento|identidad"),
    "es_nie": re.compile(r"(?i)\bnie\b|\bnif\b|extranjero"),
    "it_fiscal_code": re.compile(r"(?i)codice fiscale|\bcf\b|fiscal"),
    "eu_vat": re.compile(
        r"(?i)\bvat\b|\bust|\btva\b|\biva\b|\bbtw\b|\bmwst|\buid\b|\bmoms\b|\bnip\b|\bdph\b"
    ),
}


def _compact(value: str) -> str:
    return re.sub(r"[ .\-]", "", value).upper()


def _nino_ok(match: re.Match[str]) -> bool:
    return match.group(1) not in _NINO_BAD_PREFIXES


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[re.Match[str]], bool]
    #: Score without and with a context word; 0 without means "context required".
    score: float
    context_score: float


def _valid(module: object) -> Callable[[re.Match[str]], bool]:
    is_valid: Callable[[str], bool] = module.is_valid  # type: ignore[attr-defined]
    return lambda m: is_valid(_compact(m.group(0)))


_RULES: tuple[_Rule, ...] = (
    _Rule("uk_nino", _NINO, _nino_ok, 0.7, 0.95),
    _Rule("de_tax_id", _DE_TAX, _valid(idnr), 0.0, 0.9),
    _Rule("fr_nir", _NIR, _valid(nir), 0.8, 0.95),
    _Rule("nl_bsn", _BSN, _valid(bsn), 0.0, 0.9),
    _Rule("es_dni", _DNI, _valid(dni), 0.8, 0.95),
    _Rule("es_nie", _NIE, _valid(nie), 0.85, 0.95),
    _Rule("it_fiscal_code", _CF, _valid(codicefiscale), 0.9, 0.95),
    _Rule("eu_vat", _VAT, _valid(vat), 0.75, 0.95),
)


class NationalIdDetector:
    """National identifiers and passport numbers; see the module docstring."""

    def detect(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        for rule in _RULES:
            for m in rule.pattern.finditer(text):
                if not rule.check(m):
                    continue
                before = text[max(0, m.start() - CONTEXT_CHARS) : m.start()]
                context = rule.kind in _CONTEXT and bool(_CONTEXT[rule.kind].search(before))
                score = rule.context_score if context else rule.score
                if score:
                    found.append(Entity(rule.kind, m.start(), m.end(), score, DATA_CLASS))
        for m in _PASSPORT.finditer(text):
            found.append(Entity("passport", m.start("v"), m.end("v"), 0.8, DATA_CLASS))
        return found
