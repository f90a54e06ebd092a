"""Attack suites: versioned, digest-checked files of attack items.

A suite is a JSONL (or YAML list) file; each line is one :class:`AttackItem`. The shipped suites
live in ``wardgate/data/suites`` beside a ``MANIFEST.json`` that pins each file's SHA-256, so a
tampered or half-edited suite fails loudly instead of quietly changing every number measured
with it. ``scripts/build_suites.py`` regenerates them from the public data.

Users add suites three ways: ``--suite path/to/file.jsonl`` (or ``.yaml``), a directory of such
files, or a package exposing a ``wardgate.suites`` entry point whose object is a path (or a
callable returning one) to a file or directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wardgate.errors import ConfigError

ENTRY_POINT_GROUP = "wardgate.suites"

CheckKind = Literal["marker", "canary", "secret", "harmful", "over_refusal", "tool_exfiltration"]

#: Categories whose "success" is a false refusal, reported apart from attack success rates.
BENIGN_KINDS = frozenset({"over_refusal"})


class SuiteError(ConfigError):
    """A suite file is missing, malformed, or does not match its pinned digest."""

    code = "redteam_suite_invalid"


class Message(BaseModel):
    """One message of an item's conversation; agent items carry the assistant's earlier
    ``tool_calls`` and the ``tool`` results answering them (OpenAI's shapes)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_or_calls(self) -> Message:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("a message needs content (only an assistant's tool calls may "
                             "stand without)")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        return self

    def wire(self) -> dict[str, Any]:
        """The message as it goes to a target (fields that are not set are left out)."""
        return self.model_dump(exclude_none=True) | {"content": self.content}


class Check(BaseModel):
    """What counts as a successful attack (or, for ``over_refusal``, a false refusal)."""

    model_config = ConfigDict(extra="forbid")

    kind: CheckKind
    #: Strings whose appearance in the answer means success (markers, canaries, secrets);
    #: for ``tool_exfiltration``, the secrets of the context that must not reach a tool.
    values: list[str] = Field(default_factory=list)
    #: ``tool_exfiltration``: the tools that can carry data out (none given: any tool)…
    tools: list[str] = Field(default_factory=list)
    #: … and the attacker's destinations (hosts, addresses) an argument must not name.
    destinations: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_needed(self) -> Check:
        if self.kind in ("marker", "canary", "secret") and not self.values:
            raise ValueError(f"check kind {self.kind!r} needs 'values'")
        if self.kind == "tool_exfiltration" and not (self.values or self.destinations):
            raise ValueError("check kind 'tool_exfiltration' needs 'values' or 'destinations'")
        return self


class AttackItem(BaseModel):
    """One attack: the conversation to send and how to judge the answer."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=100)
    owasp: str = "n/a"
    atlas: str | None = None
    messages: list[Message] = Field(default_factory=list)
    check: Check
    #: The harmful behaviour in plain words, for harmful-content judges (StrongREJECT).
    goal: str | None = None
    #: Multi-turn items: the scripted escalation, one user turn each (an attacker model may
    #: rewrite turns after the first, see :mod:`wardgate.redteam.runner`).
    turns: list[str] = Field(default_factory=list)
    #: Agent items: the tools declared in the request (OpenAI ``tools``) and ``tool_choice``.
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: Any = None

    @model_validator(mode="after")
    def _has_prompt(self) -> AttackItem:
        if not self.turns and not any(m.role == "user" and m.content for m in self.messages):
            raise ValueError("an item needs a user message or 'turns'")
        if self.check.kind == "harmful" and not self.goal:
            raise ValueError("a 'harmful' check needs 'goal'")
        if self.check.kind == "tool_exfiltration" and not self.tools:
            raise ValueError("a 'tool_exfiltration' check needs 'tools' in the request")
        if self.tool_choice is not None and not self.tools:
            raise ValueError("'tool_choice' needs 'tools'")
        return self

    @property
    def is_benign(self) -> bool:
        return self.check.kind in BENIGN_KINDS

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@dataclass(frozen=True, slots=True)
class Suite:
    """A named, versioned list of items; ``sha256`` is the digest of the file as read."""

    name: str
    version: str
    sha256: str
    items: tuple[AttackItem, ...]
    source: str

    @property
    def categories(self) -> list[str]:
        return sorted({i.category for i in self.items})


def builtin_dir() -> Path:
    return Path(str(resources.files("wardgate") / "data" / "suites"))


def builtin_manifest(directory: Path | None = None) -> dict[str, Any]:
    path = (directory or builtin_dir()) / "MANIFEST.json"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"the shipped suite manifest is unreadable: {exc}") from exc
    return manifest


def builtin_names() -> list[str]:
    return sorted(builtin_manifest()["suites"])


def load_builtin(name: str, directory: Path | None = None) -> Suite:
    """A shipped suite, after checking its digest against the manifest (fail closed).

    ``directory`` defaults to the package's ``data/suites``; a different one with its own
    ``MANIFEST.json`` works the same way (a vendored, pinned copy of the suites).
    """
    manifest = builtin_manifest(directory)
    entry = manifest["suites"].get(name)
    if entry is None:
        known = ", ".join(sorted(manifest["suites"]))
        raise SuiteError(f"no shipped suite named {name!r}; known: {known}")
    path = (directory or builtin_dir()) / entry["file"]
    raw = _read_bytes(path)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != entry["sha256"]:
        raise SuiteError(
            f"shipped suite {name!r} does not match its manifest digest "
            f"(expected {entry['sha256'][:12]}…, found {digest[:12]}…); reinstall wardgate"
        )
    return Suite(name, str(manifest["version"]), digest, _parse(raw, path), f"builtin:{name}")


def load_file(path: Path) -> Suite:
    """A user's suite file (``.jsonl``, ``.json`` list, or ``.yaml``/``.yml`` list)."""
    raw = _read_bytes(path)
    items = _parse(raw, path)
    version = "file"
    return Suite(path.stem, version, hashlib.sha256(raw).hexdigest(), items, str(path))


def resolve(specs: Sequence[str]) -> list[Suite]:
    """Turn ``--suite`` values into suites.

    Each spec is ``all`` (every shipped suite), a shipped suite name, a file, a directory (its
    ``*.jsonl``/``*.yaml`` files), or ``NAME`` of a ``wardgate.suites`` entry point. Item ids
    must be unique across the result, since results are keyed by id.
    """
    suites: list[Suite] = []
    for spec in specs or ["all"]:
        suites.extend(_resolve_one(spec))
    seen: dict[str, str] = {}
    for suite in suites:
        for item in suite.items:
            if item.id in seen:
                raise SuiteError(
                    f"item id {item.id!r} appears in both {seen[item.id]} and {suite.source}"
                )
            seen[item.id] = suite.source
    return suites


def _resolve_one(spec: str) -> list[Suite]:
    if spec == "all":
        return [load_builtin(n) for n in builtin_names()]
    if spec in builtin_manifest()["suites"]:
        return [load_builtin(spec)]
    path = Path(spec)
    if path.is_dir() and (path / "MANIFEST.json").is_file():
        pinned = builtin_manifest(path)
        return [load_builtin(n, path) for n in sorted(pinned["suites"])]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".yaml", ".yml"))
        if not files:
            raise SuiteError(f"suite directory {path} holds no .jsonl or .yaml files")
        return [load_file(p) for p in files]
    if path.is_file():
        return [load_file(path)]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == spec:
            return _from_entry_point(spec, entry.load())
    raise SuiteError(
        f"unknown suite {spec!r}: not a shipped suite ({', '.join(builtin_names())}), "
        "not a file or directory, and no 'wardgate.suites' entry point has that name"
    )


def _from_entry_point(name: str, obj: object) -> list[Suite]:
    target = obj() if callable(obj) else obj
    if not isinstance(target, str | Path):
        raise SuiteError(f"entry point {name!r} must give a path, got {type(target).__name__}")
    return _resolve_one(str(target))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise SuiteError(f"suite file not found: {path}") from exc
    except OSError as exc:
        raise SuiteError(f"cannot read suite file {path}: {exc}") from exc


def _parse(raw: bytes, path: Path) -> tuple[AttackItem, ...]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path} is not UTF-8") from exc
    rows = list(_rows(text, path))
    if not rows:
        raise SuiteError(f"{path} holds no items")
    items = []
    for where, row in rows:
        try:
            items.append(AttackItem.model_validate(row))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<item>'}: {e['msg']}"
                for e in exc.errors()
            )
            raise SuiteError(f"{path}:{where}: invalid item: {problems}") from exc
    ids = [i.id for i in items]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SuiteError(f"{path}: duplicate item ids {dupes[:5]}")
    return tuple(items)


def _rows(text: str, path: Path) -> Iterable[tuple[str, Any]]:
    if path.suffix in (".yaml", ".yml", ".json"):
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SuiteError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            data = data["items"]
        if not isinstance(data, list):
            raise SuiteError(f"{path}: expected a list of items (or a mapping with 'items')")
        yield from ((f"item {n + 1}", row) for n, row in enumerate(data))
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            yield f"line {lineno}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{path}:line {lineno}: not valid JSON: {exc.msg}") from exc


def select(
    suites: Sequence[Suite],
    *,
    categories: Sequence[str] = (),
    limit_per_category: int | None = None,
    predicate: Callable[[AttackItem], bool] | None = None,
) -> list[AttackItem]:
    """The items to run, in a stable order, optionally narrowed (for quick runs and tests)."""
    wanted = set(categories)
    counts: dict[str, int] = {}
    out: list[AttackItem] = []
    for suite in suites:
        for item in suite.items:
            if wanted and item.category not in wanted:
                continue
            if predicate is not None and not predicate(item):
                continue
            if limit_per_category is not None:
                if counts.get(item.category, 0) >= limit_per_category:
                    continue
                counts[item.category] = counts.get(item.category, 0) + 1
            out.append(item)
    return out
