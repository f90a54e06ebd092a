"""Digest manifests for data Wardgate ships itself (detector weights, attack suites, templates).

``wardgate/data/`` carries a ``MANIFEST.json`` written by ``wardgate model hash --json``; the
gateway checks it with :func:`verify_manifest` before it loads any detector, so a swapped or
edited weight file stops the start-up with the file named, like a user's model would.
"""

from __future__ import annotations

import json
from pathlib import Path

from wardgate.errors import ModelVerificationFailed
from wardgate.supplychain.hashing import digests_equal, hash_model, model_files

MANIFEST_NAME = "MANIFEST.json"


def write_manifest(folder: Path, manifest: Path | None = None) -> Path:
    """Hash every file under ``folder`` (except the manifest) and write the manifest."""
    from wardgate.supplychain.signing import atomic_write

    target = manifest or folder / MANIFEST_NAME
    digest = hash_model(folder)
    files = {f.name: f.sha256 for f in digest.files if f.name != target.name}
    data = {"files": files}
    atomic_write(target, (json.dumps(data, indent=2) + "\n").encode())
    return target


def verify_manifest(folder: Path, manifest: Path | None = None, *, strict: bool = True) -> int:
    """Check every listed file; with ``strict``, an unlisted file is a failure too.

    Returns the number of files checked; raises ModelVerificationFailed naming what differs.
    """
    source = manifest or folder / MANIFEST_NAME
    try:
        files = json.loads(source.read_text(encoding="utf-8"))["files"]
        # {"name": "sha256"} (what ships in wardgate/data) or [{"name", "sha256", ...}]
        listed = (
            {str(k): str(v) for k, v in files.items()}
            if isinstance(files, dict)
            else {entry["name"]: entry["sha256"] for entry in files}
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelVerificationFailed(f"cannot read digest manifest {source}: {exc}") from exc
    present = {name for name, _ in model_files(folder)} - {source.name}
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed)) if strict else []
    actual = {f.name: f.sha256 for f in hash_model(folder).files}
    changed = sorted(
        name for name in set(listed) & present if not digests_equal(actual[name], listed[name])
    )
    problems = [
        f"{label}: {', '.join(names)}"
        for label, names in (("changed", changed), ("missing", missing), ("not listed", extra))
        if names
    ]
    if problems:
        raise ModelVerificationFailed(
            f"{folder} does not match {source.name} ({'; '.join(problems)})"
        )
    return len(listed)
