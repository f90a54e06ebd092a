"""Train the learned pair judge and measure every judge on the held-out test split.

    python scripts/judge_data.py build --answers /tmp/judge-gen/answers.jsonl ...   # the set
    python scripts/train_judge.py                      # weights + agreement.json + MANIFEST
    python scripts/train_judge.py --check              # retrain in memory, compare the weights

Reads ``src/wardgate/data/judges/labelled.jsonl``; fits a multinomial logistic regression on
``train`` + ``val`` for each regularisation strength in :data:`C_GRID` in grouped 5-fold
cross-validation, keeps the one with the best harmful-item agreement (ties: four-way agreement,
then the smaller C), refits on train+val with it, and writes ``judges/pair_minilm.npz``. The
``test`` split is touched once, at the end, to write ``judges/agreement.json`` for every judge
(what reports quote); the same file keeps every judge's figures on train+val (the learned
judge's out-of-fold), which is what ``--harm-judge auto`` chooses by. Both files' SHA-256 go into
``wardgate/data/MANIFEST.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from wardgate.guards.classifier import npz_bytes
from wardgate.guards.embedding import MiniLMEncoder, limit_blas_threads
from wardgate.redteam.judges.base import LABELS
from wardgate.redteam.judges.pair import FEATURE_VERSION, WEIGHTS_FILE, PairJudge, pair_features
from wardgate.redteam.judges.refusal import analyse_refusal
from wardgate.redteam.judges.validate import (
    AGREEMENT_FILE,
    JUDGE_NAMES,
    SET_FILE,
    LabelledItem,
    guard_weights,
    judge_by_name,
    read_set,
    score,
)
from wardgate.redteam.judges.validate import predict as predict_items

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "wardgate" / "data"
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


class CachedEncoder:
    """MiniLM with an on-disk cache of sentence embeddings (development reruns only; the
    cache is keyed by the exact text, so it cannot change a result)."""

    def __init__(self, encoder: MiniLMEncoder, path: Path | None) -> None:
        self.encoder, self.path = encoder, path
        self.cache: dict[str, np.ndarray] = {}
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as npz:
                self.cache = dict(zip(npz["texts"].tolist(), npz["emb"], strict=True))

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.encoder.encode(missing), strict=True))
            if self.path is not None:
                np.savez(self.path, texts=np.array(list(self.cache)),
                         emb=np.stack(list(self.cache.values())))
        return np.stack([self.cache[t] for t in texts])


def features(encoder: Any, items: list[LabelledItem]) -> np.ndarray:
    return pair_features(encoder, [i.request for i in items], [i.answer for i in items])


def fit(x: np.ndarray, y: list[str], c: float) -> dict[str, Any]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=0)
    model.fit((x - mean) / scale, y)
    order = [list(model.classes_).index(lab) for lab in LABELS if lab in model.classes_]
    labels = [str(model.classes_[k]) for k in order]
    return {"labels": labels, "coef": model.coef_[order].astype(np.float32),
            "intercept": model.intercept_[order].astype(np.float32),
            "mean": mean.astype(np.float32), "scale": scale.astype(np.float32)}


def as_judge(weights: dict[str, Any], encoder: Any, c: float) -> PairJudge:
    header = {"labels": weights["labels"], "feature_version": FEATURE_VERSION, "C": c}
    return PairJudge({k: v for k, v in weights.items() if k != "labels"}, header, encoder)


def predict(judge: PairJudge, x: np.ndarray, items: list[LabelledItem]) -> list[str]:
    """As a run decides: the pair judge for harmful items, the refusal rules for benign."""
    labels = [judge.labels[int(k)] for k in judge.probabilities(x).argmax(axis=1)]
    return [lab if i.kind == "harmful" else
            ("refuse" if analyse_refusal(i.answer).refused else "comply")
            for lab, i in zip(labels, items, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--embedding-cache", type=Path, default=None,
                        help="Keep sentence embeddings in this .npz between runs")
    args = parser.parse_args()
    limit_blas_threads()
    encoder: Any = CachedEncoder(MiniLMEncoder.load(), args.embedding_cache)
    set_path = DATA / SET_FILE
    items = read_set(set_path, split="all")
    split = {s: [i for i in items if i.split == s] for s in ("train", "val", "test")}
    print({s: len(v) for s, v in split.items()})
    x = {s: features(encoder, v) for s, v in split.items()}
    y = {s: [i.label for i in v] for s, v in split.items()}
    # Regularisation by grouped 5-fold cross-validation over train+val (groups: the request,
    # so answers to one request never sit on both sides); val alone is too small to choose.
    dev = split["train"] + split["val"]
    x_dev = np.vstack([x["train"], x["val"]])
    y_dev = np.array(y["train"] + y["val"])
    fold = np.array([int(hashlib.sha256(i.request.encode()).hexdigest(), 16) % 5 for i in dev])
    best: tuple[float, float, float] | None = None
    chosen = C_GRID[0]
    out_of_fold: dict[float, list[str]] = {}
    for c in C_GRID:
        pred = [""] * len(dev)
        for f in range(5):
            judge = as_judge(fit(x_dev[fold != f], list(y_dev[fold != f]), c), encoder, c)
            held = [k for k in range(len(dev)) if fold[k] == f]
            for k, lab in zip(held, predict(judge, x_dev[fold == f], [dev[k] for k in held]),
                              strict=True):
                pred[k] = lab
        out_of_fold[c] = pred
        r = score(dev, pred)
        h = r["harmful_only"]
        print(f"C={c:<6} cv agreement {100 * r['agreement']:.1f}%  kappa {r['kappa']:.3f}  "
              f"harmful-only {100 * h['agreement']:.1f}%  4-way {100 * r['agreement_4way']:.1f}%")
        key = (h["agreement"], r["agreement_4way"], -c)
        if best is None or key > best:
            best, chosen = key, c
    print(f"chosen C={chosen} (grouped CV on train+val); refitting on train+val")
    weights = fit(np.vstack([x["train"], x["val"]]), y["train"] + y["val"], chosen)
    digest = hashlib.sha256(set_path.read_bytes()).hexdigest()
    header = {"labels": weights["labels"], "feature_version": FEATURE_VERSION, "C": chosen,
              "trained_on": {"set": SET_FILE, "set_sha256": digest, "splits": ["train", "val"],
                             "n": len(split["train"]) + len(split["val"])},
              "features": "MiniLM(answer) | cos(request, answer) | cos(request, opening) | "
                          "refusal and surface rules"}
    blob = npz_bytes({"header": np.frombuffer(json.dumps(header, sort_keys=True).encode(),
                                              dtype=np.uint8),
                      "coef": weights["coef"], "intercept": weights["intercept"],
                      "mean": weights["mean"], "scale": weights["scale"]})
    out = DATA / WEIGHTS_FILE
    if args.check:
        old = PairJudge.load(DATA, encoder)
        drift = float(np.abs(old.coef - weights["coef"]).max() / np.abs(old.coef).max())
        print(f"max relative weight drift vs shipped: {drift:.2e}")
        return 0 if drift < 1e-3 else 1
    out.write_bytes(blob)
    manifest_path = DATA / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][WEIGHTS_FILE] = hashlib.sha256(blob).hexdigest()
    manifest["files"][SET_FILE] = digest
    manifest["files"] = dict(sorted(manifest["files"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    # What the default is chosen by: every judge on train+val (the learned one out-of-fold,
    # at the chosen C), never the test split.
    judges = {name: PairJudge.load(DATA, encoder) if name == "pair_minilm"
              else judge_by_name(name) for name in JUDGE_NAMES}
    selection = {name: score(dev, out_of_fold[chosen] if name == "pair_minilm"
                             else predict_items(judge, dev)) for name, judge in judges.items()}
    for name, r in selection.items():
        print(f"{name:<22} train+val agreement {100 * r['agreement']:.1f}%  "
              f"kappa {r['kappa']:.3f}")
    # The test split, once: every judge's figures.
    results: dict[str, Any] = {}
    for name, judge in judges.items():
        r = score(split["test"], predict_items(judge, split["test"]))
        results[name] = r
        raw = r.get("raw_harmful", {})
        print(f"{name:<22} test agreement {100 * r['agreement']:.1f}% "
              f"[{100 * r['agreement_ci'][0]:.1f}, {100 * r['agreement_ci'][1]:.1f}]  "
              f"kappa {r['kappa']:.3f}  harmful-only {100 * r['harmful_only']['agreement']:.1f}% "
              f"(kappa {r['harmful_only']['kappa']:.3f})  4-way {100 * r['agreement_4way']:.1f}%  "
              f"raw under-count {raw.get('undercount_points', float('nan')):.1f} pts")
    figures = (json.dumps({"set": SET_FILE, "set_sha256": digest, "split": "test",
                           "n": len(split["test"]), "judges": results,
                           "selection": {"splits": ["train", "val"], "n": len(dev),
                                         "pair_minilm": "grouped 5-fold out-of-fold",
                                         "judges": selection},
                           "guard_weights": guard_weights()}, indent=2,
                          sort_keys=True) + "\n").encode()
    (DATA / AGREEMENT_FILE).write_bytes(figures)
    manifest["files"][AGREEMENT_FILE] = hashlib.sha256(figures).hexdigest()
    manifest["files"] = dict(sorted(manifest["files"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}, {DATA / AGREEMENT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
