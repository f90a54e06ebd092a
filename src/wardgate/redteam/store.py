"""A run directory: ``run.json`` (what was run) and ``results.jsonl`` (one line per attempt).

Results are appended and flushed line by line, so a run killed at any point loses at most the
attempt in flight, and a rerun with the same ``--out`` skips every attempt already recorded
without an error. ``run.json`` pins the target, suite digests and sampling settings; resuming
into a directory made for a different run is refused, because mixing them would silently
corrupt every rate.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wardgate.errors import ConfigError

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
#: Keys of ``run.json`` that must match for a resume; the rest (timings) may differ.
_IDENTITY_KEYS = ("target", "suites", "params", "judges")
#: A loopback URL's port: a gateway started for one run (``bench/redteam_proof.py``, a CI job)
#: gets a fresh free port every time, and is the same target on each.
_LOOPBACK_PORT = re.compile(r"(https?://(?:127\.\d+\.\d+\.\d+|localhost|\[::1\])):\d+",
                            re.IGNORECASE)


def target_identity(target: Mapping[str, Any] | None) -> dict[str, Any]:
    """What must stay the same about the target for a resume: its name and where it is,
    without the port of a loopback URL (ephemeral; a remote host's port is kept)."""
    target = dict(target or {})
    if isinstance(target.get("description"), str):
        target["description"] = _LOOPBACK_PORT.sub(r"\1:*", target["description"])
    return target


class RunStoreError(ConfigError):
    code = "redteam_run_mismatch"


class RunStore:
    """Reads and appends one run directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def run_file(self) -> Path:
        return self.directory / RUN_FILE

    @property
    def results_file(self) -> Path:
        return self.directory / RESULTS_FILE

    def exists(self) -> bool:
        return self.run_file.is_file()

    def open(self, meta: Mapping[str, Any]) -> None:
        """Create the directory, or check that it belongs to the same run."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.exists():
            old = self.meta()
            for key in _IDENTITY_KEYS:
                before, now = old.get(key), meta.get(key)
                if key == "target":
                    before, now = target_identity(before), target_identity(now)
                if _canonical(before) != _canonical(now):
                    raise RunStoreError(
                        f"{self.directory} holds a different run ({key} differs); "
                        "use a new --out directory or delete this one"
                    )
            return
        self.write_meta(meta)

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        tmp = self.run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_file)

    def meta(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.run_file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise RunStoreError(f"{self.directory} is not a red-team run (no {RUN_FILE})") from exc
        except json.JSONDecodeError as exc:
            raise RunStoreError(f"{self.run_file} is corrupt: {exc}") from exc
        return data

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored attempt; a torn last line (killed mid-write) is skipped."""
        if not self.results_file.is_file():
            return
        with self.results_file.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record per attempt key (a retried error is superseded by its success)."""
        out: dict[str, dict[str, Any]] = {}
        for record in self.records():
            out[record["key"]] = record
        return out

    def done_keys(self) -> set[str]:
        return {k for k, r in self.latest().items() if r.get("error") is None}

    def append(self, record: Mapping[str, Any]) -> None:
        self._repair_torn_tail()
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self.results_file.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()

    def _repair_torn_tail(self) -> None:
        """Cut a partial last line left by a crash, so the next record starts on its own line."""
        path = self.results_file
        if not path.is_file() or path.stat().st_size == 0:
            return
        with path.open("rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            data = path.read_bytes()
            handle.truncate(data.rfind(b"\n") + 1)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
