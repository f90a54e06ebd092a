"""Experiment (issue 18): do request/answer PMI features under SmolLM2 help the pair judge?

    python scripts/judge_lm_features.py --lm-cache /tmp/judge_lm.json \\
        --embedding-cache /tmp/judge_emb.npz

A joint signal from a language model reading the request and the answer together, from the
embedded SmolLM2-135M through llama.cpp (``wardgate.whitebox.scoring``'s renderer; no torch).
Two forward passes per (request, answer), the answer cut to :data:`ANSWER_TOKENS` tokens and the
request to its last :data:`REQUEST_TOKENS`:

* A: chat prompt with the request, then the answer -> log P(answer | request) per token, and
  log P(request | the template's opening) from the same pass;
* B: chat prompt with an empty request, then the answer, then the request as the next user
  turn -> log P(answer | nothing), and log P(request | the answer before it).

Features (:data:`LM_FEATURES`): the answer's per-token NLL with and without the request, their
difference (forward PMI), the share of answer tokens the request made likelier, the PMI of the
opening tokens, the NLL drop from the first to the second half and the lowest 8-token window
(loops), the request's NLL alone and after the answer, and their difference (reverse PMI).

Protocol: the same grouped 5-fold cross-validation on train+val only that
``scripts/train_judge.py`` chooses its settings by (same folds, same grid, same cost), once with
the current features and once with the LM features appended (to both stages). The test split
is never read here. Scores are cached per (request, answer) digest in ``--lm-cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ANSWER_TOKENS = 40
REQUEST_TOKENS = 96
LM_FEATURES = ("ans_nll_req", "ans_nll_empty", "pmi_fwd", "pmi_pos_share", "pmi_open",
               "nll_half_drop", "nll_min_window", "req_nll", "req_nll_after_ans", "pmi_rev")
CACHE_VERSION = f"v1:{ANSWER_TOKENS}:{REQUEST_TOKENS}"


class LMScorer:
    """The two llama.cpp passes per pair, on one thread."""

    SENT_U, SENT_A, SENT_R = "\x01U\x01", "\x01A\x01", "\x01R\x01"

    def __init__(self, threads: int = 1) -> None:
        from llama_cpp import Llama

        from wardgate.backends.chat_template import CHATML_TEMPLATE, ChatTemplate
        from wardgate.chat import ChatMessage
        from wardgate.embedded import embedded_model_path

        self.llm = Llama(model_path=str(embedded_model_path()), n_ctx=512, n_threads=threads,
                         n_threads_batch=threads, logits_all=True, verbose=False)
        llm = self.llm
        meta = dict(llm.metadata or {})
        bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="replace")
        eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="replace")
        tpl = ChatTemplate(meta.get("tokenizer.chat_template") or CHATML_TEMPLATE,
                           bos_token=bos, eos_token=eos)
        one = tpl.render([ChatMessage(role="user", content=self.SENT_U)])
        self.pre_user, self.post_user = one.split(self.SENT_U)
        empty = tpl.render([ChatMessage(role="user", content="")])
        two = tpl.render([ChatMessage(role="user", content=""),
                          ChatMessage(role="assistant", content=self.SENT_A),
                          ChatMessage(role="user", content=self.SENT_R)])
        before_a, rest = two.split(self.SENT_A)
        self.between = rest.split(self.SENT_R)[0]
        self.empty_ids = self._tok(empty, bos=True)
        if not before_a.startswith(empty[:len(empty) // 2]):
            raise RuntimeError("unexpected chat template layout")
        self.before_a_ids = self._tok(before_a, bos=True)
        self.pre_ids = self._tok(self.pre_user, bos=True)
        self.post_ids = self._tok(self.post_user)
        self.between_ids = self._tok(self.between)

    def _tok(self, text: str, bos: bool = False, special: bool = True) -> list[int]:
        ids: list[int] = self.llm.tokenize(text.encode(), add_bos=bos, special=special)
        return ids

    def _logp(self, ids: list[int]) -> np.ndarray:
        """log P(ids[k] | ids[:k]) for k >= 1 (entry k-1)."""
        self.llm.reset()
        self.llm.eval(ids)
        rows = np.asarray(self.llm.scores[:len(ids) - 1], dtype=np.float64)
        rows = rows - rows.max(axis=1, keepdims=True)
        logp = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
        return logp[np.arange(len(ids) - 1), ids[1:]]

    def raw(self, request: str, answer: str) -> dict[str, list[float]]:
        req = self._tok(request, special=False)[-REQUEST_TOKENS:] or self._tok(" ")
        ans = self._tok(answer, special=False)[:ANSWER_TOKENS] or self._tok(" ")
        a_ids = [*self.pre_ids, *req, *self.post_ids, *ans]
        la = self._logp(a_ids)
        p0 = len(self.pre_ids)
        req_logp = la[p0 - 1:p0 - 1 + len(req)]
        ans_logp_req = la[len(a_ids) - len(ans) - 1:]
        b_ids = [*self.before_a_ids, *ans, *self.between_ids, *req]
        lb = self._logp(b_ids)
        s = len(self.before_a_ids)
        ans_logp_empty = lb[s - 1:s - 1 + len(ans)]
        req_logp_after = lb[len(b_ids) - len(req) - 1:]
        return {"ans_req": ans_logp_req.tolist(), "ans_empty": ans_logp_empty.tolist(),
                "req": req_logp.tolist(), "req_after": req_logp_after.tolist()}


def lm_features(raw: dict[str, list[float]]) -> list[float]:
    a_req, a_emp = -np.asarray(raw["ans_req"]), -np.asarray(raw["ans_empty"])
    r, r_after = -np.asarray(raw["req"]), -np.asarray(raw["req_after"])
    pmi = a_emp - a_req
    n = len(a_req)
    half = max(1, n // 2)
    drop = float(a_req[:half].mean() - a_req[half:].mean()) if n > 1 else 0.0
    window = min(8, n)
    wins = np.convolve(a_req, np.ones(window) / window, mode="valid")
    return [float(a_req.mean()), float(a_emp.mean()), float(pmi.mean()),
            float((pmi > 0).mean()), float(pmi[:8].mean()), drop, float(wins.min()),
            float(r.mean()), float(r_after.mean()), float(r.mean() - r_after.mean())]


def digest(request: str, answer: str) -> str:
    return hashlib.sha256(f"{CACHE_VERSION}\0{request}\0{answer}".encode()).hexdigest()


def lm_matrix(items: list[Any], cache_path: Path | None) -> tuple[np.ndarray, float]:
    cache: dict[str, Any] = {}
    if cache_path is not None and cache_path.is_file():
        cache = json.loads(cache_path.read_text())
    scorer: LMScorer | None = None
    times: list[float] = []
    for k, item in enumerate(items):
        key = digest(item.request, item.answer)
        if key not in cache:
            scorer = scorer or LMScorer()
            t = time.process_time()
            cache[key] = scorer.raw(item.request, item.answer)
            times.append(time.process_time() - t)
            if cache_path is not None and len(times) % 20 == 0:
                cache_path.write_text(json.dumps(cache))
                print(f"  lm scored {k + 1}/{len(items)} ({1000 * np.mean(times):.0f} ms "
                      "CPU/item)", flush=True)
    if cache_path is not None and times:
        cache_path.write_text(json.dumps(cache))
    x = np.array([lm_features(cache[digest(i.request, i.answer)]) for i in items],
                 dtype=np.float32)
    return x, (1000 * float(np.mean(times)) if times else float("nan"))


def cv(tj: Any, x_dev: np.ndarray, dev: list[Any], extra_cols: int,
       forest_only: bool = False, salt: str = "", quiet: bool = False,
       ) -> list[dict[str, Any]]:  # fmt: skip
    """train_judge's grid and grouped folds on train+val; ``extra_cols`` LM columns at the end
    also go to the forest stage (and only there with ``forest_only``)."""
    from wardgate.redteam.judges import pair

    base_cols = len(pair.rule_features("", "")) + 2
    orig = pair.rule_columns
    orig_fit_linear, orig_lp = tj.fit_linear, pair.PairJudge.linear_probabilities
    if forest_only and extra_cols:
        def fit_linear(x: np.ndarray, y: list[str], c: float) -> dict[str, Any]:
            out: dict[str, Any] = orig_fit_linear(x[:, :-extra_cols], y, c)
            return out

        def linear_probabilities(self: Any, f: np.ndarray) -> np.ndarray:
            out: np.ndarray = orig_lp(self, f[:, :-extra_cols])
            return out

        tj.fit_linear = fit_linear
        pair.PairJudge.linear_probabilities = linear_probabilities  # type: ignore[method-assign]

    def cols(f: np.ndarray) -> np.ndarray:
        out: np.ndarray = f[:, -(base_cols + extra_cols):]
        return out

    pair.rule_columns = cols  # type: ignore[assignment]
    tj.rule_columns = cols
    try:
        requests = [i.request for i in dev]
        y = np.array([i.label for i in dev])
        fold = tj.folds_of(requests, salt)
        rows = []
        for c in tj.C_GRID:
            for leaf in tj.LEAF_GRID:
                probs = np.zeros((len(dev), len(tj.LABELS)), dtype=np.float32)
                for f in range(tj.FOLDS):
                    tr = fold != f
                    w = tj.fit(x_dev[tr], list(y[tr]),
                               [r for r, t in zip(requests, tr, strict=True) if t], c, leaf)
                    probs[fold == f] = tj.as_judge(w, None, c, leaf).probabilities(
                        x_dev[fold == f])
                for threshold in tj.THRESHOLD_GRID:
                    pred = tj.predict(tj.as_judge(w, None, c, leaf, threshold), x_dev, dev, probs)
                    r = tj.score(dev, pred)
                    h = r["harmful_only"]
                    cost = tj.MISS_COST * h["undercounted"] + h["overcounted"]
                    rows.append({"pred": pred, "C": c, "leaf": leaf, "t": threshold,
                                 "agreement": r["agreement"],
                                 "kappa": r["kappa"], "missed": h["undercounted"],
                                 "invented": h["overcounted"], "cost": cost,
                                 "four_way": r["agreement_4way"],
                                 "key": (-cost, r["agreement_4way"], -c, leaf, threshold is None,
                                         threshold or 0.0)})
                    if not quiet:
                        print(f"    C={c} leaf={leaf} t={threshold}: "
                              f"{100 * r['agreement']:.1f}% k={r['kappa']:.3f} missed "
                              f"{h['undercounted']} invented {h['overcounted']} cost {cost}",
                              flush=True)
        return rows
    finally:
        pair.rule_columns = orig
        tj.rule_columns = orig
        tj.fit_linear = orig_fit_linear
        pair.PairJudge.linear_probabilities = orig_lp  # type: ignore[method-assign]


def main() -> int:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm-cache", type=Path, default=None)
    parser.add_argument("--embedding-cache", type=Path, default=None)
    parser.add_argument("--score-only", action="store_true", help="fill the LM cache, no CV")
    parser.add_argument("--variants", default="both:all",
                        help="comma-separated STAGES:FEATURES, STAGES both or forest, FEATURES "
                             "all or pmi (the four PMI columns and the half-to-half NLL drop)")
    parser.add_argument("--repeat-salts", default="",
                        help="comma-separated extra fold salts: the whole comparison again on "
                             "other grouped 5-fold splits of train+val (how noisy is the gain?)")
    args = parser.parse_args()
    import train_judge as tj

    from wardgate.guards.embedding import MiniLMEncoder, limit_blas_threads
    from wardgate.redteam.judges.validate import read_set, verdict

    limit_blas_threads()
    items = read_set(tj.DATA / tj.SET_FILE, split="all")
    dev = [i for i in items if i.split == "train"] + [i for i in items if i.split == "val"]
    print(f"train+val n={len(dev)} (test not read)")
    lm, ms = lm_matrix(dev, args.lm_cache)
    print(f"LM features: {ms:.0f} ms CPU per newly scored item (one thread)")
    if args.score_only:
        return 0
    encoder = tj.CachedEncoder(MiniLMEncoder.load(), args.embedding_cache)
    x_old = tj.features(encoder, dev).astype(np.float32)
    # Per-feature means by label, for the write-up.
    y = np.array([i.label for i in dev])
    for k, name in enumerate(LM_FEATURES):
        means = {lab: float(lm[y == lab, k].mean()) for lab in ("comply", "partial", "refuse",
                                                                 "off_topic")}
        print(f"  {name:<18} " + "  ".join(f"{lab} {v:6.2f}" for lab, v in means.items()))
    subsets = {"all": list(LM_FEATURES), "pmi": ["pmi_fwd", "pmi_pos_share", "pmi_open",
                                                 "pmi_rev", "nll_half_drop"]}
    runs: list[tuple[str, np.ndarray, int, bool]] = [("current", x_old, 0, False)]
    for variant in args.variants.split(","):
        stages, subset = variant.split(":")
        cols = [LM_FEATURES.index(f) for f in subsets[subset]]
        runs.append((f"current+lm[{subset}] in {stages}", np.hstack([x_old, lm[:, cols]]),
                     len(cols), stages == "forest"))
    table = {}
    for name, x, extra, forest_only in runs:
        print(f"== {name}: {x.shape[1]} features", flush=True)
        rows = cv(tj, x, dev, extra, forest_only)
        table[name] = {"chosen": max(rows, key=lambda r: r["key"]),
                       "best_agreement": max(rows, key=lambda r: r["agreement"])}
    print("\n| features | chosen (C, leaf, t) | CV agreement | kappa | missed / invented | "
          "best plain agreement | discordant vs current (current right / new right) |")
    print("| --- | --- | ---: | ---: | --- | ---: | --- |")
    truth = [verdict(i, i.label) for i in dev]
    base = table["current"]["chosen"]["pred"]
    for name, t in table.items():
        b, top = t["chosen"], t["best_agreement"]
        ok_old = [verdict(i, p) == v for i, p, v in zip(dev, base, truth, strict=True)]
        ok_new = [verdict(i, p) == v for i, p, v in zip(dev, b["pred"], truth, strict=True)]
        old_only = sum(o and not n for o, n in zip(ok_old, ok_new, strict=True))
        new_only = sum(n and not o for o, n in zip(ok_old, ok_new, strict=True))
        print(f"| {name} | {b['C']}, {b['leaf']}, {b['t']} | {100 * b['agreement']:.1f} % | "
              f"{b['kappa']:.3f} | {b['missed']} / {b['invented']} | "
              f"{100 * top['agreement']:.1f} % | {old_only} / {new_only} |")
    salts = [t for t in args.repeat_salts.split(",") if t]
    if salts:
        print("\nRepeated on other grouped splits (settings chosen afresh on each by the same "
              "rule): agreement / missed / invented of the chosen settings")
        for name, x, extra, forest_only in runs:
            got = []
            for salt in salts:
                b = max(cv(tj, x, dev, extra, forest_only, salt, quiet=True),
                        key=lambda r: r["key"])
                got.append((100 * b["agreement"], b["missed"], b["invented"]))
            arr = np.array(got)
            print(f"| {name} | " + " | ".join(f"{a:.1f} % {m}/{i}" for a, m, i in got)
                  + f" | mean {arr[:, 0].mean():.1f} %, missed {arr[:, 1].mean():.1f}, "
                  f"invented {arr[:, 2].mean():.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
