"""Model hashing throughput, warm page cache, on a multi-GB set of files.

Creates ``--files`` files of ``--size-mib`` MiB under a temporary folder in /tmp (deleted at
the end), reads them once to warm the page cache, then times:

* Wardgate ``hash_model`` with one worker per core (the default) and with one worker;
* ``model_signing.hashing`` (the OpenSSF reference, file serialisation, SHA-256) on the same set,
  and checks that both produce the same root digest.

    .venv/bin/python bench/supplychain_hash_bench.py --files 3 --size-mib 1024
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from wardgate.supplychain.hashing import hash_model


def _make(folder: Path, files: int, size_mib: int) -> int:
    block = os.urandom(8 * 1024 * 1024)
    total = 0
    for index in range(files):
        with open(folder / f"model-{index:05d}-of-{files:05d}.safetensors", "wb") as handle:
            for _ in range(size_mib // 8):
                handle.write(block)
                total += len(block)
        block = block[1:] + block[:1]  # distinct content per file
    return total


def _warm(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb", buffering=0) as handle:
            while handle.read(16 * 1024 * 1024):
                pass


def _time(label: str, total: int, fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<44} {seconds:7.2f} s  {total / seconds / 1e9:6.2f} GB/s")
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--skip-model-signing", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs per method")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="wardgate-hashbench-", dir="/tmp"))
    try:
        total = _make(folder, args.files, args.size_mib)
        _warm(folder)
        print(f"{args.files} files, {total / 1e9:.2f} GB, {os.cpu_count()} CPUs, warm cache")
        ours = theirs = None
        for run in range(args.repeat):
            print(f"-- run {run + 1}/{args.repeat}")
            _, ours = _time(
                "wardgate hash_model (1 worker per core)", total, lambda: hash_model(folder)
            )
            _time(
                "wardgate hash_model (1 worker)", total, lambda: hash_model(folder, max_workers=1)
            )
            if not args.skip_model_signing:
                from model_signing import hashing

                _, theirs = _time(
                    "model_signing.hashing.hash (default config)",
                    total,
                    lambda: hashing.hash(folder),
                )
        if theirs is not None:
            reference = {r.identifier: r.digest.digest_hex for r in theirs.resource_descriptors()}  # type: ignore[attr-defined]
            same = reference == {f.name: f.sha256 for f in ours.files}  # type: ignore[attr-defined]
            print(f"per-file digests identical to model_signing: {same}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
