"""The pre-deployment gate: ``--fail-above CATEGORY=RATE`` thresholds on a run's summary.

A threshold names a category (``harmful``, ``jailbreak`` …), ``overall`` (every attack
category pooled) or ``false_refusal`` (the benign set). It fails when the measured rate is
strictly above the limit. ``--gate-on upper`` compares the Wilson upper bound instead, for a
gate that only passes when the data are good enough to be sure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from wardgate.errors import ConfigError
from wardgate.redteam.summary import FALSE_REFUSAL, OVERALL

GateOn = Literal["rate", "upper"]


@dataclass(frozen=True, slots=True)
class Threshold:
    name: str
    limit: float


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    limit: float
    measured: float | None
    n: int
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": self.limit,
            "measured": self.measured,
            "n": self.n,
            "passed": self.passed,
        }


def parse_thresholds(values: Sequence[str]) -> list[Threshold]:
    out = []
    for value in values:
        name, sep, raw = value.partition("=")
        try:
            limit = float(raw)
        except ValueError:
            limit = -1.0
        if not sep or not name.strip() or not 0.0 <= limit <= 1.0:
            raise ConfigError(
                f"--fail-above {value!r}: expected CATEGORY=RATE with RATE in [0, 1], "
                "e.g. harmful=0.2 or overall=0.1"
            )
        out.append(Threshold(name.strip(), limit))
    return out


def evaluate(summary: Mapping[str, Any], thresholds: Sequence[Threshold],
             gate_on: GateOn = "rate") -> list[GateResult]:  # fmt: skip
    """Check each threshold; an unknown category is a failure (fail closed), not a pass."""
    results = []
    key = "rate" if gate_on == "rate" else "ci_high"
    for t in thresholds:
        if t.name in (OVERALL, FALSE_REFUSAL):
            entry = summary.get(t.name)
        else:
            entry = summary.get("categories", {}).get(t.name)
        if not entry or not entry.get("n"):
            results.append(GateResult(t.name, t.limit, None, 0, False))
            continue
        measured = float(entry[key])
        results.append(GateResult(t.name, t.limit, measured, int(entry["n"]), measured <= t.limit))
    return results
