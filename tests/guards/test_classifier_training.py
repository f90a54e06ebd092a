"""The training script is reproducible: retraining gives the weights that are pinned.

Byte for byte with the same numpy/scipy/scikit-learn releases; within ``CHECK_RTOL`` of the
largest weight across releases (see ``scripts/train_detectors.py``).

Every CI run retrains both detectors and the harmful semantic stage on a stable 4% subset of the
assembled data (``--subset``: the same data assembly, splits, featuriser, solver and threshold
and band tuning as the shipped weights) and checks the result against the weights pinned in
``tests/guards/data/retrain_subset/``. The subset's MiniLM embeddings are pinned there too
(``embeddings.npz``, read with ``--frozen-embeddings``), so the check never runs MiniLM (whose
own outputs tests/guards/test_embedding.py pins): ~25 CPU-seconds, where the full retrain embeds
~35,000 texts (10-30 minutes). The full retrain against the shipped weights runs when
``WARDGATE_FULL_RETRAIN=1``; run it whenever the shipped weights change.

Both need the public data: ``$WARDGATE_PUBLIC_DATA``, else ``../shared/data/public``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from detector_data import DEFAULT_PUBLIC, Example, in_subset  # noqa: E402

PUBLIC = DEFAULT_PUBLIC
SUBSET = 0.04
PINNED_SUBSET = Path(__file__).parent / "data" / "retrain_subset"
needs_public = pytest.mark.skipif(
    not PUBLIC.is_dir(),
    reason="needs the public data: ../shared/data/public or $WARDGATE_PUBLIC_DATA",
)


def _retrain(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("sklearn")
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_detectors.py"), "--check",
         "--no-test-report", "--public", str(PUBLIC), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )  # fmt: skip


@pytest.mark.slow  # ~25 CPU-seconds; CI runs slow tests too
@needs_public
@pytest.mark.timeout(600)
def test_retraining_a_pinned_subset_reproduces_its_weights() -> None:
    done = _retrain(
        "--subset", str(SUBSET), "--data-dir", str(PINNED_SUBSET),
        "--embedding-cache", str(PINNED_SUBSET / "embeddings.npz"), "--frozen-embeddings",
        timeout=590,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("injection", "harmful", "harmful_semantic"):
        assert f"detectors/{name}.npz: retrained" in done.stdout
    assert done.stdout.count("== pinned") == 3, done.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(3700)
@needs_public
@pytest.mark.skipif(
    os.environ.get("WARDGATE_FULL_RETRAIN") != "1",
    reason="the full retrain takes 10-30 minutes; set WARDGATE_FULL_RETRAIN=1",
)
def test_retraining_reproduces_the_shipped_weights() -> None:
    done = _retrain(timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("== pinned") == 3, done.stdout[-3000:]


def test_the_subset_is_stable_and_small() -> None:
    items = [Example(f"text number {i}", i % 2, "train", "s") for i in range(4000)]
    first = [e for e in items if in_subset(e, SUBSET)]
    assert first == [e for e in items if in_subset(e, SUBSET)]
    assert 0.025 < len(first) / len(items) < 0.055
    # A larger share keeps every item of a smaller one: the subset is a prefix of one order.
    assert set(first) <= {e for e in items if in_subset(e, 2 * SUBSET)}


def test_the_check_tolerates_float_noise_but_not_a_different_model() -> None:
    pytest.importorskip("sklearn")
    import numpy as np
    from train_detectors import close_to

    from wardgate.guards.classifier import LinearDetector

    def detector(weights: np.ndarray, threshold: float) -> bytes:
        return LinearDetector(weights.astype(np.float32), 0.5, threshold, name="t").to_npz_bytes()

    rng = np.random.default_rng(0)
    w = rng.normal(size=1 << 10)
    pinned = detector(w, 0.4)
    assert close_to(detector(w * (1 + 1e-6), 0.4), pinned)[0]
    assert not close_to(detector(w + 0.05 * rng.normal(size=w.size), 0.4), pinned)[0]
    assert not close_to(detector(w, 0.45), pinned)[0]


def test_check_reads_the_pinned_files_of_its_data_dir(tmp_path: Path) -> None:
    """``--data-dir`` (the pinned subset's folder): a match passes, a moved model fails."""
    pytest.importorskip("sklearn")
    import json

    import numpy as np
    from train_detectors import check

    from wardgate.guards.classifier import LinearDetector, sha256_hex

    w = np.random.default_rng(1).normal(size=1 << 10).astype(np.float32)
    pinned = LinearDetector(w, 0.5, 0.4, name="injection")
    moved = LinearDetector(w + np.float32(0.2), 0.5, 0.4, name="injection")
    blob = pinned.to_npz_bytes()
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "injection.npz").write_bytes(blob)
    manifest = {"files": {"detectors/injection.npz": sha256_hex(blob)}}
    (tmp_path / "MANIFEST.json").write_text(json.dumps(manifest))
    assert check([pinned], tmp_path)
    assert not check([moved], tmp_path)
    assert not check([LinearDetector(w, 0.5, 0.4, name="harmful")], tmp_path)  # not pinned


def test_the_block_threshold_meets_the_val_budgets_but_keeps_the_tpr_floor() -> None:
    pytest.importorskip("sklearn")
    import numpy as np
    from train_detectors import BLOCK_TPR_FLOOR, pick_block_threshold

    def examples(n: int, label: int, source: str) -> list[Example]:
        return [Example(f"{source} {i}", label, "val", source) for i in range(n)]

    val = examples(100, 1, "written/harmful") + examples(100, 0, "alarming/it_admin")
    val += examples(400, 0, "alpaca")
    harmful = np.linspace(0.65, 1.0, 100)
    alarming = np.linspace(0.0, 0.6, 100)  # 2% budget: block above its 3rd-highest score
    ordinary = np.linspace(0.0, 0.2, 400)
    scores = np.concatenate((harmful, alarming, ordinary))
    block = pick_block_threshold("t", scores, val, floor=0.25)
    assert (alarming >= block).mean() <= 0.02 and block > 0.25
    assert (harmful >= block).mean() >= BLOCK_TPR_FLOOR
    # Where the budget would cost recall, the TPR floor wins; never below the flag threshold.
    harder = np.concatenate((np.linspace(0.1, 0.7, 100), alarming, ordinary))
    capped = pick_block_threshold("t", harder, val, floor=0.05)
    assert (harder[:100] >= capped).mean() >= BLOCK_TPR_FLOOR
    assert pick_block_threshold("t", harder, val, floor=0.5) == 0.5
