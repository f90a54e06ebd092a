"""SHA-256 of model files, parallel across files, laid out like an OpenSSF model-signing manifest.

Why our own hasher: the gateway hashes multi-GB weights at every start, so it reads with one
reused buffer (``readinto``: no per-chunk allocation) and hashes files on a thread pool
(``hashlib`` releases the GIL for large updates, so threads scale with cores). The digests are
the same ones ``model_signing`` records: per file, the SHA-256 of its bytes, named by its path
relative to the model root; and a root digest, the SHA-256 over the per-file digests in name
order (the in-toto subject digest of a model-signing statement).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

#: Paths model-signing leaves out of a model by default.
IGNORED = (".git", ".gitattributes", ".github", ".gitignore")
CHUNK = 1024 * 1024  # fits in L2: measured faster than 8 MiB here


@dataclass(frozen=True)
class FileDigest:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelDigest:
    """Per-file digests plus the root digest over them."""

    root: str
    files: list[FileDigest] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, object]:
        return {
            "sha256": self.root,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
            "total_bytes": self.total_bytes,
        }


def sha256_file(path: str | os.PathLike[str], chunk_size: int = CHUNK) -> tuple[str, int]:
    """(hex digest, size) of one file, read in fixed chunks into one reused buffer."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while True:
            read = handle.readinto(buffer)
            if not read:
                break
            digest.update(view[:read])
            size += read
    return digest.hexdigest(), size


def model_files(root: Path) -> list[tuple[str, Path]]:
    """(relative posix name, path) for every regular file of a model, in name order.

    A single file is its own model, named by its file name (as model-signing does).
    Symlinks are refused rather than followed: they are how a signed folder points elsewhere.
    """
    if root.is_symlink():
        raise ValueError(f"{root} is a symlink; refusing to follow it")
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or folder: {root}")
    found: list[tuple[str, Path]] = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] in IGNORED:
            continue
        if path.is_symlink():
            raise ValueError(f"{path} is a symlink; refusing to follow it")
        if path.is_file():
            found.append((rel.as_posix(), path))
    return sorted(found)


def root_digest(digests: Iterable[str]) -> str:
    """SHA-256 over the raw per-file digests in order: model-signing's subject digest."""
    hasher = hashlib.sha256()
    for hex_digest in digests:
        hasher.update(bytes.fromhex(hex_digest))
    return hasher.hexdigest()


def hash_model(path: str | os.PathLike[str], *, max_workers: int | None = None) -> ModelDigest:
    """Hash a model file or folder, one file per worker thread."""
    files = model_files(Path(path))
    workers = max_workers or min(len(files), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wardgate-hash") as pool:
        results = list(pool.map(lambda item: sha256_file(item[1]), files))
    digests = [
        FileDigest(name, digest, size)
        for (name, _), (digest, size) in zip(files, results, strict=True)
    ]
    return ModelDigest(root=root_digest(d.sha256 for d in digests), files=digests)


def digests_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests (case-insensitive)."""
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())
