"""The result types every scanner returns, so the CLI, the BOM and the gateway read them alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, Literal

#: ``clean``: everything was read and nothing above INFO found; ``findings``: something
#: unsafe; ``error``: something could not be parsed; ``unscanned``: something is in a format
#: the scanner does not know (or is encrypted, or there was nothing to scan) — not clean.
ScanStatus = Literal["clean", "findings", "error", "unscanned"]


class Severity(IntEnum):
    """Ordered so that ``max()`` gives the worst finding of a report."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    """One reason not to trust a file.

    ``code`` is stable (tests and policies branch on it); ``message`` is for people;
    ``location`` names the file, the archive member and the byte offset where it applies.
    """

    severity: Severity
    code: str
    message: str
    location: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = str(self.severity)
        return data


@dataclass
class ScanReport:
    """Everything a scan learned about one path (file or directory)."""

    path: str
    formats: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    globals_seen: set[str] = field(default_factory=set)
    files_scanned: int = 0
    #: Files or members that could not be read at all (corrupt, truncated, unsupported).
    errors: list[str] = field(default_factory=list)
    #: Files or members in no format the scanner knows (``location: why``): never clean.
    unscanned: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Clean means every byte was scanned, no error, and no finding above INFO."""
        return self.status == "clean"

    @property
    def status(self) -> ScanStatus:
        """The verdict, worst first: findings, then errors, then anything left unscanned."""
        if any(f.severity > Severity.INFO for f in self.findings):
            return "findings"
        if self.errors:
            return "error"
        if self.unscanned:
            return "unscanned"
        return "clean"

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "clean": self.clean,
            "formats": sorted(set(self.formats)),
            "files_scanned": self.files_scanned,
            "errors": list(self.errors),
            "unscanned": list(self.unscanned),
            "globals": sorted(self.globals_seen),
            "findings": [f.to_dict() for f in self.findings],
        }
