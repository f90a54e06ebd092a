"""Scan time on large checkpoints: the scanner parses the pickles and steps over the weights.

Writes a 512 MiB torch checkpoint and a 512 MiB joblib array file under /tmp (deleted after),
then times Wardgate's scanner and picklescan on each (best of 3).

    .venv/bin/python bench/supplychain_scan_large.py
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from wardgate.supplychain.scan import scan_path


def best_ms(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def main() -> None:
    import joblib
    import numpy as np
    from picklescan.scanner import scan_file_path

    writers: dict[str, Callable[[Path], None]] = {
        "joblib.joblib": lambda p: joblib.dump({"x": np.zeros(64 * 1024 * 1024)}, p),
    }
    try:
        import torch

        writers["torch.pt"] = lambda p: torch.save(
            {"w": torch.zeros(128 * 1024 * 1024), "b": torch.ones(10)}, p
        )
    except ImportError:
        print("torch not installed: skipping the torch checkpoint")
    with tempfile.TemporaryDirectory(prefix="wardgate-scanbench-", dir="/tmp") as tmp:
        for name, write in writers.items():
            path = Path(tmp) / name
            write(path)
            report = scan_path(path)
            ours = best_ms(lambda path=path: scan_path(path))
            theirs = best_ms(lambda path=path: scan_file_path(str(path)))
            size = os.path.getsize(path) / 2**20
            print(
                f"{name:<14} {size:7.1f} MiB  wardgate {ours:7.1f} ms (clean={report.clean})"
                f"  picklescan {theirs:7.1f} ms"
            )


if __name__ == "__main__":
    main()
