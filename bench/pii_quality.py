"""Recall and precision of the ``pii`` guard on a generated, labelled corpus.

    PYTHONPATH=src .venv/bin/python bench/pii_quality.py [--per-kind 400] [--seed 7]
    PYTHONPATH=src .venv/bin/python bench/pii_quality.py --set heldout_v2|heldout|dev

``--set heldout_v2|heldout|dev`` scores the hand-written sets instead, per kind and language
(``bench/pii_handwritten.py``).

The corpus is generated in code from a fixed seed, so every run sees the same texts: payment
cards (Visa, MasterCard incl. 2-series, Amex, Discover; Luhn-valid; spaces, dashes or compact),
IBANs of 18 countries (valid mod-97; grouped in fours or compact), US SSNs (SSA allocation
rules; dashes or spaces), e-mail addresses (dots, plus-addressing, sub-domains, new TLDs),
phone numbers (E.164, international with spaces/dashes/``00``, and national shapes for the
guard's default regions US/GB/DE/FR) and IPv4/IPv6 addresses. Each is embedded in chat
messages, e-mails, tickets, log lines, JSON and multi-line text, beside hard negatives that
must not be flagged: Luhn-invalid 16-digit numbers, order/invoice/tracking numbers, ISBNs,
timestamps, dates, version strings, UUIDs, hashes, prices, mod-97-invalid IBAN look-alikes,
invalid SSNs (000-, 666-, 9xx-, group 00, serial 0000), MAC addresses and arithmetic.

Scoring is span-level: a true span is found when a finding of the same kind overlaps it; a
finding is correct when it overlaps a true span of its kind. Intervals are Wilson 95%.

Labelling decisions (documented in docs/guards.md):

* A dotted quad whose parts are all <= 255 *is* a valid IPv4 address; text cannot tell
  ``version 1.2.3.4`` from a host, so such versions are neither positives nor negatives and are
  not generated. Versions with a part > 255, three or five parts are negatives.
* National phone numbers are positives only for the configured regions (the default
  US/GB/DE/FR); other countries appear in international form. Unseparated 9-digit SSNs are not
  generated (indistinguishable from any other 9-digit number).
"""

from __future__ import annotations

import argparse
import math
import random
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import phonenumbers

from wardgate.guards import GuardSpec, ScanContext
from wardgate.guards.pii import PiiGuard

KINDS = ("credit_card", "iban", "us_ssn", "email", "phone", "ip_address")
TARGET_RECALL = {
    "credit_card": 0.98,
    "iban": 0.98,
    "us_ssn": 0.98,
    "email": 0.95,
    "phone": 0.95,
    "ip_address": 0.95,
}
TARGET_PRECISION = 0.95


@dataclass(frozen=True, slots=True)
class Span:
    """``text[start:end]`` is a true ``kind`` (or, for negatives, a look-alike ``kind``)."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    positives: tuple[Span, ...]
    negatives: tuple[Span, ...]


@dataclass(slots=True)
class KindScore:
    """Counts for one kind; recall over true spans, precision over findings."""

    true_spans: int = 0
    found: int = 0
    findings: int = 0
    correct: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval; sane at 0 and n, unlike the normal approximation."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# --- positives -------------------------------------------------------------------------------


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, char in enumerate(reversed(candidate)):
            value = int(char)
            if i % 2:
                value = value * 2 - 9 if value > 4 else value * 2
            total += value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable: one check digit always fits")


def _group(digits: str, sizes: Sequence[int], sep: str) -> str:
    parts, i = [], 0
    for size in sizes:
        parts.append(digits[i : i + size])
        i += size
    if i < len(digits):
        parts.append(digits[i:])
    return sep.join(p for p in parts if p)


def make_card(rng: random.Random) -> str:
    network = rng.choice(("visa", "mc", "mc2", "amex", "discover", "discover65"))
    prefix, length = {
        "visa": ("4", 16),
        "mc": (str(rng.randint(51, 55)), 16),
        "mc2": (str(rng.randint(2221, 2720)), 16),
        "amex": (rng.choice(("34", "37")), 15),
        "discover": ("6011", 16),
        "discover65": ("65", 16),
    }[network]
    digits = _luhn_complete(rng, prefix, length)
    sep = rng.choice((" ", "-", ""))
    sizes = (4, 6, 5) if length == 15 else (4, 4, 4, 4)
    return _group(digits, sizes, sep) if sep else digits


# Country: BBAN layout as (count, class) with class n=digit, a=upper letter, c=alphanumeric.
IBAN_LAYOUTS: dict[str, tuple[tuple[int, str], ...]] = {
    "DE": ((18, "n"),),
    "GB": ((4, "a"), (14, "n")),
    "FR": ((10, "n"), (11, "c"), (2, "n")),
    "ES": ((20, "n"),),
    "IT": ((1, "a"), (10, "n"), (12, "c")),
    "NL": ((4, "a"), (10, "n")),
    "CH": ((5, "n"), (12, "c")),
    "PL": ((24, "n"),),
    "BE": ((12, "n"),),
    "AT": ((16, "n"),),
    "IE": ((4, "a"), (14, "n")),
    "PT": ((21, "n"),),
    "SE": ((20, "n"),),
    "NO": ((11, "n"),),
    "DK": ((14, "n"),),
    "FI": ((14, "n"),),
    "LU": ((3, "n"), (13, "c")),
    "SA": ((2, "n"), (18, "c")),
}
_CLASSES = {
    "n": string.digits,
    "a": string.ascii_uppercase,
    "c": string.digits + string.ascii_uppercase,
}


def _mod97(text: str) -> int:
    return int("".join(str(int(c, 36)) for c in text)) % 97


def make_iban(rng: random.Random, *, valid: bool = True) -> str:
    country = rng.choice(sorted(IBAN_LAYOUTS))
    bban = "".join(
        rng.choice(_CLASSES[cls]) for count, cls in IBAN_LAYOUTS[country] for _ in range(count)
    )
    check = 98 - _mod97(bban + country + "00")
    if not valid:
        check = (check + rng.randint(1, 96)) % 97 + 2  # any other two-digit value: fails mod-97
        check = check if check != 98 - _mod97(bban + country + "00") else (check % 97) + 2
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def make_ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    sep = rng.choice(("-", "-", "-", " "))
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


_FIRST = ("jane", "omar", "li", "maria", "k", "dev", "sam", "aoife", "jurgen", "priya", "x")
_LAST = ("doe", "haddad", "wei", "garcia", "okafor", "smith", "nguyen", "oconnor", "muller")
_DOMAINS = (
    "example.com",
    "mail.example.co.uk",
    "corp.example.org",
    "example.io",
    "eu.example.dev",
    "example.technology",
    "uni-example.edu",
    "example.de",
    "sub.dept.example.fr",
    "example.app",
    "example.museum",
    "example-shop.store",
    "example.ai",
    "example.travel",
    "example.co.jp",
)


def make_email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = rng.choice(
        (
            f"{first}.{last}",
            f"{first}{last}{rng.randint(1, 99)}",
            f"{first}_{last}",
            f"{first}-{last}",
            f"{first}.{last}+{rng.choice(('work', 'news', 'billing', 'x1'))}",
            f"{first[0]}{last}",
            f"{first.capitalize()}.{last.capitalize()}",
            f"support{rng.randint(1, 9)}",
        )
    )
    return f"{local}@{rng.choice(_DOMAINS)}"


NATIONAL_REGIONS = ("US", "GB", "DE", "FR")
INTERNATIONAL_REGIONS = (
    "US",
    "GB",
    "DE",
    "FR",
    "IN",
    "ES",
    "IT",
    "NL",
    "CH",
    "JP",
    "BR",
    "AU",
    "CA",
    "MX",
    "SG",
    "ZA",
    "PL",
    "SE",
    "IE",
    "AT",
)


def _random_valid_number(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    for _ in range(200):
        example = phonenumbers.example_number_for_type(region, rng.choice(kinds))
        if example is None:
            continue
        national = str(example.national_number)
        keep = max(2, len(national) - rng.randint(3, 6))
        tail = "".join(rng.choice(string.digits) for _ in range(len(national) - keep))
        number = phonenumbers.PhoneNumber(
            country_code=example.country_code, national_number=int(national[:keep] + tail)
        )
        if phonenumbers.is_valid_number(number):
            return number
    raise AssertionError(f"no valid number generated for {region}")


def make_phone(rng: random.Random) -> str:
    fmt = phonenumbers.PhoneNumberFormat
    if rng.random() < 0.45:
        region = rng.choice(NATIONAL_REGIONS)
        number = _random_valid_number(rng, region)
        national = phonenumbers.format_number(number, fmt.NATIONAL)
        if region == "US":
            digits = str(number.national_number)
            return rng.choice(
                (
                    national,
                    f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                    f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
                    f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}",
                    f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                    f"+1.{digits[:3]}.{digits[3:6]}.{digits[6:]}",
                )
            )
        if region == "FR" and rng.random() < 0.4:
            return national.replace(" ", ".")
        return national
    region = rng.choice(INTERNATIONAL_REGIONS)
    number = _random_valid_number(rng, region)
    intl = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    return rng.choice(
        (
            intl,
            phonenumbers.format_number(number, fmt.E164),
            intl.replace(" ", "-"),
            "00" + intl[1:],
            # "+44 (0)20 7946 0958": the trunk prefix in brackets, common in UK/DE signatures
            intl.replace(" ", " (0)", 1) if region in ("GB", "DE", "AT", "CH") else intl,
        )
    )


def make_ip(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        first = rng.choice((10, 172, 192, rng.randint(1, 223)))
        return ".".join(str(p) for p in (first, *(rng.randint(0, 255) for _ in range(3))))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if roll < 0.7:
        return ":".join(groups)
    if roll < 0.9:
        return f"2001:db8::{groups[6]}:{groups[7]}"
    return f"fe80::{groups[5]}:{groups[6]}:{groups[7]}".upper()


MAKERS: dict[str, Callable[[random.Random], str]] = {
    "credit_card": make_card,
    "iban": make_iban,
    "us_ssn": make_ssn,
    "email": make_email,
    "phone": make_phone,
    "ip_address": make_ip,
}

# --- hard negatives --------------------------------------------------------------------------


def _bad_luhn(rng: random.Random) -> str:
    good = _luhn_complete(rng, "4", 16)
    bad = good[:-1] + str((int(good[-1]) + rng.randint(1, 9)) % 10)
    return _group(bad, (4, 4, 4, 4), rng.choice((" ", "-", "")))


def _bad_ssn(rng: random.Random) -> str:
    area, group = f"{rng.randint(1, 899):03d}", f"{rng.randint(1, 99):02d}"
    serial = f"{rng.randint(1, 9999):04d}"
    broken = rng.choice(("area000", "area666", "area9xx", "group00", "serial0000"))
    if broken == "area000":
        area = "000"
    elif broken == "area666":
        area = "666"
    elif broken == "area9xx":
        area = f"9{rng.randint(0, 99):02d}"
    elif broken == "group00":
        group = "00"
    else:
        serial = "0000"
    return f"{area}-{group}-{serial}"


def _version(rng: random.Random) -> str:
    return rng.choice(
        (
            f"{rng.randint(0, 20)}.{rng.randint(0, 40)}.{rng.randint(0, 300)}",
            f"v{rng.randint(1, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}",
            f"10.0.{rng.randint(10240, 22631)}.{rng.randint(256, 4000)}",
            f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}."
            f"{rng.randint(0, 9)}",
        )
    )


def _uuid(rng: random.Random) -> str:
    h = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


NEGATIVE_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "luhn_invalid_16": _bad_luhn,
    "order_number": lambda r: r.choice(
        (f"ORD-{r.randint(2019, 2026)}-{r.randint(0, 999999):06d}", f"#{r.randint(10**7, 10**8)}")
    ),
    "invoice_number": lambda r: f"INV-{r.randint(2019, 2026)}-{r.randint(0, 99999):05d}",
    "tracking_number": lambda r: r.choice(
        (
            "1Z" + "".join(r.choice(string.digits + "AB") for _ in range(16)),
            "".join(r.choice(string.digits) for _ in range(12)),
        )
    ),
    "isbn": lambda r: (
        f"978-{r.randint(0, 9)}-{r.randint(10, 99)}-{r.randint(100000, 999999)}-{r.randint(0, 9)}"
    ),
    "timestamp": lambda r: r.choice(
        (
            f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
            f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
            str(r.randint(1_600_000_000, 1_800_000_000)),
            str(r.randint(1_600_000_000_000, 1_800_000_000_000)),
            f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}."
            f"{r.randint(0, 999):03d}",
        )
    ),
    "date": lambda r: r.choice(
        (
            f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/{r.randint(1990, 2030)}",
            f"{r.randint(1990, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            f"{r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{r.randint(1990, 2030)}",
        )
    ),
    "version": _version,
    "uuid": _uuid,
    "hex_hash": lambda r: "".join(r.choice("0123456789abcdef") for _ in range(r.choice((40, 64)))),
    "price": lambda r: r.choice(
        (
            f"${r.randint(1, 99)},{r.randint(0, 999):03d}.{r.randint(0, 99):02d}",
            f"EUR {r.randint(1, 999)}.{r.randint(0, 999):03d},{r.randint(0, 99):02d}",
            f"{r.randint(1, 9999)}.{r.randint(0, 99):02d} USD",
        )
    ),
    "iban_bad_check": lambda r: make_iban(r, valid=False),
    "ssn_invalid": _bad_ssn,
    "mac_address": lambda r: ":".join(f"{r.randint(0, 255):02X}" for _ in range(6)),
    "math": lambda r: r.choice(
        (
            f"{r.randint(10, 999)} * ({r.randint(10, 99)} + {r.randint(10, 99)}) = "
            f"{r.randint(1000, 99999)}",
            f"{r.randint(100, 999)} - {r.randint(10, 99)} - {r.randint(1000, 9999)} / 2",
            f"({r.randint(100, 999)} - {r.randint(100, 999)}) * {r.randint(1000, 9999)}",
        )
    ),
}

# --- embedding -------------------------------------------------------------------------------

LEADS: dict[str, tuple[str, ...]] = {
    "credit_card": (
        "card {x}",
        "my Visa is {x}",
        "cc: {x}",
        "charged to {x} yesterday",
        "{x}",
        "card number {x}, exp 09/27",
    ),
    "iban": ("IBAN {x}", "please wire to {x}", "account: {x}", "{x}", "IBAN: {x} BIC DEUTDEFF"),
    "us_ssn": ("SSN {x}", "social security number {x}", "ssn: {x}", "{x}", "SSN is {x}."),
    "email": ("mail {x}", "<{x}>", "mailto:{x}", "contact {x}.", "{x}", "Reply-To: Dana <{x}>"),
    "phone": (
        "call {x}",
        "Tel: {x}",
        "reach her on {x}",
        "{x}",
        "mobile {x}.",
        "phone: ({x})",
        "tel:{x}",
        "Fax {x}",
    ),
    "ip_address": (
        "from {x}",
        "host={x}",
        "client {x} connected",
        "{x}",
        "ip: {x}:8443",
        "peer [{x}]",
        "http://{x}/status",
        "X-Forwarded-For: {x}",
    ),
    "negative": ("ref {x}", "{x}", "id={x}", "see {x}.", "value: {x}"),
}
CONTEXTS = (
    "{s}",
    "hey, quick one - {s} thanks!",
    "Hi team,\n\nThe customer wrote in about their account. {s}\n\nBest,\nRiley",
    "[TICKET-8841] Priority: high\nSummary: billing dispute\nDetails: {s}\nAssignee: ops",
    "2024-06-01 12:00:03,114 INFO worker-3 request handled {s} latency_ms=42",
    '{"event": "update", "note": "{s}", "retries": 3}',
    "Notes from the call:\n- {s}\n- follow up next week",
    "Can you summarise this for me? {s} I need it by Friday.",
    "| field | value |\n|---|---|\n| detail | {s} |",
)


def _phrase(rng: random.Random, lead_kind: str, value: str) -> tuple[str, int]:
    lead = rng.choice(LEADS[lead_kind])
    if ":" in value and lead.endswith("}:8443"):
        lead = "ip: [{x}]:8443"  # an IPv6 address with a port is only unambiguous in brackets
    if ":" in value and lead.startswith("http://"):
        lead = "http://[{x}]/status"
    before = lead[: lead.index("{x}")]
    return before + value + lead[lead.index("{x}") + 3 :], len(before)


def build_corpus(per_kind: int = 400, negatives: int = 2000, seed: int = 7) -> list[Sample]:
    """Fixed-seed labelled samples: ``per_kind`` positives per kind plus hard negatives."""
    rng = random.Random(seed)
    items: list[tuple[bool, str, str]] = []
    for kind, make in MAKERS.items():
        items += [(True, kind, make(rng)) for _ in range(per_kind)]
    neg_names = sorted(NEGATIVE_MAKERS)
    for i in range(negatives):
        name = neg_names[i % len(neg_names)]
        items.append((False, name, NEGATIVE_MAKERS[name](rng)))
    rng.shuffle(items)
    samples: list[Sample] = []
    i = 0
    while i < len(items):
        batch = items[i : i + rng.randint(1, 3)]
        i += len(batch)
        context = rng.choice(CONTEXTS)
        head, tail = context.split("{s}")
        text = head
        positives: list[Span] = []
        negs: list[Span] = []
        for n, (positive, kind, value) in enumerate(batch):
            if n:
                text += rng.choice((" and ", "; ", ", ", "\n", " / "))
            phrase, offset = _phrase(rng, kind if positive else "negative", value)
            span = Span(kind, len(text) + offset, len(text) + offset + len(value))
            (positives if positive else negs).append(span)
            text += phrase
        samples.append(Sample(text + tail, tuple(positives), tuple(negs)))
    return samples


# --- scoring ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    """Per-kind scores, hard negatives hit per look-alike type, and scanning time."""

    kinds: dict[str, KindScore]
    negatives_hit: dict[str, list[int]]  # look-alike type -> [hit, total]
    seconds: float


def score(samples: Sequence[Sample], guard: PiiGuard) -> Report:
    """Scan every sample with ``guard`` (the public API) and count against the labels."""
    ctx = ScanContext(stage="input")
    scores = {kind: KindScore() for kind in KINDS}
    negatives_hit: dict[str, list[int]] = {name: [0, 0] for name in NEGATIVE_MAKERS}
    elapsed = 0.0
    for sample in samples:
        started = time.perf_counter()
        verdict = guard.scan(sample.text, ctx)
        elapsed += time.perf_counter() - started
        findings = [f for f in verdict.findings if f.kind in scores]
        for span in sample.positives:
            s = scores[span.kind]
            s.true_spans += 1
            if any(
                f.kind == span.kind and f.start < span.end and span.start < f.end for f in findings
            ):
                s.found += 1
            else:
                s.misses.append(sample.text[span.start : span.end])
        for n in sample.negatives:
            negatives_hit[n.kind][1] += 1
            if any(f.start < n.end and n.start < f.end for f in findings):
                negatives_hit[n.kind][0] += 1
        for f in findings:
            s = scores[f.kind]
            s.findings += 1
            if any(
                p.kind == f.kind and f.start < p.end and p.start < f.end for p in sample.positives
            ):
                s.correct += 1
            else:
                s.false_alarms.append(sample.text[f.start : f.end])
    return Report(scores, negatives_hit, elapsed)


def make_guard(engine: str = "regex") -> PiiGuard:
    return PiiGuard(GuardSpec(type="pii", options={"engine": engine, "action": "flag"}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-kind", type=int, default=400)
    parser.add_argument("--negatives", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engine", choices=("regex", "presidio"), default="regex")
    parser.add_argument("--show", type=int, default=5, help="misses/false alarms to print")
    parser.add_argument(
        "--set",
        choices=("generated", "heldout", "heldout_v2", "heldout_v3", "heldout_v4", "dev",
                 "names_dev", "distractors_val", "distractors_dev2", "names_check4",
                 "distractors_dev3"),
        default="generated",
        help="generated corpus (default), or a hand-written set (bench/pii_handwritten.py)",
    )
    args = parser.parse_args()
    if args.set != "generated":
        from pii_handwritten import report  # bench/ is on sys.path when run as a script

        report(args.set, args.show)
        return
    samples = build_corpus(args.per_kind, args.negatives, args.seed)
    guard = make_guard(args.engine)
    report = score(samples, guard)
    scores, elapsed = report.kinds, report.seconds
    chars = sum(len(s.text) for s in samples)
    print(f"engine={args.engine} seed={args.seed} samples={len(samples)} chars={chars:,}")
    print(
        f"{'kind':<12} {'recall':>7} {'95% CI':>15} {'target':>7} "
        f"{'precision':>9} {'95% CI':>15} {'n_pos':>6} {'n_det':>6}"
    )
    for kind in KINDS:
        s = scores[kind]
        rlo, rhi = wilson(s.found, s.true_spans)
        plo, phi = wilson(s.correct, s.findings)
        recall = s.found / s.true_spans if s.true_spans else 0.0
        precision = s.correct / s.findings if s.findings else 1.0
        ok = recall >= TARGET_RECALL[kind] and precision >= TARGET_PRECISION
        print(
            f"{kind:<12} {recall:>7.1%} {f'[{rlo:.1%}, {rhi:.1%}]':>15} "
            f"{TARGET_RECALL[kind]:>7.0%} {precision:>9.1%} {f'[{plo:.1%}, {phi:.1%}]':>15} "
            f"{s.true_spans:>6} {s.findings:>6} {'ok' if ok else 'BELOW TARGET'}"
        )
    print(
        f"scan time: {elapsed * 1000:.0f} ms total, "
        f"{elapsed * 1000 / (chars / 1000):.3f} ms per 1,000 chars"
    )
    hit = ", ".join(f"{name} {h}/{n}" for name, (h, n) in report.negatives_hit.items())
    print(f"hard negatives flagged (any kind): {hit}")
    for kind in KINDS:
        s = scores[kind]
        if s.misses[: args.show]:
            print(f"  {kind} misses: {s.misses[: args.show]}")
        if s.false_alarms[: args.show]:
            print(f"  {kind} false alarms: {s.false_alarms[: args.show]}")


if __name__ == "__main__":
    main()
