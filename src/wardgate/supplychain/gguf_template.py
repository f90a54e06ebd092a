"""Audit the Jinja chat templates a GGUF file carries.

Why: llama.cpp-based servers render ``tokenizer.chat_template`` on every request. A poisoned
template is a backdoor that no weight scan sees: it can inject hidden instructions into every
prompt, switch behaviour on trigger words in the user's message, exfiltrate through URLs, or
(in Python renderers such as ``llama-cpp-python`` and transformers) escape Jinja's sandbox through
``__globals__`` / ``lipsum`` / ``cycler`` style gadgets (CVE-2024-34359 "Llama Drama").

The audit parses the template (never renders it) and walks the AST, so obfuscation through
whitespace or string layout does not matter; it also compares with a pinned digest when one is
given.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from jinja2 import Environment, TemplateSyntaxError, nodes

from wardgate.supplychain.findings import Finding, Severity

#: Jinja globals that are textbook sandbox-escape primitives (``lipsum.__globals__`` ...).
_GADGET_NAMES = frozenset({"lipsum", "cycler", "joiner", "self", "config", "request", "url_for"})
#: Attribute or method names that only an exploit needs in a chat template.
_SUSPICIOUS_ATTRS = frozenset(
    {
        "mro",
        "subclasses",
        "globals",
        "builtins",
        "import_module",
        "popen",
        "system",
        "eval",
        "exec",
        "open",
        "read",
        "getattr",
        "func_globals",
        "f_globals",
        "gi_frame",
        "cr_frame",
        "load_module",
    }
)
_CONTENT_KEYS = frozenset({"content", "text"})
_URL = re.compile(r"(?i)\b(?:https?|ftp|file|data|javascript)://|\bwww\.[a-z0-9-]+\.[a-z]{2,}")
_INSTRUCTION = re.compile(
    r"(?i)\b(ignore (?:all |any )?(?:previous|prior|above)|disregard|do not (?:tell|reveal|mention)"
    r"|don't (?:tell|reveal|mention)|never (?:tell|reveal|mention)|secret(?:ly)?|password"
    r"|api[ _-]?key|exfiltrat|send (?:the|all|this)|include (?:this|the following) link"
    r"|system prompt|override|jailbreak|you must always|always (?:answer|respond|include|recommend)"
    r"|covert|hidden instruction)"
)


@dataclass(frozen=True)
class TemplateAudit:
    name: str
    sha256: str
    findings: list[Finding]


def template_digest(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _refers_to_content(node: nodes.Node) -> bool:
    for sub in _walk(node):
        if isinstance(sub, nodes.Getattr) and sub.attr in _CONTENT_KEYS:
            return True
        if (
            isinstance(sub, nodes.Getitem)
            and isinstance(sub.arg, nodes.Const)
            and sub.arg.value in _CONTENT_KEYS
        ):
            return True
    return False


def _has_string_const(node: nodes.Node) -> bool:
    return any(
        isinstance(sub, nodes.Const) and isinstance(sub.value, str) and sub.value.strip()
        for sub in _walk(node)
    )


def _content_condition(test: nodes.Node) -> bool:
    """A test that compares message content with a literal: a trigger word."""
    for sub in _walk(test):
        if isinstance(sub, nodes.Compare) and _refers_to_content(sub) and _has_string_const(sub):
            return True
        if (
            isinstance(sub, nodes.Call)
            and isinstance(sub.node, nodes.Getattr)
            and sub.node.attr
            in {"startswith", "endswith", "find", "count", "index", "__contains__"}
            and _refers_to_content(sub.node.node)
        ):
            return True
        if (
            isinstance(sub, nodes.Test)
            and sub.name in {"in", "sameas", "eq", "equalto"}
            and _refers_to_content(sub)
        ):
            return True
    return False


def _invisible(text: str) -> list[str]:
    return sorted(
        {
            f"U+{ord(ch):04X}"
            for ch in text
            if unicodedata.category(ch) == "Cf" or 0xE0000 <= ord(ch) <= 0xE007F
        }
    )


def audit_template(
    template: str, *, name: str = "default", location: str = "", pinned_sha256: str | None = None
) -> TemplateAudit:
    """Findings for one template; never renders it."""
    where = f"{location}#chat_template[{name}]"
    findings: list[Finding] = []
    digest = template_digest(template)

    def flag(severity: Severity, code: str, message: str) -> None:
        findings.append(Finding(severity, code, message, where))

    if pinned_sha256 is not None and not hmac.compare_digest(digest, pinned_sha256.lower()):
        flag(
            Severity.HIGH,
            "template.digest_mismatch",
            f"chat template sha256 {digest[:16]}… differs from the pinned known-good digest",
        )
    hidden = _invisible(template)
    if hidden:
        flag(
            Severity.HIGH,
            "template.invisible_characters",
            f"invisible Unicode characters in the template: {', '.join(hidden[:8])}",
        )
    try:
        tree = Environment(autoescape=False).parse(template)  # noqa: S701 - parsed, not rendered
    except TemplateSyntaxError as exc:
        flag(Severity.MEDIUM, "template.syntax_error", f"template does not parse: {exc.message}")
        return TemplateAudit(name, digest, findings)

    seen: set[tuple[str, str]] = set()

    def once(severity: Severity, code: str, message: str) -> None:
        if (code, message) not in seen:
            seen.add((code, message))
            flag(severity, code, message)

    for node in _walk(tree):
        if isinstance(node, nodes.Getattr):
            if node.attr.startswith("_"):
                once(Severity.CRITICAL, "template.dunder_access", f"attribute access .{node.attr}")
            elif node.attr in _SUSPICIOUS_ATTRS:
                once(Severity.HIGH, "template.suspicious_attribute", f"attribute .{node.attr}")
        elif isinstance(node, nodes.Getitem):
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if isinstance(key, str) and key.startswith("_"):
                once(Severity.CRITICAL, "template.dunder_access", f"item access [{key!r}]")
        elif isinstance(node, nodes.Name):
            if node.name in _GADGET_NAMES:
                once(
                    Severity.HIGH,
                    "template.gadget_global",
                    f"uses the Jinja global '{node.name}', a known sandbox-escape primitive",
                )
        elif isinstance(node, nodes.Filter):
            if node.name in {"attr", "format", "xmlattr"} and any(
                isinstance(sub, nodes.Const) and isinstance(sub.value, str) and "_" in sub.value
                for sub in _walk(node)
            ):
                once(
                    Severity.CRITICAL,
                    "template.attr_filter",
                    f"'|{node.name}' filter used to reach an underscore name",
                )
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            if "__" in node.value:
                once(
                    Severity.HIGH,
                    "template.dunder_string",
                    f"string literal contains a dunder name: {node.value[:40]!r}",
                )
        elif isinstance(node, nodes.Assign | nodes.AssignBlock):
            for sub in _walk(node.target):
                if isinstance(sub, nodes.NSRef) and sub.attr.startswith("_"):
                    once(
                        Severity.CRITICAL,
                        "template.namespace_abuse",
                        f"namespace attribute {sub.attr!r} assigned",
                    )
        if isinstance(node, nodes.If | nodes.CondExpr) and _content_condition(node.test):
            once(
                Severity.MEDIUM,
                "template.content_conditional",
                "the template branches on what the message content says (a trigger-word backdoor)",
            )
        if (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Name)
            and node.node.name == "namespace"
            and any(kw.key.startswith("_") for kw in node.kwargs)
        ):
            once(Severity.CRITICAL, "template.namespace_abuse", "namespace() with _ keys")

    literal = "\n".join(
        [sub.data for sub in _walk(tree) if isinstance(sub, nodes.TemplateData)]
        + [
            sub.value
            for sub in _walk(tree)
            if isinstance(sub, nodes.Const) and isinstance(sub.value, str)
        ]
    )
    for match in _URL.finditer(literal):
        once(Severity.MEDIUM, "template.url", f"URL in template text: {match.group(0)[:60]}")
    for match in _INSTRUCTION.finditer(literal):
        once(
            Severity.HIGH,
            "template.hidden_instruction",
            f"instruction-like text in the template: {match.group(0)!r}",
        )
    return TemplateAudit(name, digest, findings)


def audit_templates(
    templates: dict[str, str], *, location: str = "", pinned: dict[str, str] | None = None
) -> list[TemplateAudit]:
    """Audit every named variant; ``pinned`` maps variant name to its known-good sha256."""
    pinned = pinned or {}
    return [
        audit_template(text, name=name, location=location, pinned_sha256=pinned.get(name))
        for name, text in sorted(templates.items())
    ]
