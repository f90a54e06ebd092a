"""Street addresses and dates of birth, in English, German, French and Spanish.

* ``street_address`` - a house number beside a street-type word in the language's order
  (``42 Maple Avenue``, ``Hauptstraße 12``, ``14 rue de la Paix``, ``Calle Mayor 5``). The
  street-type word is what makes it an address; a bare number beside a capitalised word is not.
* ``date_of_birth`` - any date (numeric, or with a month name in one of the four languages)
  only where a birth word stands shortly before it (``born``, ``DOB``, ``geboren``,
  ``Geburtsdatum``, ``né le``, ``date de naissance``, ``nació``, ``fecha de nacimiento``).
  Dates alone are everywhere (invoices, logs) and are not personal data by themselves.
"""

from __future__ import annotations

import re

from wardgate.guards.entities import Entity

DATA_CLASS = "pii"
ADDRESS_KINDS = ("street_address", "date_of_birth")

_UP = r"[A-ZÄÖÜÀ-ÖØ-Þ]"
_LOW = r"[a-zäöüßà-öø-ÿ'’\-]"
#: A capitalised name word, hyphenated parts included ("Saint-Michel", "Jean-Jaurès").
_NAME = rf"{_UP}[a-zäöüßà-öø-ÿ'’]*(?:-{_UP}?[a-zäöüßà-öø-ÿ'’]+)*"
_EN_STREET = re.compile(
    rf"(?<![\w/])\d{{1,5}}[A-Za-z]?,? (?:{_UP}{_LOW}+ ){{1,3}}"
    r"(?:Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Lane|Ln\.?|Drive|Dr\.?|Close|Way|Place|Pl\.?|"
    r"Court|Ct\.?|Boulevard|Blvd\.?|Terrace|Crescent|Square|Gardens|Grove|Row|Mews|Parkway)"
    r"(?![\w])"
)
_DE_STREET = re.compile(
    rf"(?<![\w])(?:{_UP}{_LOW}+[\- ])?{_UP}{_LOW}*"
    r"(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee|steig|pfad)"
    r" \d{1,4}(?: ?[a-z])?(?![\w])"
)
_FR_STREET = re.compile(
    r"(?<![\w])\d{1,4}(?: ?(?:bis|ter))?,? (?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|"
    r"impasse|quai|route|cours|square|passage|esplanade) (?:(?:de|du|des|la|le|l'|d')\s?)*"
    rf"{_NAME}(?: (?:de |du |des |la |le |l'|d')*{_NAME}){{0,4}}"
)
_ES_STREET = re.compile(
    r"(?<![\w])(?:Calle|C/|Avenida|Avda\.|Av\.|Plaza|Pza\.|Paseo|Camino|Carrera|Ronda|Travesía|"
    r"Rúa|Carrer|Via|Vía) (?:(?:de|del|la|las|los|el) )*"
    rf"{_NAME}(?: (?:de |del |la |las |los |el )*{_NAME}){{0,4}},? "
    r"(?:n[º°o]\.? ?)?\d{1,4}(?![\w])"
)
_STREETS = (_EN_STREET, _DE_STREET, _FR_STREET, _ES_STREET)

_MONTHS = (
    r"Jan(?:uary|uar)?|Feb(?:ruary|ruar)?|M[aä]r(?:ch|z)?|Apr(?:il)?|May|Mai|Jun[ei]?|Jul[iy]?|"
    r"Aug(?:ust)?|Sep(?:t(?:ember)?)?|O[ck]t(?:ober)?|Nov(?:ember)?|De[cz](?:ember)?|"
    r"janvier|février|mars|avril|juin|juillet|août|septembre|octobre|novembre|décembre|"
    r"enero|febrero|marzo|abril|mayo|junio|julio|agosto|se?ptiembre|octubre|noviembre|diciembre"
)
_DATE = re.compile(
    r"(?<![\w./\-])(?:\d{1,2}[./\-]\d{1,2}[./\-](?:19|20)?\d{2}|(?:19|20)\d{2}-\d{2}-\d{2}|"
    rf"\d{{1,2}}(?:\.|er|st|nd|rd|th)? (?:de )?(?:{_MONTHS})\.?,? (?:de )?(?:19|20)\d{{2}}|"
    rf"(?:{_MONTHS}) \d{{1,2}}(?:st|nd|rd|th)?,? (?:19|20)\d{{2}})(?![\w])",
    re.IGNORECASE,
)
_BIRTH = re.compile(
    r"(?i)\bborn\b|\bbirth|\bd\.?o\.?b\b|geboren|\bgeb\.|geburts|\bnée?\b|naissance|"
    r"\bnaci(?:ó|o|do|da|miento)\b|\bnacimiento"
)
_BIRTH_AFTER = re.compile(r"(?i)^[^.\n]*\bgeboren\b")
#: How far before a date the birth word may stand.
BIRTH_CONTEXT_CHARS = 32


class AddressDetector:
    """Street addresses and dates of birth; see the module docstring."""

    def detect(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        for pattern in _STREETS:
            for m in pattern.finditer(text):
                found.append(Entity("street_address", m.start(), m.end(), 0.75, DATA_CLASS))
        for m in _DATE.finditer(text):
            before = text[max(0, m.start() - BIRTH_CONTEXT_CHARS) : m.start()]
            # German puts the participle last: "am 4. März 1981 in Hamburg geboren".
            after = text[m.end() : m.end() + BIRTH_CONTEXT_CHARS]
            if _BIRTH.search(before) or _BIRTH_AFTER.search(after):
                found.append(Entity("date_of_birth", m.start(), m.end(), 0.85, DATA_CLASS))
        return found
