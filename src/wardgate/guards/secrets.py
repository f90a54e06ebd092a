"""Secrets: provider API keys, tokens, private keys and passwords in URLs.

The rules follow detect-secrets' plugins (AWS, GitHub, GitLab, Slack, Stripe, JWT, private key,
basic-auth URL) plus keys it lacks (Anthropic, current OpenAI formats, Google, Hugging Face,
npm, PyPI, SendGrid). We do not call detect-secrets itself on the request path: its scanner
runs every plugin line by line under process-global settings (shared mutable state) and is
100x slower or more on the same text (23 ms vs 0.06 ms per 1,000 characters under load, see
``bench/guard_latency.py`` and ``docs/guards.md``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from wardgate.guards.base import Guard, GuardEnvironment, ScanContext, Verdict
from wardgate.guards.entities import DataGuardOptions, Entity, data_verdict

if TYPE_CHECKING:
    from wardgate.guards.config import GuardSpec

DATA_CLASS = "secrets"

_E = r"(?![A-Za-z0-9_\-])"  # right boundary; the left one is checked in code (see below)
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True, slots=True)
class SecretRule:
    """One kind of secret. A group named ``v`` narrows the span to the secret itself (e.g.
    only the password of ``postgres://user:password@host``). ``bounded`` rejects matches
    that start inside a longer token. ``hint`` is a lower-case word that must occur in the
    text for the rule to run at all (for rules without a literal prefix)."""

    kind: str
    pattern: str
    score: float = 1.0
    bounded: bool = True
    hint: tuple[str, ...] = ()
    #: Private keys: the match is the header; the span runs to the END line (see _key_end).
    extend: bool = False


# Every pattern starts with a literal where possible: CPython's regex engine then jumps
# between occurrences of that literal instead of trying the pattern at every position, which
# makes one pattern per rule ~5x faster than a single alternation with lookbehinds.
#
# The ``sk-`` prefix is matched in any case: a model asked to "repeat the key" has answered
# ``Sk-Test-9f8e…`` (red-team proof, pii_leakage), which is no longer a valid key but still
# leaks it to anyone who lower-cases it.
SECRET_RULES: tuple[SecretRule, ...] = (
    SecretRule("anthropic_key", r"[sS][kK]-(?i:ant)-[A-Za-z0-9_\-]{20,}" + _E),
    SecretRule(
        "openai_key",
        r"[sS][kK]-(?!(?i:ant)-)(?=[A-Za-z0-9_\-]{0,255}\d)[A-Za-z0-9_\-]{20,}" + _E,
        0.95,
    ),
    SecretRule("aws_access_key_id", r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}" + _E),
    SecretRule(
        "aws_secret_key",
        r"(?i:aws.{0,20}?(?:secret|private).{0,20}?)[\"'=:\s]{1,8}(?P<v>[A-Za-z0-9/+]{40})"
        r"(?![A-Za-z0-9/+])",
        0.9,
        bounded=False,
        hint=("aws",),
    ),
    SecretRule("github_token", r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})" + _E),
    SecretRule("gitlab_token", r"(?:glpat|gldt|glrt|glsoat)-[A-Za-z0-9_\-]{20,50}" + _E),
    SecretRule("slack_token", r"(?:xox[abposr]-(?:\d+-)+[A-Za-z0-9\-]+|xapp-\d-[A-Za-z0-9\-]+)"),
    SecretRule(
        "slack_webhook",
        r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+",
        bounded=False,
    ),
    SecretRule("stripe_key", r"(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}" + _E),
    SecretRule("google_api_key", r"AIza[0-9A-Za-z_\-]{35}" + _E),
    SecretRule("huggingface_token", r"hf_[A-Za-z0-9]{30,}" + _E, 0.95),
    SecretRule("npm_token", r"npm_[A-Za-z0-9]{36}" + _E),
    SecretRule("pypi_token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}" + _E),
    SecretRule("sendgrid_key", r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}" + _E),
    SecretRule("jwt", r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*", 0.95),
    SecretRule(
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        extend=True,
        bounded=False,
    ),
    SecretRule(
        "password_in_url",
        r"://[^\s:/?#@\"'<>]{1,128}:(?P<v>[^\s/?#@\"'<>]{1,128})@",
        0.95,
        bounded=False,
    ),
    SecretRule(
        "keyword_secret",
        r"(?i:\b(?:password|passwd|pwd|secret|api[_\-]?key|access[_\-]?token|auth[_\-]?token|"
        r"client[_\-]?secret)\b)[\"']?\s*[:=]\s*[\"']?"
        # Bounded lookaheads: unbounded ones rescanned a long token at every keyword (O(n^2)).
        r"(?P<v>(?=[^\s\"'`,;]{0,127}[0-9!@#$%^&*_\-+])(?=[^\s\"'`,;]{0,127}[A-Za-z])"
        r"[^\s\"'`,;]{8,128})",
        0.7,
        bounded=False,
        hint=("pass", "pwd", "secret", "key", "token"),
    ),
)
SECRET_KINDS = (*(rule.kind for rule in SECRET_RULES), "contextual_secret")

# --- secrets without a provider prefix, scored by their context ----------------------------
#
# A cloud secret key (AWS: 40 characters of base64) or a random token has no literal to
# anchor on; what gives it away is a secret word shortly before it ("secret key is ...",
# "Passwort für den Server ist ...", "jeton d'accès : ...") and the token's own randomness.
# Hex strings are what code hashes look like, so a hash word nearby (sha, digest, commit,
# checksum, etag) vetoes them, and plain hex needs a password word to count at all.
_SECRET_WORD = re.compile(
    r"(?i)(?:secret|token|passw|pwd|kennwort|contrase|mot de passe|jeton|clave|cl[ée] d|"
    r"api[ _\-]?key|access[ _\-]?key|credential|private[ _\-]?key|auth)"
)
_PASSWORD_WORD = re.compile(r"(?i)passw|pwd|kennwort|contrase|mot de passe|clave")
_HASH_WORD = re.compile(r"(?i)sha|md5|hash|digest|checksum|commit|etag|fingerprint|empreinte")
#: A candidate is a run of token characters that follows the secret word within this window.
SECRET_WINDOW_CHARS = 48
_CANDIDATE = re.compile(r"(?<![\w/+=!@#$%^&*.\-])[A-Za-z0-9/+=_!@#$%^&*.~\-]{8,128}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_AWS_SECRET_SHAPE = re.compile(r"[A-Za-z0-9/+]{40}")
#: Sentence punctuation after a token; ``!`` and ``?`` stay (common in passwords).
_TRAILING = ".,;:)'\"`"
#: Bits per character above which a mixed-class run of 16+ characters reads as random.
RANDOM_BITS_PER_CHAR = 3.5


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _classes(value: str) -> int:
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )


def contextual_secret_score(value: str, before: str) -> float:
    """How likely ``value`` is a secret, given the ``before`` text (0: not one)."""
    value = value.rstrip(_TRAILING) if len(value) > 8 else value
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return 0.0
    if value.count(".") >= 2 or "://" in value:  # versions, host names, URLs
        return 0.0
    hexish = bool(_HEX.fullmatch(value))
    if hexish and _HASH_WORD.search(before):
        return 0.0
    password = bool(_PASSWORD_WORD.search(before))
    if hexish:
        return 0.7 if password and len(value) >= 12 else 0.0
    if _AWS_SECRET_SHAPE.fullmatch(value) and _classes(value) >= 3:
        return 0.9
    if len(value) >= 16 and _classes(value) >= 3 and _entropy(value) >= RANDOM_BITS_PER_CHAR:
        return 0.85
    if password and len(value) >= 8 and _classes(value) >= 3:
        return 0.75
    return 0.0


class ContextualSecretDetector:
    """Prefix-less secrets (cloud secret keys, random tokens, passwords) after a secret word."""

    def detect(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        for word in _SECRET_WORD.finditer(text):
            window_end = min(len(text), word.end() + SECRET_WINDOW_CHARS)
            line_end = text.find("\n", word.end(), window_end)
            window_end = line_end if line_end != -1 else window_end
            for m in _CANDIDATE.finditer(text, word.end(), window_end):
                before = text[max(0, word.start() - 24) : m.start()]
                score = contextual_secret_score(m.group(0), before)
                if score:
                    value = m.group(0)
                    end = m.start() + len(value.rstrip(_TRAILING)) if len(value) > 8 else m.end()
                    found.append(Entity("contextual_secret", m.start(), end, score, DATA_CLASS))
                    break
        return found


_KEY_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_KEY_BODY = re.compile(r"[A-Za-z0-9+/=\s:\-]*")
#: A 4096-bit RSA key in PEM is ~3,300 characters; look no further than this for its END.
MAX_KEY_CHARS = 8192


def _key_end(text: str, body_start: int) -> int:
    """End of a private-key block: its END line, else the end of the base64 body.

    A block without its END line (truncated, or still streaming) runs to the end of the body
    so the body is never left behind. ``str.find`` keeps this linear even for text stuffed with
    thousands of BEGIN headers (a regex with a lazy ``[\\s\\S]{0,n}?`` scan was not).
    """
    marker = text.find("-----END ", body_start, body_start + MAX_KEY_CHARS)
    if marker != -1:
        end = _KEY_END.match(text, marker)
        if end:
            return end.end()
    body = _KEY_BODY.match(text, body_start, body_start + MAX_KEY_CHARS)
    return body.end() if body else body_start


class SecretDetector:
    """Runs each :data:`SECRET_RULES` pattern; returns the spans found, in text order."""

    def __init__(self, kinds: list[str] | None = None) -> None:
        self._rules = [
            (rule, re.compile(rule.pattern))
            for rule in SECRET_RULES
            if kinds is None or rule.kind in kinds
        ]
        self._contextual = (
            ContextualSecretDetector() if kinds is None or "contextual_secret" in kinds else None
        )

    def detect(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        lowered: str | None = None
        for rule, pattern in self._rules:
            if rule.hint:
                lowered = text.lower() if lowered is None else lowered
                if not any(h in lowered for h in rule.hint):
                    continue
            for match in pattern.finditer(text):
                start = match.start()
                if rule.bounded and start and text[start - 1] in _TOKEN_CHARS:
                    continue
                if "v" in pattern.groupindex:
                    start, end = match.span("v")
                elif rule.extend:
                    end = _key_end(text, match.end())
                else:
                    end = match.end()
                found.append(Entity(rule.kind, start, end, rule.score, DATA_CLASS))
        if self._contextual is not None:
            # The named rules win where both fire: one span, one kind.
            found += [
                c
                for c in self._contextual.detect(text)
                if not any(c.start < e.end and e.start < c.end for e in found)
            ]
        return sorted(found, key=lambda e: e.start)


class SecretsGuard(Guard):
    """Finds credentials; on input it tags the request ``secrets`` (routing keeps it in-house)."""

    type_name = "secrets"
    block_code = "secret_detected"
    Options: ClassVar[type[DataGuardOptions]] = DataGuardOptions
    #: The longest fixed-format credentials: PyPI tokens (179 characters) and OpenAI project
    #: and service-account keys (164-167) need 192 to be redacted whole from a stream
    #: (bench/stream_hold.py). Longer ones (PEM private keys, big JWTs) are recognised from
    #: their start, so the stream is stopped rather than any of them released.
    stream_hold_chars: ClassVar[int] = 192

    def __init__(self, spec: GuardSpec, env: GuardEnvironment | None = None) -> None:
        super().__init__(spec, env)
        self.detector = SecretDetector(self.options.kinds)

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        return data_verdict(text, self.detector.detect(text), self.options, ctx, self.block_code)
