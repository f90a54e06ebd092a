"""Attacker-controlled input must not make a guard super-linear (ReDoS).

Each case is 200,000 characters shaped to hit one pattern's worst case; before the fixes, the
keyword-secret pattern took ~28 s on ``password=`` x 22,000 and the normaliser ~40 s on a long
alphanumeric run. The bound here is generous for a loaded CI machine; linear code needs well
under a tenth of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from wardgate.guards import GuardSpec, ScanContext
from wardgate.guards.normalise import variants
from wardgate.guards.pii import RegexPiiDetector
from wardgate.guards.secrets import SecretDetector
from wardgate.guards.unicode import InvisibleUnicodeGuard

N = 200_000
CASES = {
    "pem_headers": "-----BEGIN PRIVATE KEY-----," * (N // 28),
    "aws_spaces": ("aws secret" + " " * 1000) * (N // 1010),
    "sk_prefix": ("sk-" + "a" * 50 + " ") * (N // 54),
    "emails": ("a" * 60 + "@") * (N // 61),
    "digits": "1-" * (N // 2),
    "hexish": "0x" * (N // 2),
    "base64": "QUFB" * (N // 4),
    "keyword": "password=" * (N // 9),
    "zero_width": "a\u200b" * (N // 2),
}
CTX = ScanContext(stage="input")
_unicode = InvisibleUnicodeGuard(GuardSpec(type="invisible_unicode"))
DETECTORS: dict[str, Callable[[str], object]] = {
    "secrets": SecretDetector().detect,
    "pii": RegexPiiDetector(["US", "GB", "DE", "FR"]).detect,
    "normalise": variants,
    "invisible_unicode": lambda text: _unicode.scan(text, CTX),
}


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_linear_time_on_adversarial_input(detector: str) -> None:
    fn = DETECTORS[detector]
    for name, text in CASES.items():
        started = time.perf_counter()
        fn(text)
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, f"{detector} took {elapsed:.1f} s on {name}"
