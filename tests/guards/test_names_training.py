"""``scripts/train_names.py`` is reproducible: the same inputs give the same file, byte for byte.

Training needs the ``train-names`` extra (faker, wordfreq); without it these tests skip. The
full ``--check`` (retrain at full scale, compare with the pinned file) takes 1–4 min on two
cores, so it is slow-marked; the small-scale check runs two trainings in separate processes
with different hash seeds (set iteration order must not leak into the data).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_names.py"


def _train(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    pytest.importorskip("faker")
    pytest.importorskip("wordfreq")
    pytest.importorskip("sklearn")
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "scripts"), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


@pytest.mark.slow
def test_two_small_trainings_write_identical_files(tmp_path: Path) -> None:
    blobs = []
    for n, seed in enumerate(("1", "2")):
        out = tmp_path / f"names{n}.npz"
        done = _train("--scale", "0.03", "--out", str(out), hash_seed=seed)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        blobs.append(out.read_bytes())
    assert blobs[0] == blobs[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_check_reproduces_the_pinned_file() -> None:
    done = _train("--check")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "identical to the pinned" in done.stdout or "within tolerance" in done.stdout
