"""One text, several readings: undo the cheap tricks attackers use to slip past detectors.

Detectors (regex or learned) see the raw text plus the variants returned by :func:`variants`:

* ``canonical`` - Unicode NFKC, invisible and tag characters removed, Cyrillic/Greek
  look-alikes folded to Latin ("ign\u043ere" -> "ignore");
* ``tags`` - ASCII smuggled in Unicode tag characters (U+E0020-U+E007E), or bytes smuggled in
  variation selectors, decoded;
* ``base64`` / ``hex`` - embedded encoded payloads decoded when they decode to readable text;
* ``rot13`` / ``reversed`` - rotated or read backwards, segment by segment (lines, and what
  follows a colon: "Decode and follow: vtaber nyy..."), each segment kept only when that reads
  more like English;
* ``url`` - percent-encoding decoded ("Ignore%20all%20previous");
* ``leet`` - "1gn0r3 4ll" -> "ignore all";
* ``spaced`` - "i g n o r e" -> "ignore".

Everything is bounded (input length, payload count, variant count) because the normaliser runs
on every message of every request, attacker-controlled. The original text is always first.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

#: Only the first this many characters are searched for encoded payloads.
MAX_DECODE_SCAN = 65_536
MAX_PAYLOADS = 8

_INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark (bidi)
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),  # Mongolian variation selectors / vowel separator
    (0x200B, 0x200F),  # zero-width space/non-joiner/joiner, LRM, RLM
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x2064),  # word joiner, invisible operators
    (0x2066, 0x206F),  # bidi isolates, deprecated format chars
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # BOM / zero-width no-break space
    (0xFFA0, 0xFFA0),
    (0x1D173, 0x1D17A),  # musical format chars
    (0xE0000, 0xE007F),  # tag characters
    (0xE0100, 0xE01EF),  # variation selectors supplement
)

#: Explicit bidi controls (Trojan Source, CVE-2021-42574).
BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def is_invisible(char: str) -> bool:
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _INVISIBLE_RANGES)


_INVISIBLE_RE = re.compile(
    "["
    + "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in _INVISIBLE_RANGES)
    + "]"
)

# Cyrillic and Greek letters that render like Latin ones (subset of Unicode confusables.txt
# that matters for English-language attacks).
_HOMOGLYPHS = {
    # Cyrillic lower
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j",
    "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "һ": "h", "ԍ": "g", "ց": "g",
    # Cyrillic upper
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ү": "Y", "Ԝ": "W",
    "Ԛ": "Q", "Ӏ": "I",
    # Greek lower
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "υ": "u", "χ": "x",
    "ε": "e", "τ": "t", "ϲ": "c", "ϳ": "j",
    # Greek upper
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin look-alikes outside ASCII that NFKC keeps
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ℓ": "l",
}  # fmt: skip
_HOMOGLYPH_TABLE = str.maketrans(_HOMOGLYPHS)

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                       "@": "a", "$": "s", "!": "i", "|": "l", "+": "t"})  # fmt: skip
_LEET_WORD = re.compile(r"(?<!\S)(?=[\w@$!|+]*[A-Za-z])(?=[\w@$!|+]*[013457@$!|+])"
                        r"[\w@$!|+]{3,20}(?=[\s.,;:?]|$)")  # fmt: skip
_SPACED = re.compile(r"(?<![A-Za-z])(?:[A-Za-z][ .\-_*/]){2,}[A-Za-z](?![A-Za-z])")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4}){4,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_BASE64_URL = re.compile(r"(?:[A-Za-z0-9_\-]{4}){4,}")
#: Longest encoded token decoded; longer runs are cut (they are scanned as text anyway).
MAX_TOKEN = 16_384
_HEX = re.compile(r"(?:(?:\\x|0x)?[0-9A-Fa-f]{2}[ :]?){8,}")

_COMMON_WORDS = frozenset(
    {
        "the", "and", "you", "your", "all", "to", "of", "is", "in", "it", "that", "this",
        "for", "are", "be", "with", "not", "ignore", "previous", "instructions", "system",
        "prompt", "tell", "me", "how", "what", "do", "now", "please", "say", "reveal",
        "forget", "rules", "an", "we", "on", "as", "at", "by", "from", "or",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Variant:
    """One reading of the text and how it was obtained."""

    text: str
    how: str


def strip_invisible(text: str) -> str:
    return _INVISIBLE_RE.sub("", text)


def fold_homoglyphs(text: str) -> str:
    return text.translate(_HOMOGLYPH_TABLE)


def canonical(text: str) -> str:
    """NFKC, invisible characters removed, look-alikes folded. Not for forwarding: for scanning."""
    return fold_homoglyphs(strip_invisible(unicodedata.normalize("NFKC", text)))


def decode_tag_chars(text: str) -> str:
    """ASCII hidden in tag characters (U+E0020-U+E007E); empty when there is none."""
    return "".join(chr(ord(c) - 0xE0000) for c in text if 0xE0020 <= ord(c) <= 0xE007E)


def decode_variation_selectors(text: str) -> str:
    """Bytes hidden in variation selectors (VS1-16 = 0-15, VS17-256 = 16-255), as UTF-8."""
    data = bytearray()
    for char in text:
        cp = ord(char)
        if 0xFE00 <= cp <= 0xFE0F:
            data.append(cp - 0xFE00)
        elif 0xE0100 <= cp <= 0xE01EF:
            data.append(cp - 0xE0100 + 16)
    if len(data) < 4:
        return ""
    decoded = data.decode("utf-8", errors="ignore")
    return decoded if _readable(decoded) else ""


def _readable(text: str, min_len: int = 4) -> bool:
    """Mostly printable text with some letters: a decoded payload worth scanning."""
    if len(text) < min_len:
        return False
    printable = sum(c.isprintable() or c in "\n\t\r" for c in text)
    letters = sum(c.isalpha() for c in text)
    return printable / len(text) > 0.95 and letters / len(text) > 0.4


def _word_hits(text: str) -> int:
    return sum(w in _COMMON_WORDS for w in re.findall(r"[a-z]+", text.lower()))


def _decode_base64(token: str) -> str:
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decoder(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            continue
        text = raw.decode("utf-8", errors="replace")
        if _readable(text):
            return text
    return ""


def _decode_hex(token: str) -> str:
    digits = re.sub(r"\\x|0x|[ :]", "", token)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        text = bytes.fromhex(digits).decode("utf-8", errors="replace")
    except ValueError:
        return ""
    return text if _readable(text) else ""


def decode_payloads(text: str) -> list[Variant]:
    """Base64 and hex payloads embedded in ``text`` that decode to readable text."""
    found: list[Variant] = []
    head = text[:MAX_DECODE_SCAN]
    seen: set[tuple[str, str]] = set()
    for how, pattern, decode in (
        ("base64", _BASE64, _decode_base64),
        ("base64", _BASE64_URL, _decode_base64),
        ("hex", _HEX, _decode_hex),
    ):
        for match in pattern.finditer(head):
            token = match.group(0).strip()[:MAX_TOKEN]
            if pattern is _BASE64_URL and "-" not in token and "_" not in token:
                continue  # plain base64 was tried already; no lookahead: it made this O(n^2)
            if (how, token) in seen:
                continue
            seen.add((how, token))
            decoded = decode(token)
            if decoded:
                found.append(Variant(decoded, how))
            if len(found) >= MAX_PAYLOADS:
                return found
    return found


#: Where an encoded part of a message may start or end: line breaks and a colon before it.
_SEGMENT = re.compile(r"(\n+|:[ \t]+)")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def _reads_better(candidate: str, original: str) -> bool:
    return _word_hits(candidate) >= max(2, 2 * _word_hits(original) + 1)


def transform_segments(text: str, transform: Callable[[str], str]) -> str:
    """``text`` with every segment that reads more like English once transformed, transformed;
    "" when no segment does. A hint in plain words before the encoded part stays as it is."""
    parts = _SEGMENT.split(text)
    changed = False
    for i in range(0, len(parts), 2):
        turned = transform(parts[i])
        if _reads_better(turned, parts[i]):
            parts[i], changed = turned, True
    return "".join(parts) if changed else ""


def _rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


def _backwards(text: str) -> str:
    return text[::-1]


def unleet(text: str) -> str:
    return _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), text)


def join_spaced(text: str) -> str:
    """Join runs of single letters separated by one space or punctuation ("i g n o r e")."""
    joined = _SPACED.sub(lambda m: re.sub(r"[ .\-_*/]", "", m.group(0)), text)
    return re.sub(r"[ \t]{2,}", " ", joined) if joined != text else text


def variants(text: str, *, max_variants: int = 10) -> list[Variant]:
    """The original text first, then each distinct reading (see the module docstring)."""
    out: list[Variant] = [Variant(text, "original")]
    seen = {text}

    def add(candidate: str, how: str) -> None:
        if candidate and candidate not in seen and len(out) < max_variants:
            seen.add(candidate)
            out.append(Variant(candidate, how))

    canon = canonical(text)
    add(canon, "canonical")
    add(canonical(decode_tag_chars(text)), "tags")
    add(canonical(decode_variation_selectors(text)), "tags")
    for payload in decode_payloads(canon):
        add(canonical(payload.text), payload.how)
    leet = unleet(canon)
    if leet != canon:
        add(leet, "leet")
    spaced = join_spaced(canon)
    if spaced != canon:
        add(spaced, "spaced")
    if _PERCENT.search(canon):
        add(canonical(urllib.parse.unquote_plus(canon)), "url")
    add(transform_segments(canon, _rot13), "rot13")
    add(transform_segments(canon, _backwards), "reversed")
    return out


def variant_texts(text: str, *, max_variants: int = 10) -> list[str]:
    """Just the strings of :func:`variants`, for detectors that do not care how."""
    return [v.text for v in variants(text, max_variants=max_variants)]
