"""The refusal direction as a harmful-request detector, beside the shipped one (issue 13).

    .venv/bin/python bench/whitebox_projection_guard.py     # ~18 min on the shared 2 cores
    .venv/bin/python bench/whitebox_projection_guard.py --n-val 200 --n-test 300  # quicker

The white-box guard only open weights permit: project the local model's own residual activation
(at a post-instruction position of the chat template) onto the refusal direction and call the
projection a harmful-intent score. Measured on the embedded SmolLM2-135M-Instruct, against the
shipped harmful guard (n-grams + MiniLM cascade, through its own scan) on exactly the same items:

1. **direction** — difference of mean activations of harmful and harmless *train* instructions
   (the Arditi et al. splits; ``refusal-direction``'s own means code), per (layer, position);
2. **choose** — on a seeded uniform sample of the harmful detector's *val* set
   (scripts/detector_data.py, the data its threshold was tuned on), the candidate with the best
   AUROC, and the threshold at the val false-positive rate the shipped guard has on the same
   val items (its operating point);
3. **test**, once — a seeded uniform sample of the detector's *test* set, and the whole
   benign-alarming corpus test split: AUROC, TPR and FPR with Wilson 95 % intervals, for both;
4. **cost** — ms per prompt, one at a time, one torch thread, forward pass up to the chosen
   layer only, on test prompts neither scorer has seen (no cache hits), and RSS added.

Stages are cached in ``--out`` (means.pt, val.npz, test.npz), so a rerun only recomputes what
is missing. The machine is shared: timings are under whatever load there is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from wardgate.guards import ScanContext  # noqa: E402
from wardgate.guards.base import Action  # noqa: E402
from wardgate.guards.config import GuardSpec  # noqa: E402
from wardgate.guards.harmful import HarmfulRequestGuard  # noqa: E402
from wardgate.redteam.stats import wilson  # noqa: E402
from wardgate.whitebox.projection import (  # noqa: E402
    ProjectionScorer,
    auroc,
    auroc_table,
    choose_candidate,
    projections,
    threshold_at_fpr,
    threshold_at_tpr,
    unit_directions,
)

USER = ScanContext(stage="input", role="user")


def rss_mb() -> float:
    """Resident set size now (not the peak: building the data sets peaks higher)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1e3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def rate(hits: np.ndarray) -> dict[str, Any]:
    r = wilson(int(hits.sum()), len(hits))
    return {"k": r.successes, "n": r.n, "rate": r.value, "ci": [r.low, r.high]}


def auroc_or_nan(positive: np.ndarray, negative: np.ndarray) -> float:
    return auroc(positive, negative) if len(positive) and len(negative) else float("nan")


def fmt(r: dict[str, Any]) -> str:
    return f"{r['rate']:.1%} [{r['ci'][0]:.1%}, {r['ci'][1]:.1%}] ({r['k']}/{r['n']})"


def digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def cached(path: Path, texts: list[str], compute: Any) -> np.ndarray:
    """``compute()`` unless ``path`` holds scores for exactly these texts."""
    if path.is_file():
        saved = np.load(path)
        if str(saved["digest"]) == digest(texts):
            return np.asarray(saved["scores"])
    scores = np.asarray(compute())
    np.savez(path, scores=scores, digest=digest(texts))
    return scores


def detector_outcomes(guard: HarmfulRequestGuard, texts: list[str]) -> tuple[np.ndarray, ...]:
    """(score, blocked) of the shipped guard's own scan, each text as the user's message."""
    verdicts = [guard.scan(t, USER) for t in texts]
    return (np.array([v.scores.get("harmful", 0.0) for v in verdicts]),
            np.array([v.action is Action.BLOCK for v in verdicts]))  # fmt: skip


def side_by_side(labels: np.ndarray, proj: np.ndarray, proj_flag: np.ndarray,
                 det: np.ndarray, det_block: np.ndarray) -> dict[str, Any]:  # fmt: skip
    pos, neg = labels == 1, labels == 0
    out: dict[str, Any] = {"n_harmful": int(pos.sum()), "n_benign": int(neg.sum())}
    for name, score, flag in (("projection", proj, proj_flag), ("detector", det, det_block)):
        out[name] = {"tpr": rate(flag[pos]), "fpr": rate(flag[neg])}
        if pos.any() and neg.any():
            out[name]["auroc"] = auroc(score[pos], score[neg])
    return out


def per_source(sources: list[str], labels: np.ndarray, proj_flag: np.ndarray,
               det_block: np.ndarray) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for source in sorted(set(sources)):
        idx = np.array([s == source for s in sources])
        kind = "TPR" if labels[idx][0] == 1 else "FPR"
        rows.append({"source": source, "kind": kind, "n": int(idx.sum()),
                     "projection": rate(proj_flag[idx]), "detector": rate(det_block[idx])})
    return rows


def group_of(source: str) -> str:
    """Sources grouped as the docs' tables do (written benign one-offs together)."""
    if source.startswith(("alarming/", "benign_doc/")):
        return source.split("/")[0]
    keep = {"alpaca", "refusal_direction/test", "refusal_direction/val", "written/lookalike",
            "written/everyday", "written/operator", "written/framed_benign",
            "written/framed_harmful", "written/harmful_varied", "written/harmful",
            "generated/alarming"}  # fmt: skip
    return source if source in keep else "written/other_benign"


def timing(fn: Any, texts: list[str]) -> dict[str, float]:
    fn(texts[0])  # warm
    samples = []
    for text in texts[1:]:
        start = time.perf_counter()
        fn(text)
        samples.append((time.perf_counter() - start) * 1000)
    ordered = sorted(samples)
    return {"n": len(samples), "p50_ms": statistics.median(samples),
            "p90_ms": ordered[round(0.9 * (len(ordered) - 1))],
            "mean_ms": statistics.fmean(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("whitebox-reports/projection"))
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: embedded)")
    parser.add_argument("--n-train", type=int, default=128, help="per class, for the means")
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--positions", type=int, default=5)
    parser.add_argument("--max-layer-frac", type=float, default=0.8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--timing-n", type=int, default=41)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = print

    # ---- the shipped detector first, so its RSS is measured without torch in the process
    rss0 = rss_mb()
    guard = HarmfulRequestGuard(GuardSpec(type="harmful"))
    guard.scan("warm up the detector", USER)
    rss_detector = rss_mb() - rss0

    from detector_data import build

    data = build()
    rng = random.Random(f"{args.seed}:projection")
    val_all, test_all = data.of("harmful", "val"), data.of("harmful", "test")
    val = rng.sample(val_all, min(args.n_val, len(val_all)))
    test_order = rng.sample(test_all, len(test_all))
    test = test_order[: args.n_test]
    alarming = [e for e in test_all if e.source.startswith("alarming/")]
    timing_items = [e for e in test_order[args.n_test:] if not e.source.startswith("alarming/")]
    timing_texts = [e.text for e in timing_items[: args.timing_n]]

    # ---- torch side
    import torch

    from wardgate.embedded import embedded_model_path
    from wardgate.whitebox import train
    from wardgate.whitebox.data import find_splits
    from wardgate.whitebox.direction import DirectionPlan, compute_means

    torch.set_num_threads(1)
    model_path = args.model or embedded_model_path()
    rss1 = rss_mb()
    t = time.perf_counter()
    model, tokenizer = train.load_model(model_path)
    tokenizer.padding_side = "left"
    load_s = time.perf_counter() - t
    rss_model = rss_mb() - rss1
    n_layers = len(model.model.layers)
    max_layer = max(1, int(args.max_layer_frac * n_layers))
    plan = DirectionPlan(model=model_path, out=args.out, splits=find_splits(),
                         n_train=args.n_train, positions=args.positions,
                         batch_size=args.batch_size, seed=args.seed)  # fmt: skip
    t = time.perf_counter()
    means = compute_means(plan, model, tokenizer)
    log(f"means over {means['n']} train instructions in {time.perf_counter() - t:.0f}s")
    units = unit_directions(means["diff"])[:max_layer]

    # ---- val: choose the candidate and the threshold
    t = time.perf_counter()
    val_texts = [e.text for e in val]
    val_proj = cached(args.out / "val.npz", val_texts,
                      lambda: projections(model, tokenizer, val_texts, units, args.batch_size))
    val_labels = np.array([e.label for e in val])
    log(f"val projections: {len(val)} prompts × {max_layer} layers × {args.positions} "
        f"positions in {time.perf_counter() - t:.0f}s")
    best = choose_candidate(val_proj[val_labels == 1], val_proj[val_labels == 0])
    col = val_proj[:, best.layer, args.positions + best.position]
    det_val_score, det_val_block = detector_outcomes(guard, val_texts)
    det_val_fpr = float(det_val_block[val_labels == 0].mean())
    threshold = threshold_at_fpr(col[val_labels == 0], det_val_fpr)
    val_summary = side_by_side(val_labels, col, col >= threshold, det_val_score, det_val_block)
    public = np.array([e.source in ("refusal_direction/val", "alpaca") for e in val])
    val_public_auroc = auroc_or_nan(col[public & (val_labels == 1)],
                                    col[public & (val_labels == 0)])
    log(f"chosen on val: layer {best.layer}, position {best.position} (AUROC {best.auroc:.3f}; "
        f"Arditi val vs Alpaca {val_public_auroc:.3f}); threshold {threshold:.3f} at the "
        f"detector's val FPR {det_val_fpr:.2%}")

    # ---- test, once: the same items for both scorers
    scorer = ProjectionScorer(model, tokenizer, units[best.layer, args.positions + best.position],
                              best.layer, best.position, threshold)  # fmt: skip
    seen = {e.text for e in test}
    items = test + [e for e in alarming if e.text not in seen]
    texts = [e.text for e in items]
    t = time.perf_counter()
    proj = cached(args.out / f"test-l{best.layer}p{best.position}.npz", texts,
                  lambda: scorer.scores(texts, args.batch_size))
    log(f"test projections: {len(texts)} prompts in {time.perf_counter() - t:.0f}s")
    det_score, det_block = detector_outcomes(guard, texts)
    labels = np.array([e.label for e in items])
    flag = proj >= threshold
    main_idx = np.arange(len(test))
    alarm_idx = np.array([i for i, e in enumerate(items) if e.source.startswith("alarming/")])
    result_test = side_by_side(labels[main_idx], proj[main_idx], flag[main_idx],
                               det_score[main_idx], det_block[main_idx])  # fmt: skip
    public_h = np.array([e.source == "refusal_direction/test" for e in test])
    public_b = np.array([e.source == "alpaca" for e in test])
    result_test["public_auroc"] = {
        "projection": auroc_or_nan(proj[main_idx][public_h], proj[main_idx][public_b]),
        "detector": auroc_or_nan(det_score[main_idx][public_h], det_score[main_idx][public_b]),
    }
    sources = [group_of(e.source) for e in test]
    breakdown = per_source(sources, labels[main_idx], flag[main_idx], det_block[main_idx])
    # A second operating point, also chosen on val: the projection's threshold where it flags
    # as many val harmful items as the detector blocks (recall matched). Low FPR at 20 % recall
    # says nothing about intent; at equal recall it does.
    det_val_tpr = float(det_val_block[val_labels == 1].mean())
    matched = threshold_at_tpr(col[val_labels == 1], det_val_tpr)
    mflag = proj >= matched
    result_matched = {
        "threshold": matched, "detector_val_tpr": det_val_tpr,
        "val": side_by_side(val_labels, col, col >= matched, det_val_score, det_val_block),
        "test": side_by_side(labels[main_idx], proj[main_idx], mflag[main_idx],
                             det_score[main_idx], det_block[main_idx]),
        "alarming_fpr": rate(mflag[alarm_idx]),
    }  # fmt: skip
    # Threshold-free: do harmful test requests outrank benign-alarming prompts?
    harmful_main = labels[main_idx] == 1
    alarming_auroc = {
        "projection": auroc(proj[main_idx][harmful_main], proj[alarm_idx]),
        "detector": auroc(det_score[main_idx][harmful_main], det_score[alarm_idx]),
    }
    np.savez(args.out / "test-scores.npz", projection=proj, detector=det_score,
             blocked=det_block, labels=labels, sources=np.array([e.source for e in items]))
    result_alarming = {"projection": rate(flag[alarm_idx]), "detector": rate(det_block[alarm_idx]),
                       "auroc_vs_harmful_test": alarming_auroc,
                       "by_slice": per_source([items[i].source for i in alarm_idx],
                                              labels[alarm_idx], flag[alarm_idx],
                                              det_block[alarm_idx])}  # fmt: skip

    # ---- cost, one prompt at a time, prompts neither has seen
    fresh = HarmfulRequestGuard(GuardSpec(type="harmful"))
    cost = {
        "projection": timing(lambda s: scorer.scores([s]), timing_texts),
        "detector": timing(lambda s: fresh.scan(s, USER), timing_texts),
        "full_forward": timing(lambda s: _full_forward(model, tokenizer, s), timing_texts[:11]),
        "tokens_mean": statistics.fmean(
            len(tokenizer(train.prompt_text(tokenizer, s), add_special_tokens=False)["input_ids"])
            for s in timing_texts),
        "layers_run": best.layer, "layers_total": n_layers,
        "rss_detector_mb": rss_detector, "rss_torch_model_mb": rss_model,
        "model_load_s": load_s,
    }  # fmt: skip
    payload = {
        "model": str(model_path), "params": {k: str(v) for k, v in vars(args).items()},
        "train_n": means["n"], "chosen": {"layer": best.layer, "position": best.position,
                                          "val_auroc": best.auroc,
                                          "val_public_auroc": val_public_auroc},
        "threshold": threshold, "detector_val_fpr": det_val_fpr, "val": val_summary,
        "val_auroc_by_layer": auroc_table(val_proj[val_labels == 1], val_proj[val_labels == 0]),
        "test": result_test, "test_breakdown": breakdown, "alarming": result_alarming,
        "recall_matched": result_matched,
        "cost": cost,
    }  # fmt: skip
    (args.out / "projection.json").write_text(json.dumps(payload, indent=1))
    report(payload)


def _full_forward(model: Any, tokenizer: Any, text: str) -> None:
    """The whole model over the prompt: what prompt processing costs before generation."""
    import torch

    from wardgate.whitebox.direction import _encode_prompts

    ids, mask = _encode_prompts(tokenizer, [text])
    with torch.no_grad():
        model.model(input_ids=ids, attention_mask=mask)


def report(p: dict[str, Any]) -> None:
    c = p["chosen"]
    print(f"\n== refusal-direction projection vs shipped harmful detector ({p['model']})")
    print(f"  direction: means over {p['train_n']} train instructions; chosen on val: layer "
          f"{c['layer']}, position {c['position']}, val AUROC {c['val_auroc']:.3f} (Arditi val"
          f" vs Alpaca {c['val_public_auroc']:.3f})")
    print(f"  threshold {p['threshold']:.4f} = the detector's val FPR {p['detector_val_fpr']:.2%}")
    for name, block in (("VAL", p["val"]), ("TEST", p["test"])):
        print(f"  {name} ({block['n_harmful']} harmful, {block['n_benign']} benign)")
        for who in ("projection", "detector"):
            r = block[who]
            print(f"    {who:10s}  AUROC {r.get('auroc', float('nan')):.3f}  TPR {fmt(r['tpr'])}"
                  f"  FPR {fmt(r['fpr'])}")
    pa = p["test"]["public_auroc"]
    print(f"  TEST AUROC, HarmBench/StrongREJECT vs Alpaca only: projection "
          f"{pa['projection']:.3f}, detector {pa['detector']:.3f}")
    print("  TEST by source (projection | detector)")
    for row in p["test_breakdown"]:
        print(f"    {row['source']:26s} n={row['n']:4d} {row['kind']} "
              f"{fmt(row['projection'])} | {fmt(row['detector'])}")
    a = p["alarming"]
    print(f"  BENIGN-ALARMING test FPR: projection {fmt(a['projection'])} | "
          f"detector {fmt(a['detector'])}")
    for row in a["by_slice"]:
        print(f"    {row['source']:32s} n={row['n']:3d} {fmt(row['projection'])} | "
              f"{fmt(row['detector'])}")
    aa = a["auroc_vs_harmful_test"]
    print(f"  AUROC harmful test items vs benign-alarming test: projection {aa['projection']:.3f},"
          f" detector {aa['detector']:.3f}")
    m = p["recall_matched"]
    print(f"  RECALL-MATCHED projection threshold {m['threshold']:.4f} (val TPR >= the "
          f"detector's {m['detector_val_tpr']:.1%}):")
    for name in ("val", "test"):
        r = m[name]["projection"]
        print(f"    {name:4s} projection TPR {fmt(r['tpr'])}  FPR {fmt(r['fpr'])}")
    print(f"    benign-alarming test FPR {fmt(m['alarming_fpr'])}")
    cost = p["cost"]
    print(f"  COST per prompt, one at a time ({cost['projection']['n']} unseen test prompts, "
          f"~{cost['tokens_mean']:.0f} tokens with the template):")
    for who in ("projection", "detector", "full_forward"):
        r = cost[who]
        print(f"    {who:12s} p50 {r['p50_ms']:8.1f} ms  p90 {r['p90_ms']:8.1f} ms")
    print(f"    projection runs {cost['layers_run']} of {cost['layers_total']} layers; RSS added:"
          f" detector {cost['rss_detector_mb']:.0f} MB, torch + model "
          f"{cost['rss_torch_model_mb']:.0f} MB (load {cost['model_load_s']:.0f} s)")


if __name__ == "__main__":
    main()
