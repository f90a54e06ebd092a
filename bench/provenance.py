"""Provenance benchmark: watermark detection power, false positives, quality cost, robustness,
throughput, and receipt signing cost. Every figure in docs/provenance.md comes from here.

    # 1. generate (CPU-heavy; resumable: rerun to continue, stops itself after --budget-s)
    /work/wt/heavy .venv/bin/python bench/provenance.py generate --budget-s 600
    # 2. score everything generated so far and write the report
    .venv/bin/python bench/provenance.py report

Generation: SmolLM2-135M-Instruct (the embedded GGUF, llama.cpp, 1 thread per job), answers to
prompts from the *test* split of the public harmless set (refusal-direction release,
``../shared/data/public``), 200 new tokens each (end-of-sequence suppressed, as in the KGW
paper's fixed-length setting), temperature 0.7, top-k 40, min-p 0.05 (the gateway's defaults).
Configurations run prompt by prompt, all configurations of one prompt together, so a run cut
short leaves every configuration with the same prompts (the report states the counts). The
grid's second tier (δ = 1 and 4) runs on the first ``--tier-b-prompts`` prompts only.

Human texts for false positives: docstrings of the Python standard library and installed
packages (written by people, long before these models), at least 60 tokens, first 200 tokens
scored. Nothing here is tuned: γ = 0.25 and z ≥ 4 are the paper's values and the defaults.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import random
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wardgate.provenance.config import WatermarkConfig  # noqa: E402
from wardgate.provenance.detect import detect_tokens  # noqa: E402
from wardgate.provenance.watermark import SamplerSettings, make_scheme  # noqa: E402

OUT = ROOT / "bench" / "results" / "provenance"
PUBLIC = ROOT.parent / "shared" / "data" / "public" / "refusal_direction"
if not PUBLIC.is_dir():
    PUBLIC = Path("/work/shared/data/public/refusal_direction")
#: A published benchmark key: the numbers must be reproducible, nothing here is secret.
BENCH_KEY = b"wardgate-provenance-benchmark-key-v1-not-a-secret"
TOKENS = 200
CHECKPOINTS = (50, 100, 200)
TEMPERATURE = 0.7
SEED = 20261202

TIER_A: list[tuple[str, dict[str, Any] | None]] = [
    ("plain", None),
    ("kgw-d2", {"scheme": "kgw", "delta": 2.0}),
    ("selfhash-d2", {"scheme": "selfhash", "delta": 2.0}),
    ("expmin", {"scheme": "expmin"}),
]
TIER_B: list[tuple[str, dict[str, Any] | None]] = [
    ("kgw-d1", {"scheme": "kgw", "delta": 1.0}),
    ("kgw-d4", {"scheme": "kgw", "delta": 4.0}),
    ("selfhash-d1", {"scheme": "selfhash", "delta": 1.0}),
    ("selfhash-d4", {"scheme": "selfhash", "delta": 4.0}),
]
CONFIGS = dict(TIER_A + TIER_B)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def prompts(count: int) -> list[str]:
    rows = json.loads((PUBLIC / "splits_harmless_test.json").read_text())
    items = sorted({r["instruction"].strip() for r in rows if r["instruction"].strip()})
    random.Random(SEED).shuffle(items)
    return items[:count]


def scheme_for(name: str) -> Any:
    cfg = CONFIGS[name]
    return make_scheme(WatermarkConfig(**cfg), BENCH_KEY) if cfg else None


# -- generation ------------------------------------------------------------------------


def _model() -> Any:
    from llama_cpp import Llama

    from wardgate.embedded import embedded_model_path
    from wardgate.whitebox.scoring import chat_renderer

    llm = Llama(
        model_path=str(embedded_model_path()), n_ctx=1024, n_threads=1, logits_all=False,
        verbose=False,
    )  # fmt: skip
    return llm, chat_renderer(llm)


def generate(args: argparse.Namespace) -> None:
    from llama_cpp import LogitsProcessorList

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "generations.jsonl"
    done: set[tuple[int, str]] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            done.add((row["prompt_index"], row["config"]))
    llm, render = _model()
    eos = llm.token_eos()
    sampler = SamplerSettings(temperature=TEMPERATURE)
    schemes = {name: scheme_for(name) for name in CONFIGS}
    started = time.monotonic()
    made = 0
    with path.open("a") as out:
        for index, prompt in enumerate(prompts(args.prompts)):
            names = [n for n, _ in TIER_A] + (
                [n for n, _ in TIER_B] if index < args.tier_b_prompts else []
            )
            for name in names:
                if (index, name) in done:
                    continue
                if time.monotonic() - started > args.budget_s:
                    print(f"budget reached: {made} generations this run", flush=True)
                    return
                scheme = schemes[name]

                def processor(ids: Any, scores: Any, scheme: Any = scheme) -> Any:
                    scores[eos] = -np.inf  # fixed length, as in the KGW paper
                    return scheme.bias(ids, scores, sampler) if scheme is not None else scores

                prompt_ids = render(prompt)
                llm.reset()
                t0 = time.perf_counter()
                result = llm.create_completion(
                    prompt=prompt_ids, max_tokens=TOKENS, temperature=TEMPERATURE, top_k=40,
                    min_p=0.05, top_p=1.0, seed=SEED + index,
                    logits_processor=LogitsProcessorList([processor]),
                )  # fmt: skip
                seconds = time.perf_counter() - t0
                text = result["choices"][0]["text"]
                n = result["usage"]["completion_tokens"]
                row = {
                    "prompt_index": index, "config": name, "text": text, "tokens": n,
                    "seconds": round(seconds, 4), "prompt_tokens": len(prompt_ids),
                }  # fmt: skip
                out.write(json.dumps(row) + "\n")
                out.flush()
                made += 1
        print(f"all prompts done: {made} generations this run", flush=True)


# -- scoring ---------------------------------------------------------------------------


def _vocab() -> Any:
    from wardgate.config import ModelConfig
    from wardgate.provenance.vocab import Vocabulary

    return Vocabulary(ModelConfig(name="smol"))


def human_texts(limit: int) -> list[str]:
    """Docstrings from the standard library and installed packages, deduplicated, in a
    fixed order; only prose-looking ones (mostly letters, at least 60 words)."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    seen: set[str] = set()
    texts: list[str] = []
    for root in roots:
        for file in sorted(root.rglob("*.py")):
            if "wardgate" in file.parts or "test" in file.name:
                continue
            try:
                tree = ast.parse(file.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError, RecursionError):
                continue
            for node in ast.walk(tree):
                if not isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                ):
                    continue
                doc = ast.get_docstring(node)
                if not doc or len(doc.split()) < 60:
                    continue
                letters = sum(c.isalpha() or c.isspace() for c in doc) / len(doc)
                digest = hashlib.sha256(doc.encode()).hexdigest()
                if letters < 0.85 or digest in seen:
                    continue
                seen.add(digest)
                texts.append(doc)
                if len(texts) >= limit:
                    return texts
    return texts


def substitute(text: str, fraction: float, pool: list[str], rng: random.Random) -> str:
    """Replace ``fraction`` of the words with random words from ``pool``."""
    words = text.split(" ")
    positions = [i for i, w in enumerate(words) if w.strip()]
    for i in rng.sample(positions, round(fraction * len(positions))):
        words[i] = rng.choice(pool)
    return " ".join(words)


def perplexity(llm: Any, prompt_ids: list[int], answer_ids: list[int]) -> float:
    """exp(mean negative log-likelihood) of the answer given the prompt, unwatermarked model."""
    from wardgate.whitebox.scoring import answer_nll

    nll, n = answer_nll(llm, prompt_ids, answer_ids)
    return math.exp(nll / n) if n else float("nan")


def report(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in (OUT / "generations.jsonl").read_text().splitlines()]
    vocab = _vocab()
    by_config: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row["ids"] = vocab.tokenize(row["text"])
        by_config.setdefault(row["config"], []).append(row)
    result: dict[str, Any] = {"key": BENCH_KEY.decode(), "threshold": 4.0, "configs": {}}
    rng = random.Random(SEED)
    pool = [w for r in rows if r["config"] == "plain" for w in r["text"].split() if w.isalpha()]
    for name, items in sorted(by_config.items()):
        entry: dict[str, Any] = {"n": len(items), "watermark": CONFIGS[name]}
        scheme = scheme_for(name) or scheme_for("kgw-d2")
        for t in CHECKPOINTS:
            ok = [r for r in items if len(r["ids"]) >= t]
            hits = sum(
                detect_tokens(scheme, r["ids"][:t], threshold=4, min_tokens=1).z >= 4 for r in ok
            )
            entry[f"tpr@{t}"] = {"k": hits, "n": len(ok), "wilson95": wilson(hits, len(ok))}
        for fraction in (0.10, 0.25):
            hits = 0
            for r in items:
                edited = vocab.tokenize(substitute(r["text"], fraction, pool, rng))[:TOKENS]
                hits += detect_tokens(scheme, edited, threshold=4, min_tokens=1).z >= 4
            entry[f"tpr_sub{int(fraction * 100)}"] = {
                "k": hits, "n": len(items), "wilson95": wilson(hits, len(items)),
            }  # fmt: skip
        zs = [detect_tokens(scheme, r["ids"][:TOKENS], threshold=4, min_tokens=1).z for r in items]
        entry["median_z@200"] = float(np.median(zs))
        tokens = sum(r["tokens"] for r in items)
        entry["tokens_per_s"] = tokens / sum(r["seconds"] for r in items)
        result["configs"][name] = entry
    plain_rate = result["configs"].get("plain", {}).get("tokens_per_s")
    for entry in result["configs"].values():
        if plain_rate:
            entry["throughput_vs_plain"] = entry["tokens_per_s"] / plain_rate
    result["perplexity"] = (
        _perplexities(by_config, args.ppl_prompts)
        if args.ppl_prompts
        else {"scorer": "not run (--ppl-prompts 0)", "n": 0}
    )
    result["false_positives"] = (
        _false_positives(vocab, args.human_texts)
        if args.human_texts
        else {"source": "not run (--human-texts 0)", "texts": 0}
    )
    result["signing"] = _signing_cost()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(result, indent=2))
    (ROOT / "docs" / "figures").mkdir(parents=True, exist_ok=True)
    (ROOT / "docs" / "figures" / "provenance_tpr.svg").write_text(_svg(result))
    (OUT / "report.md").write_text(markdown(result))
    print(json.dumps(result, indent=2))


def _rate(cell: dict[str, Any]) -> str:
    if not cell["n"]:
        return "—"
    lo, hi = cell["wilson95"]
    return f"{cell['k'] / cell['n']:.1%} [{lo:.0%}, {hi:.0%}] (n={cell['n']})"


def markdown(result: dict[str, Any]) -> str:
    """The report's tables as Markdown, pasted into docs/provenance.md as printed."""
    lines = [
        "| configuration | TPR@50 | TPR@100 | TPR@200 | median z@200 | TPR@200, 10% words "
        "replaced | 25% replaced | tokens/s (vs plain) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, e in result["configs"].items():
        ratio = e.get("throughput_vs_plain")
        name = (
            "plain (unwatermarked; kgw-d2 detector: these are false positives)"
            if key == "plain"
            else key
        )
        lines.append(
            f"| {name} | {_rate(e['tpr@50'])} | {_rate(e['tpr@100'])} | {_rate(e['tpr@200'])} | "
            f"{e['median_z@200']:.1f} | {_rate(e['tpr_sub10'])} | {_rate(e['tpr_sub25'])} | "
            f"{e['tokens_per_s']:.1f} ({ratio:.0%}) |"
            if ratio
            else f"| {name} | {_rate(e['tpr@50'])} | {_rate(e['tpr@100'])} | "
            f"{_rate(e['tpr@200'])} | {e['median_z@200']:.1f} | {_rate(e['tpr_sub10'])} | "
            f"{_rate(e['tpr_sub25'])} | {e['tokens_per_s']:.1f} |"
        )
    fp = result["false_positives"]
    if not fp["texts"]:
        return "\n".join(lines) + "\n"
    lines += ["", f"False positives at z ≥ 4 on {fp['texts']} human-written texts "
              f"({fp['source']}), "
              "first 200 tokens:", "", "| scheme | FP | 95% Wilson | max z | mean z (sd) |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name in ("kgw-d2", "selfhash-d2", "expmin"):
        e = fp[name]
        lines.append(
            f"| {name} | {e['fp']}/{e['n']} | [{e['wilson95'][0]:.2%}, {e['wilson95'][1]:.2%}] | "
            f"{e['max_z']:.2f} | {e['mean_z']:.2f} ({e['sd_z']:.2f}) |"
        )
    ppl = result["perplexity"]
    lines += ["", f"Perplexity of the 200-token answers, scored by {ppl['scorer']} "
              f"(n={ppl['n']} prompts common to every configuration):", "",
              "| configuration | median PPL | mean PPL | ratio (median) vs plain |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for name, e in ppl.items():
        if isinstance(e, dict):
            lines.append(
                f"| {name} | {e['median']:.2f} | {e['mean']:.2f} | "
                f"{e.get('ratio_median_vs_plain', 1.0):.2f} |"
            )
    sign = result["signing"]
    lines += ["", f"Receipt signing: {sign['cpu_us_per_receipt']:.0f} µs CPU per receipt "
              f"({sign['receipts']} receipts, canonical JSON + Ed25519 JWS)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _svg(result: dict[str, Any]) -> str:
    """TPR at z >= 4 against tokens scored, one line per configuration (no plotting library)."""
    w, h, left, bottom = 560, 320, 50, 40
    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{w}" height="{h}" fill="white"/>']  # fmt: skip

    def xy(t: int, v: float) -> tuple[float, float]:
        x = left + (CHECKPOINTS.index(t) / (len(CHECKPOINTS) - 1)) * (w - left - 170)
        return x, h - bottom - v * (h - bottom - 20)

    for v in (0, 0.25, 0.5, 0.75, 1.0):
        _, y = xy(CHECKPOINTS[0], v)
        parts.append(f'<line x1="{left}" y1="{y:.0f}" x2="{w - 170}" y2="{y:.0f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.0f}" text-anchor="end">{v:.2f}</text>')
    for t in CHECKPOINTS:
        x, _ = xy(t, 0)
        parts.append(f'<text x="{x:.0f}" y="{h - bottom + 16}" text-anchor="middle">{t}</text>')
    parts.append(f'<text x="{(w - 170 + left) / 2:.0f}" y="{h - 8}" text-anchor="middle">'
                 "tokens scored</text>")  # fmt: skip
    parts.append('<text x="12" y="14">TPR at z ≥ 4 (95% Wilson bars)</text>')
    shown = [n for n in result["configs"] if n != "plain"]
    for i, name in enumerate(shown):
        entry, colour = result["configs"][name], colours[i % len(colours)]
        points = [
            xy(t, entry[f"tpr@{t}"]["k"] / max(1, entry[f"tpr@{t}"]["n"])) for t in CHECKPOINTS
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for t, (x, _) in zip(CHECKPOINTS, points, strict=True):
            lo, hi = entry[f"tpr@{t}"]["wilson95"]
            _, y_lo = xy(t, lo)
            _, y_hi = xy(t, hi)
            parts.append(f'<line x1="{x:.1f}" y1="{y_lo:.1f}" x2="{x:.1f}" y2="{y_hi:.1f}" '
                         f'stroke="{colour}"/>')  # fmt: skip
        parts.append(f'<text x="{w - 160}" y="{30 + 16 * i}" fill="{colour}">{name} '
                     f'(n={entry["n"]})</text>')  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _perplexities(by_config: dict[str, list[dict[str, Any]]], limit: int) -> dict[str, Any]:
    from llama_cpp import Llama

    from wardgate.embedded import embedded_model_path
    from wardgate.whitebox.scoring import chat_renderer

    llm = Llama(
        model_path=str(embedded_model_path()), n_ctx=1024, n_threads=1, logits_all=True,
        verbose=False,
    )  # fmt: skip
    render = chat_renderer(llm)  # the scoring model renders too: no second model load
    prompt_list = prompts(max(r["prompt_index"] for rs in by_config.values() for r in rs) + 1)
    common = set.intersection(*({r["prompt_index"] for r in rs} for rs in by_config.values()))
    chosen = sorted(common)[:limit]
    out: dict[str, Any] = {"scorer": "SmolLM2-135M-Instruct Q4_1, unwatermarked", "n": len(chosen)}
    for name, items in sorted(by_config.items()):
        index = {r["prompt_index"]: r for r in items}
        values = [perplexity(llm, render(prompt_list[i]), index[i]["ids"][:TOKENS]) for i in chosen]
        out[name] = {"median": float(np.median(values)), "mean": float(np.mean(values))}
    base = out.get("plain", {}).get("median")
    for name in by_config:
        if base and name in out:
            out[name]["ratio_median_vs_plain"] = out[name]["median"] / base
    return out


def _false_positives(vocab: Any, limit: int) -> dict[str, Any]:
    texts = human_texts(limit)
    out: dict[str, Any] = {"source": "docstrings (stdlib + site-packages)", "texts": len(texts)}
    tokenized = [vocab.tokenize(t)[:TOKENS] for t in texts]
    for name in ("kgw-d2", "selfhash-d2", "expmin"):
        scheme = scheme_for(name)
        zs = [detect_tokens(scheme, ids, threshold=4, min_tokens=1).z for ids in tokenized]
        fp = sum(z >= 4 for z in zs)
        out[name] = {
            "fp": fp, "n": len(zs), "wilson95": wilson(fp, len(zs)), "max_z": max(zs),
            "mean_z": float(np.mean(zs)), "sd_z": float(np.std(zs)),
        }  # fmt: skip
    return out


def _signing_cost() -> dict[str, Any]:
    """CPU per receipt: canonical JSON + Ed25519 JWS, a realistic 1 kB answer."""
    from joserfc.jwk import OKPKey

    from wardgate.provenance.receipts import ReceiptSigner, messages_digest
    from wardgate.provenance.signing_keys import SigningKeys

    signer = ReceiptSigner(SigningKeys.from_keys(OKPKey.generate_key("Ed25519")))
    content = "word " * 200
    n = 5000
    t0 = time.process_time()
    for _ in range(n):
        signer.sign(
            audit_request_id="chatcmpl-0123456789abcdef01234567", model="smollm2-135m",
            backend="smollm2-135m", weights={"sha256": "ab" * 32, "check": "pinned"},
            request_sha256=messages_digest([("user", "Say hi")]), content=content,
            finish_reason="stop", usage={"prompt_tokens": 9, "completion_tokens": 200,
            "total_tokens": 209}, watermark={"scheme": "kgw", "gamma": 0.25, "delta": 2.0,
            "h": 1, "key_id": "0123456789abcdef"},
        )  # fmt: skip
    return {"receipts": n, "cpu_us_per_receipt": (time.process_time() - t0) / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--prompts", type=int, default=500)
    gen.add_argument("--tier-b-prompts", type=int, default=100)
    gen.add_argument("--budget-s", type=float, default=600)
    rep = sub.add_parser("report")
    rep.add_argument("--human-texts", type=int, default=6000)
    rep.add_argument("--ppl-prompts", type=int, default=100)
    args = parser.parse_args()
    generate(args) if args.command == "generate" else report(args)


if __name__ == "__main__":
    main()
