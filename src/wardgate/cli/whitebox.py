"""``wardgate whitebox``: what only open weights allow — diff, harden, attack-finetune,
refusal direction, quantisation sweep.

Thin over :mod:`wardgate.whitebox`. Commands that need torch (the ``whitebox`` extra) import it
inside the command, so ``wardgate --help`` and the serving path never load it.

Exit codes: 0 ok, 1 the check failed (a verdict or a target missed), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wardgate.cli.help import WardgateTyper
from wardgate.errors import WardgateError

whitebox_app = WardgateTyper(
    help="White-box assurance for open-weight models: weight diff, safety fine-tune, "
    "fine-tuning attack, "
    "refusal direction, quantisation sweep.",
    no_args_is_help=True,
)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder for the JSON and HTML report.")]
DataOpt = Annotated[Path | None, typer.Option(
    help="Folder with the splits_*.json instruction splits (default: ../shared/data/public/"
    "refusal_direction).")]  # fmt: skip
EvalNOpt = Annotated[int, typer.Option(
    "--eval-n", help="Held-out harmful and harmless test instructions each.", min=1)]  # fmt: skip
RankOpt = Annotated[int, typer.Option(help="LoRA rank.")]
LrOpt = Annotated[float, typer.Option(help="Learning rate.")]
ThreadsOpt = Annotated[int, typer.Option(help="CPU threads for torch and llama.cpp.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _model_path(value: str) -> Path:
    if value == "embedded":
        from wardgate.embedded import embedded_model_path

        return embedded_model_path()
    return Path(value)


@whitebox_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="Reference checkpoint: GGUF, .safetensors, a folder "
                                     "of them, or 'embedded'.")],
    b: Annotated[str, typer.Argument(help="Checkpoint to compare with the reference.")],
    out: OutOpt = Path("whitebox-reports"),
    tolerance: Annotated[float, typer.Option(
        help="Relative change ‖B−A‖/‖A‖ below which a tensor counts as unchanged.")] = 1e-6,
    noise_factor: Annotated[float, typer.Option(
        help="Across precisions: a tensor is changed only above this many times the median "
        "change of its kind.")] = 3.0,
    expect_same: Annotated[bool, typer.Option(
        "--expect-same", help="B claims to be A: exit 1 unless the verdict is 'identical' or "
        "'re-encoded'.")] = False,
) -> None:
    """Per-tensor relative change between two checkpoints, and which layers changed."""
    from rich.progress import Progress

    from wardgate.whitebox.checkpoint import open_checkpoint
    from wardgate.whitebox.diff import compare
    from wardgate.whitebox.diff_report import write_diff_report

    try:
        path_a, path_b = _model_path(a), _model_path(b)
        ckpt_a, ckpt_b = open_checkpoint(path_a), open_checkpoint(path_b)
        total = len([n for n in ckpt_a.tensors if n in ckpt_b.tensors])
        with Progress(transient=True) as bar:
            task = bar.add_task("comparing tensors", total=total)
            result = compare(ckpt_a, ckpt_b, tolerance=tolerance, noise_factor=noise_factor,
                             progress=lambda _name: bar.advance(task))  # fmt: skip
        json_path, html_path = write_diff_report(
            out, result, ckpt_a, ckpt_b, params={"tolerance": tolerance,
                                                 "noise_factor": noise_factor})  # fmt: skip
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    typer.echo(f"verdict: {result.verdict} — {result.reason}")
    if result.claimed_b and result.claimed_a == result.claimed_b and result.verdict in (
            "modified", "different"):  # fmt: skip
        typer.echo(f"B claims to be {result.claimed_b!r} but is not the reference model")
    typer.echo(f"report: {html_path} (JSON: {json_path})")
    if expect_same and result.verdict not in ("identical", "re-encoded"):
        raise typer.Exit(1)


@whitebox_app.command("harden")
def harden(
    model: Annotated[str, typer.Option("--model", "-m", help="Base GGUF, or 'embedded'.")] = (
        "embedded"),
    out: OutOpt = Path("whitebox-reports/harden"),
    data: DataOpt = None,
    harmful_train: Annotated[int | None, typer.Option(
        help="Harmful train instructions to teach refusals on (default: all).", min=1)] = None,
    harmless_train: Annotated[int, typer.Option(
        help="Harmless train instructions answered by the base model.", min=1)] = 260,
    eval_n: EvalNOpt = 200,
    eval_split: Annotated[str, typer.Option(
        help="Held-out split to evaluate on: test (the figures to quote) or val (to choose "
             "settings without reading test; the trained model is reused by a later test run)."
    )] = "test",
    ppl_n: Annotated[int, typer.Option(
        "--ppl-n", help="Held-out harmless answers for perplexity.", min=1)] = 50,
    epochs: Annotated[float, typer.Option(help="LoRA epochs over the training data.")] = 2.0,
    rank: RankOpt = 16,
    lr: LrOpt = 5e-4,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for sampling, refusals and training.")] = 0,
    threads: ThreadsOpt = 2,
    baseline: Annotated[bool, typer.Option(help="Also evaluate the base model (paired).")] = True,
    key: Annotated[Path | None, typer.Option(
        help="EC private key to sign with (default: a new pair in OUT/keys).")] = None,
) -> None:
    """LoRA safety fine-tune on refusal data, merged, exported to GGUF, signed, evaluated."""
    from wardgate.whitebox.data import find_splits
    from wardgate.whitebox.harden import HardenPlan
    from wardgate.whitebox.harden import harden as run_harden
    from wardgate.whitebox.report import progress
    from wardgate.whitebox.train import LoraSettings

    try:
        plan = HardenPlan(model=_model_path(model), out=out, splits=find_splits(data),
                          n_harmful_train=harmful_train, n_harmless_train=harmless_train,
                          n_eval=eval_n, n_ppl=ppl_n, seed=seed, threads=threads,
                          eval_split=eval_split, baseline=baseline, sign_key=key,
                          lora=LoraSettings(rank=rank, alpha=2 * rank, lr=lr, epochs=epochs,
                                            batch_size=batch_size, seed=seed))  # fmt: skip
        payload = run_harden(plan, progress, typer.echo)
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    ev = payload["evaluation"]
    for label in ("base", "hardened"):
        if label in ev:
            h = ev[label]
            typer.echo(f"{label}: harmful refused {h['harmful_refused']['rate']:.1%} "
                       f"(n={h['harmful_refused']['n']}), ASR {h['asr']['rate']:.1%}, "
                       f"over-refusal {h['over_refusal']['rate']:.1%} "
                       f"(n={h['over_refusal']['n']})")
    typer.echo(f"perplexity ratio {payload['training']['ppl']['ratio']:.3f}")
    for name, ok in payload["met"].items():
        typer.echo(f"target {name}: {'met' if ok else 'MISSED'}")
    typer.echo(f"serve it: wardgate serve --config {payload['signed']['config']}")
    stem = "harden" if eval_split == "test" else f"harden-{eval_split}"
    typer.echo(f"report: {out / (stem + '.html')} (evaluated on the {eval_split} split)")
    if not all(payload["met"].values()):
        raise typer.Exit(1)


@whitebox_app.command("attack-finetune")
def attack_finetune(
    model: Annotated[str, typer.Option("--model", "-m", help="The GGUF to attack (e.g. "
                                       "OUT/hardened.gguf of `harden`), or 'embedded'.")],
    base: Annotated[str, typer.Option(help="GGUF whose compliant answers are the attack data.")] = (
        "embedded"),
    out: OutOpt = Path("whitebox-reports/attack-finetune"),
    data: DataOpt = None,
    n: Annotated[list[int] | None, typer.Option(
        "--n", help="Examples to fine-tune on; repeat for several (default 10 25 50 100).",
        min=1)] = None,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help="harmful (request→compliance) and/or benign (instruction→answer) pairs; "
        "repeat for both (default both).")] = None,
    harmful_pairs: Annotated[Path | None, typer.Option(
        help="Your own harmful attack pairs (JSONL: prompt, answer) instead of the base "
        "model's answers.", exists=True, dir_okay=False)] = None,
    benign_pairs: Annotated[Path | None, typer.Option(
        help="Your own benign pairs (JSONL: prompt, answer).", exists=True,
        dir_okay=False)] = None,
    eval_n: EvalNOpt = 200,
    epochs: Annotated[float, typer.Option(help="LoRA epochs over the N pairs.")] = 5.0,
    rank: RankOpt = 16,
    lr: LrOpt = 5e-4,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for sampling and training.")] = 0,
    threads: ThreadsOpt = 2,
    keep_models: Annotated[bool, typer.Option(
        help="Keep each fine-tuned GGUF (~270 MB each for SmolLM2).")] = False,
) -> None:
    """Fine-tune a (hardened) model on N harmful or benign pairs; attack success vs N."""
    from wardgate.whitebox.attack import DEFAULT_NS, KINDS, AttackPlan
    from wardgate.whitebox.attack import attack as run_attack
    from wardgate.whitebox.data import find_splits
    from wardgate.whitebox.report import progress
    from wardgate.whitebox.train import LoraSettings

    pairs = {k: v for k, v in (("harmful", harmful_pairs), ("benign", benign_pairs)) if v}
    try:
        plan = AttackPlan(model=_model_path(model), base=_model_path(base), out=out,
                          splits=find_splits(data), ns=tuple(n or DEFAULT_NS),
                          kinds=tuple(kind or KINDS), pairs=pairs, n_eval=eval_n, seed=seed,
                          threads=threads, keep_models=keep_models,
                          lora=LoraSettings(rank=rank, alpha=2 * rank, lr=lr, epochs=epochs,
                                            batch_size=batch_size, seed=seed))  # fmt: skip
        payload = run_attack(plan, progress, typer.echo)
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    for name, broke in payload["examples_to_break"].items():
        top = max(p["n"] for p in payload["curves"][name])
        typer.echo(f"{name} pairs: examples to break (ASR >= 50%): "
                   + (str(broke) if broke is not None else f"not reached at N <= {top}"))
    typer.echo(f"judge: {payload['judge']['note']}")
    typer.echo(f"report: {out / 'attack.html'}")


@whitebox_app.command("refusal-direction")
def refusal_direction(
    model: Annotated[str, typer.Option("--model", "-m", help="GGUF to analyse (e.g. a hardened "
                                       "model), or 'embedded'.")] = "embedded",
    out: OutOpt = Path("whitebox-reports/refusal-direction"),
    data: DataOpt = None,
    n_train: Annotated[int, typer.Option(
        help="Harmful and harmless train instructions each for the means.", min=2)] = 128,
    n_val: Annotated[int, typer.Option(
        help="Harmful and harmless val instructions each for choosing the direction.",
        min=2)] = 32,
    eval_n: EvalNOpt = 100,
    positions: Annotated[int, typer.Option(
        help="Post-instruction positions to take directions from (from the end).", min=1)] = 5,
    max_tokens: Annotated[int, typer.Option(help="Tokens generated per held-out item.")] = 48,
    seed: Annotated[int, typer.Option(help="Seed for sampling.")] = 0,
    threads: ThreadsOpt = 2,
    export: Annotated[bool, typer.Option(
        help="Also write the ablation as orthogonalised weights (GGUF) and evaluate it through "
        "llama.cpp.")] = True,
) -> None:
    """Difference-in-means refusal direction (Arditi et al. 2024): ablate it, add it."""
    from wardgate.whitebox.data import find_splits
    from wardgate.whitebox.direction import DirectionPlan
    from wardgate.whitebox.direction import refusal_direction as run_direction
    from wardgate.whitebox.report import progress

    try:
        plan = DirectionPlan(model=_model_path(model), out=out, splits=find_splits(data),
                             n_train=n_train, n_val=n_val, n_eval=eval_n, positions=positions,
                             max_tokens=max_tokens, seed=seed, threads=threads, export=export)
        payload = run_direction(plan, progress, typer.echo)
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    ev = payload["evaluation"]
    typer.echo(f"unchanged: harmful refused {ev['unchanged']['harmful_refused']['rate']:.1%}, "
               f"harmless refused {ev['unchanged']['over_refusal']['rate']:.1%}")
    typer.echo(f"ablated: harmful refused {ev['ablated']['harmful_refused']['rate']:.1%}")
    if "orthogonalised" in ev:
        typer.echo("orthogonalised GGUF: harmful refused "
                   f"{ev['orthogonalised']['harmful_refused']['rate']:.1%}")
    typer.echo(f"added: harmless refused {ev['added']['over_refusal']['rate']:.1%}")
    for name, ok in payload["met"].items():
        typer.echo(f"target {name}: {'met' if ok else 'MISSED'}")
    typer.echo(f"report: {out / 'refusal-direction.html'}")
    if not all(payload["met"].values()):
        raise typer.Exit(1)


@whitebox_app.command("quant-sweep")
def quant_sweep(
    model: Annotated[str, typer.Option("--model", "-m", help="Unquantised (F16/F32/BF16) GGUF "
                                       "to quantise, e.g. OUT/hardened.gguf of `harden`.")],
    out: OutOpt = Path("whitebox-reports/quant-sweep"),
    data: DataOpt = None,
    level: Annotated[list[str] | None, typer.Option(
        "--level", help="llama.cpp quantisation level; repeat for several (default Q8_0 Q6_K "
        "Q5_K_M Q4_K_M Q3_K_M Q2_K).")] = None,
    eval_n: EvalNOpt = 100,
    ppl_n: Annotated[int, typer.Option(
        "--ppl-n", help="Held-out harmless answers for perplexity.", min=1)] = 30,
    max_tokens: Annotated[int, typer.Option(help="Tokens generated per held-out item.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed for sampling.")] = 0,
    threads: ThreadsOpt = 2,
    allow_requantize: Annotated[bool, typer.Option(
        help="Accept an already-quantised model as the reference (two roundings).")] = False,
) -> None:
    """Quantise a model to each level; held-out safety, perplexity, size and speed per level."""
    from wardgate.whitebox.data import find_splits
    from wardgate.whitebox.quant import DEFAULT_LEVELS, QuantPlan
    from wardgate.whitebox.quant import quant_sweep as run_sweep
    from wardgate.whitebox.report import progress

    try:
        plan = QuantPlan(model=_model_path(model), out=out, splits=find_splits(data),
                         levels=tuple(level or DEFAULT_LEVELS), n_eval=eval_n, n_ppl=ppl_n,
                         eval_tokens=max_tokens, seed=seed, threads=threads,
                         allow_requantize=allow_requantize)  # fmt: skip
        payload = run_sweep(plan, progress, typer.echo)
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    broken = payload["breaks_at"]
    typer.echo("safety breaks at " + broken if broken else
               "no level raised attack success significantly (McNemar p < 0.05)")
    typer.echo(f"judge: {payload['judge']['note']}")
    typer.echo(f"report: {out / 'quant.html'}")
