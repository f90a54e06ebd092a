"""Secrets: provider API keys, tokens, private keys and passwords in URLs.

The rules follow detect-secrets' plugins (AWS, GitHub, GitLab, Slack, Stripe, JWT, private key,
basic-auth URL) plus keys it lacks (Anthropic, current OpenAI formats, Google, Hugging Face,
npm, PyPI, SendGrid). They are compiled into one alternation so a text is scanned once, not
once per rule: detect-secrets' own line scanner runs every plugin over every line and keeps
global plugin settings, which is both slower (see ``bench/guard_latency.py``) and shared state
we do not want on the request path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from wardgate.guards.base import Guard, GuardEnvironment, ScanContext, Verdict
from wardgate.guards.entities import DataGuardOptions, Entity, data_verdict

if TYPE_CHECKING:
    from wardgate.guards.config import GuardSpec

DATA_CLASS = "secrets"

_B = r"(?<![A-Za-z0-9_\-])"  # left boundary: not inside a longer token
_E = r"(?![A-Za-z0-9_\-])"  # right boundary

#: kind -> (regex, score). A group named ``v`` narrows the span to the secret itself
#: (e.g. only the password of ``postgres://user:password@host``).
SECRET_RULES: dict[str, tuple[str, float]] = {
    "anthropic_key": (_B + r"sk-ant-[A-Za-z0-9_\-]{20,}" + _E, 1.0),
    "openai_key": (_B + r"sk-(?!ant-)(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{20,}" + _E, 0.95),
    "aws_access_key_id": (_B + r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}" + _E, 1.0),
    "aws_secret_key": (
        r"(?i:aws.{0,20}?(?:secret|private).{0,20}?)[\"'=:\s]+(?P<v_aws>[A-Za-z0-9/+]{40})"
        r"(?![A-Za-z0-9/+])",
        0.9,
    ),
    "github_token": (_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})" + _E, 1.0),
    "gitlab_token": (_B + r"(?:glpat|gldt|glrt|glsoat)-[A-Za-z0-9_\-]{20,50}" + _E, 1.0),
    "slack_token": (_B + r"(?:xox[abposr]-(?:\d+-)+[A-Za-z0-9\-]+|xapp-\d-[A-Za-z0-9\-]+)", 1.0),
    "slack_webhook": (
        r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+",
        1.0,
    ),
    "stripe_key": (_B + r"(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}" + _E, 1.0),
    "google_api_key": (_B + r"AIza[0-9A-Za-z_\-]{35}" + _E, 1.0),
    "huggingface_token": (_B + r"hf_[A-Za-z0-9]{30,}" + _E, 0.95),
    "npm_token": (_B + r"npm_[A-Za-z0-9]{36}" + _E, 1.0),
    "pypi_token": (_B + r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}" + _E, 1.0),
    "sendgrid_key": (_B + r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}" + _E, 1.0),
    "jwt": (_B + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*", 0.95),
    "private_key": (
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]{0,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?",
        1.0,
    ),
    "password_in_url": (
        r"\b[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/?#@\"'<>]{1,128}:(?P<v_url>[^\s/?#@\"'<>]{1,128})@",
        0.95,
    ),
    "keyword_secret": (
        r"(?i:\b(?:password|passwd|pwd|secret|api[_\-]?key|access[_\-]?token|auth[_\-]?token|"
        r"client[_\-]?secret)\b)[\"']?\s*[:=]\s*[\"']?"
        r"(?P<v_kw>(?=[^\s\"'`,;]*[0-9!@#$%^&*_\-+])(?=[^\s\"'`,;]*[A-Za-z])[^\s\"'`,;]{8,128})",
        0.7,
    ),
}


class SecretDetector:
    """All :data:`SECRET_RULES` in one compiled alternation."""

    def __init__(self, kinds: list[str] | None = None) -> None:
        chosen = {k: v for k, v in SECRET_RULES.items() if kinds is None or k in kinds}
        self._scores = {k: score for k, (_, score) in chosen.items()}
        self._pattern = re.compile(
            "|".join(f"(?P<{kind}>{regex})" for kind, (regex, _) in chosen.items())
        )

    def detect(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        for match in self._pattern.finditer(text):
            kind = match.lastgroup
            if kind is None or kind.startswith("v_"):
                kind = next(k for k in self._scores if match.group(k) is not None)
            start, end = match.span(kind)
            narrowed = [g for g, v in match.groupdict().items() if g.startswith("v_") and v]
            if narrowed:
                start, end = match.span(narrowed[0])
            found.append(Entity(kind, start, end, self._scores[kind], DATA_CLASS))
        return found


class SecretsGuard(Guard):
    """Finds credentials; on input it tags the request ``secrets`` (routing keeps it in-house)."""

    type_name = "secrets"
    block_code = "secret_detected"
    Options: ClassVar[type[DataGuardOptions]] = DataGuardOptions

    def __init__(self, spec: GuardSpec, env: GuardEnvironment | None = None) -> None:
        super().__init__(spec, env)
        self.detector = SecretDetector(self.options.kinds)

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        return data_verdict(text, self.detector.detect(text), self.options, ctx, self.block_code)
