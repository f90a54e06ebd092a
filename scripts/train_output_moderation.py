"""Train the output-moderation guard's model and write its pinned weights.

    .venv/bin/python scripts/train_output_moderation.py            # train, print, write
    .venv/bin/python scripts/train_output_moderation.py --dry-run  # train and print only
    .venv/bin/python scripts/train_output_moderation.py --check    # retrain, compare with pinned

Data: ``scripts/output_moderation_data.py`` (written templates and answers, the judges'
labelled SmolLM2 answers, the hand-labelled SmolLM2 answers of this set, ordinary text as
negatives). Only ``train`` rows are fitted; the regularisation, whether the request block is
used, and both thresholds are chosen on ``val``; the ``test`` rows are never read here
(``bench/output_moderation.py`` reports them from the shipped weights).

Every answer is cut into the guard's windows (``output_moderation.answer_windows``) and each
window is a training row with its answer's label; an answer's score is its worst window, at
training as at serving. Deterministic (liblinear, fixed seeds): the same inputs give the same
weights; ``--check`` accepts differences up to 1e-3 of the largest weight.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from output_moderation_data import Row, all_rows  # noqa: E402

from wardgate.guards.classifier import (  # noqa: E402
    DEFAULT_DIM,
    read_verified,
    sha256_hex,
)
from wardgate.guards.output_moderation import (  # noqa: E402
    WEIGHTS_FILE,
    ResponseModel,
    featurise_answer,
    request_features,
)

DATA = ROOT / "src" / "wardgate" / "data"
WORD_DIM = 1 << 16
REQUEST_DIM = 1 << 14
C_GRID = (1.0, 4.0, 16.0)
#: Val FPR budgets: flag (recall-first) and block (precision-first), over benign answers.
FLAG_FPR = 0.02
BLOCK_FPR = 0.005
#: Written hard negatives (the benign templates and frames) blocked at most this often on val.
HARD_FPR = 0.05
TOLERANCE = 1e-3


def design(rows: list[Row], request_dim: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """One sparse row per answer window: [main | word | request | copied]; and row -> answer."""
    width = DEFAULT_DIM + WORD_DIM + request_dim + 1
    data: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    indptr = [0]
    labels, owner = [], []
    for k, row in enumerate(rows):
        request = request_features(row.request, request_dim)
        for w in featurise_answer(row.answer, request, DEFAULT_DIM, WORD_DIM):
            parts_c = [w.index, DEFAULT_DIM + w.word_index]
            parts_v = [w.values, w.word_values]
            if request_dim:
                parts_c.append(DEFAULT_DIM + WORD_DIM + request.index)
                parts_v.append(request.values)
            parts_c.append(np.array([width - 1]))
            parts_v.append(np.array([w.copied], dtype=np.float32))
            cols.append(np.concatenate(parts_c))
            data.append(np.concatenate(parts_v).astype(np.float32))
            indptr.append(indptr[-1] + len(cols[-1]))
            labels.append(row.label)
            owner.append(k)
    x = sp.csr_matrix((np.concatenate(data), np.concatenate(cols), np.array(indptr)),
                      shape=(len(labels), width))
    return x, np.array(labels), np.array(owner)


def fit(x: sp.csr_matrix, y: np.ndarray, c: float) -> LogisticRegression:
    model = LogisticRegression(C=c, solver="liblinear", class_weight="balanced",
                               max_iter=2000, random_state=0)
    model.fit(x, y)
    return model


def answer_scores(model: LogisticRegression, x: sp.csr_matrix, owner: np.ndarray,
                  n: int) -> np.ndarray:
    """Each answer's worst window probability."""
    p = model.predict_proba(x)[:, 1]
    out = np.zeros(n)
    np.maximum.at(out, owner, p)
    return out


def threshold_at(benign_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold whose FPR on these benign scores is at most ``fpr``."""
    ordered = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(fpr * len(ordered)))
    return float(min(0.999, ordered[allowed] + 1e-6)) if allowed < len(ordered) else 0.5


def train(verbose: bool = True) -> tuple[ResponseModel, dict[str, object]]:
    rows = all_rows()
    train_rows = [r for r in rows if r.split == "train"]
    val_rows = [r for r in rows if r.split == "val"]
    best: tuple[float, float, int, LogisticRegression, np.ndarray] | None = None
    report: dict[str, object] = {"train_rows": len(train_rows), "val_rows": len(val_rows)}
    hard = np.array([r.label == 0 and r.source.startswith("written:") for r in val_rows])
    for request_dim in (0, REQUEST_DIM):
        x, y, _ = design(train_rows, request_dim)
        xv, _, ov = design(val_rows, request_dim)
        yv = np.array([r.label for r in val_rows])
        for c in C_GRID:
            model = fit(x, y, c)
            sv = answer_scores(model, xv, ov, len(val_rows))
            # Ordinary benign val texts (real answers, ordinary text) hold the FPR budgets; the
            # written hard negatives (refusals, education quoting the stereotype it rejects,
            # negative sentences about things) may be blocked at most HARD_FPR of the time.
            ordinary = sv[(yv == 0) & ~hard]
            t_block = max(threshold_at(ordinary, BLOCK_FPR), threshold_at(sv[hard], HARD_FPR))
            tpr = float((sv[yv == 1] >= t_block).mean())
            t_flag = min(threshold_at(ordinary, FLAG_FPR), t_block)
            tpr_flag = float((sv[yv == 1] >= t_flag).mean())
            key = (tpr, tpr_flag)
            if verbose:
                print(f"request_dim={request_dim:6d} C={c:5.1f}  val TPR at block threshold "
                      f"{t_block:.3f}: {tpr:.3f}; at flag threshold {t_flag:.3f}: "
                      f"{tpr_flag:.3f}", flush=True)
            if best is None or key > (best[0], best[1]):
                best = (tpr, tpr_flag, request_dim, model, np.array([t_flag, t_block, c]))
    assert best is not None
    tpr, tpr_flag, request_dim, model, (t_flag, t_block, c) = best
    coef = model.coef_[0].astype(np.float32)
    weights = coef[:DEFAULT_DIM]
    word_weights = coef[DEFAULT_DIM : DEFAULT_DIM + WORD_DIM]
    request_weights = coef[DEFAULT_DIM + WORD_DIM : DEFAULT_DIM + WORD_DIM + request_dim]
    meta = {
        "block_threshold": round(float(t_block), 6),
        "C": float(c),
        "val_tpr_block": round(tpr, 4),
        "val_tpr_flag": round(tpr_flag, 4),
        "flag_fpr_budget": FLAG_FPR,
        "block_fpr_budget": BLOCK_FPR,
        "hard_negative_fpr_budget": HARD_FPR,
        "train_rows": len(train_rows),
    }
    result = ResponseModel(weights, word_weights, request_weights.astype(np.float32),
                           float(coef[-1]), float(model.intercept_[0]),
                           round(float(t_flag), 6), meta)
    report.update(meta)
    report["request_dim"] = request_dim
    return result, report


def write(model: ResponseModel) -> None:
    data = model.to_npz_bytes()
    (DATA / WEIGHTS_FILE).write_bytes(data)
    manifest_path = DATA / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][WEIGHTS_FILE] = sha256_hex(data)
    manifest["files"] = dict(sorted(manifest["files"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {WEIGHTS_FILE} ({len(data):,} bytes) and its digest in MANIFEST.json")


def check(model: ResponseModel) -> int:
    pinned = ResponseModel.from_npz_bytes(read_verified(WEIGHTS_FILE))
    problems = []
    for name in ("weights", "word_weights", "request_weights"):
        a, b = getattr(model, name), getattr(pinned, name)
        if a.shape != b.shape:
            problems.append(f"{name}: shape {a.shape} != pinned {b.shape}")
            continue
        scale = float(np.abs(b).max()) or 1.0
        diff = float(np.abs(a - b).max()) if a.size else 0.0
        print(f"{name}: largest difference {diff:.2e} ({diff / scale:.2e} of the largest)")
        if diff > TOLERANCE * scale:
            problems.append(f"{name} differs by {diff:.3g}")
    for name in ("threshold", "block_threshold", "copy_weight", "bias"):
        a, b = getattr(model, name), getattr(pinned, name)
        if abs(a - b) > 1e-3 * max(1.0, abs(b)):
            problems.append(f"{name}: {a} != pinned {b}")
    for p in problems:
        print("MISMATCH", p)
    print("check:", "ok" if not problems else "FAILED")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    model, report = train(verbose=not args.check)
    print(json.dumps(report, indent=1))
    if args.check:
        return check(model)
    if not args.dry_run:
        write(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
