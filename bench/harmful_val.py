"""Validation-only view of the harmful guard (issue 17): score val once, then sweep policies.

    .venv/bin/python bench/harmful_val.py score --out shipped.npz
    .venv/bin/python bench/harmful_val.py score --weights-dir DIR --out cand.npz [--band LO HI]
    .venv/bin/python bench/harmful_val.py sweep shipped.npz cand.npz

``score`` runs every text of the harmful task's ``val`` split (the harmful val positives, the
benign-alarming corpus's val items, ordinary val requests and the other written benign val
texts) through the ``harmful`` guard's own scan -- the normaliser's readings, the cascade, its
embedding budget -- and stores the worst reading's score and hazard category per text, plus
whether the ``prompt_injection`` guard would block the corpus items (what else blocks them in
the default pipeline). The guard's block decision is a function of (score, category) alone
(``HarmfulRequestGuard._judge``), so ``sweep`` replays any ``threshold`` and
``category_thresholds`` exactly, without scoring again. Test is never read here.

``--embedding-cache`` (the training script's, keyed by SHA-256 of the window text) saves
MiniLM passes: windows missing from it are embedded and not written back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from wardgate.guards import ScanContext  # noqa: E402
from wardgate.guards._learned import worst_reading  # noqa: E402
from wardgate.guards.base import Action  # noqa: E402
from wardgate.guards.classifier import sha256_hex  # noqa: E402
from wardgate.guards.config import GuardSpec  # noqa: E402
from wardgate.guards.harmful import HarmfulRequestGuard  # noqa: E402
from wardgate.guards.injection import PromptInjectionGuard  # noqa: E402

ORDINARY = ("alpaca", "written/everyday")


class CachedEncoder:
    """The MiniLM encoder behind a read-only SHA-256-keyed cache of window embeddings."""

    def __init__(self, encoder: object, cache: Path | None) -> None:
        self.encoder = encoder
        self.known: dict[str, np.ndarray] = {}
        self.misses = 0
        if cache is not None and cache.exists():
            from train_detectors import load_embedding_cache

            self.known = load_embedding_cache(cache)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        keys = [sha256_hex(t.encode("utf-8")) for t in texts]
        todo = [t for k, t in zip(keys, texts, strict=True) if k not in self.known]
        if todo:
            self.misses += len(todo)
            vectors = self.encoder.encode(todo, batch_size=batch_size)  # type: ignore[attr-defined]
            for t, v in zip(todo, vectors, strict=True):
                self.known[sha256_hex(t.encode("utf-8"))] = v
        return np.stack([self.known[k] for k in keys])


def score(args: argparse.Namespace) -> None:
    from detector_data import build

    options: dict[str, object] = {}
    if args.weights_dir:
        options["weights_dir"] = str(args.weights_dir)
    guard = HarmfulRequestGuard(GuardSpec(type="harmful", options=options))
    detector = guard.detector
    stage = getattr(detector, "stage", None)
    if stage is not None:
        detector.encoder = CachedEncoder(detector.encoder, args.embedding_cache)  # type: ignore[attr-defined]
        if args.band:
            detector.stage = dataclasses.replace(stage, band=tuple(args.band))  # type: ignore[attr-defined]
    injection = PromptInjectionGuard(GuardSpec(type="prompt_injection"))
    val = build().of("harmful", "val")
    ctx = ScanContext(stage="input", role="user")
    scores, cats, inj = [], [], []
    for i, e in enumerate(val):
        reading = worst_reading(guard.detector, e.text, guard.options)
        scores.append(reading.detection.score)
        cats.append(reading.detection.category or "S2")
        alarming = e.source.startswith("alarming/")
        inj.append(alarming and injection.scan(e.text, ctx).action is Action.BLOCK)
        if i % 1000 == 0:
            print(f"  {i}/{len(val)}", flush=True)
    np.savez_compressed(
        args.out,
        score=np.array(scores),
        category=np.array(cats),
        label=np.array([e.label for e in val]),
        source=np.array([e.source for e in val]),
        injection_block=np.array(inj),
        meta=np.array(
            json.dumps(
                {
                    "weights_dir": str(args.weights_dir or "shipped"),
                    "block": guard.thresholds.block,
                    "flag": guard.thresholds.flag,
                    "band": list(guard.detector.stage.band) if stage is not None else None,  # type: ignore[attr-defined]
                }
            )
        ),
    )
    misses = getattr(getattr(guard.detector, "encoder", None), "misses", 0)
    print(f"wrote {args.out}: {len(val)} val texts ({misses} windows embedded afresh)")


@dataclasses.dataclass
class Scored:
    """One ``score`` file: per val text, the guard's worst score and its category."""

    score: np.ndarray
    category: np.ndarray
    label: np.ndarray
    source: np.ndarray
    injection_block: np.ndarray
    meta: dict[str, object]

    @classmethod
    def read(cls, path: Path) -> Scored:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                z["score"], z["category"], z["label"], z["source"], z["injection_block"],
                json.loads(str(z["meta"])),
            )  # fmt: skip

    @property
    def alarming(self) -> np.ndarray:
        return np.char.startswith(self.source.astype(str), "alarming/")

    @property
    def ordinary(self) -> np.ndarray:
        return (self.label == 0) & np.isin(self.source, ORDINARY)

    def blocked(self, block: float, per_category: dict[str, float] | None = None) -> np.ndarray:
        limits = np.full(len(self.score), block)
        for cat, at in (per_category or {}).items():
            limits[self.category == cat] = at
        return self.score >= limits


def wilson_str(k: int, n: int) -> str:
    from train_detectors import wilson

    lo, hi = wilson(k, n)
    return f"{k / max(n, 1):6.1%} [{lo:.1%}, {hi:.1%}] ({k}/{n})"


def report(s: Scored, block: float, per_category: dict[str, float] | None = None) -> dict:
    """Val rates of one policy: harmful TPR blocked, corpus FPR (pipeline), ordinary, benign."""
    hit = s.blocked(block, per_category)
    pos = s.label == 1
    corpus = hit[s.alarming] | s.injection_block[s.alarming]
    benign = s.label == 0
    return {
        "tpr": (int(hit[pos].sum()), int(pos.sum())),
        "corpus": (int(corpus.sum()), int(s.alarming.sum())),
        "corpus_harmful": int(hit[s.alarming].sum()),
        "ordinary": (int(hit[s.ordinary].sum()), int(s.ordinary.sum())),
        "benign": (int(hit[benign].sum()), int(benign.sum())),
    }


def show(name: str, r: dict) -> str:
    return (
        f"{name:34s} TPR {wilson_str(*r['tpr'])}  corpus {wilson_str(*r['corpus'])}  "
        f"ordinary {wilson_str(*r['ordinary'])}  benign {wilson_str(*r['benign'])}"
    )


def sweep(args: argparse.Namespace) -> None:
    for path in args.files:
        s = Scored.read(path)
        print(f"\n== {path} {s.meta}")
        print(show("as configured", report(s, float(s.meta["block"]))))  # type: ignore[arg-type]
        pos = np.sort(s.score[s.label == 1])
        for goal in (0.95, 0.94, 0.93, 0.92, 0.91, 0.90):
            at = float(pos[int(np.floor((1 - goal) * len(pos)))])
            print(show(f"global block {at:.4f} (TPR {goal:.2f})", report(s, at)))
        cats = sorted(set(s.category.tolist()), key=lambda c: int(c[1:]))
        print("  per category (val): positives / blocked at configured; corpus items / blocked")
        hit = s.blocked(float(s.meta["block"]))  # type: ignore[arg-type]
        for cat in cats:
            m = s.category == cat
            p, a = m & (s.label == 1), m & s.alarming
            print(
                f"    {cat:4s} pos {int(p.sum()):4d} blocked {int(hit[p].sum()):4d}   "
                f"corpus {int(a.sum()):3d} blocked {int(hit[a].sum()):2d}   "
                f"ordinary {int((m & s.ordinary).sum()):4d} "
                f"blocked {int(hit[m & s.ordinary].sum()):2d}"
            )
        # The budgets on val: corpus <= 3 % (6 of 229), ordinary <= 1 %.
        max_corpus = int(0.03 * int(s.alarming.sum()))
        max_ordinary = int(0.01 * int(s.ordinary.sum()))
        print(f"  per-category block thresholds within corpus <= {max_corpus}, "
              f"ordinary <= {max_ordinary}:")  # fmt: skip
        two_level(s, max_corpus, max_ordinary)
        category_bound(s, max_corpus, max_ordinary)


#: Hazards a deployment refuses soonest (the docs' ``category_thresholds`` example is S9/S4).
SERIOUS = ("S1", "S3", "S4", "S9", "S11")


def two_level(s: Scored, max_corpus: int, max_ordinary: int) -> None:
    """Best val TPR with one threshold for SERIOUS categories and one for the rest."""
    best: tuple[int, float, float, dict] | None = None
    for other in np.linspace(0.30, 0.95, 27):
        for serious in np.linspace(0.05, other, 14):
            r = report(s, float(other), {c: float(serious) for c in SERIOUS})
            fits = r["corpus"][0] <= max_corpus and r["ordinary"][0] <= max_ordinary
            if fits and (best is None or r["tpr"][0] > best[0]):
                best = (r["tpr"][0], float(serious), float(other), r)
    if best is not None:
        _, serious, other, r = best
        print(show(f"    {'/'.join(SERIOUS)} {serious:.3f}, rest {other:.3f}", r))


def category_bound(s: Scored, max_corpus: int, max_ordinary: int) -> None:
    """The most val positives any 14 per-category thresholds could block within the budgets.

    Fitted on val itself (a knapsack over categories), so it is an upper bound on what
    ``category_thresholds`` can buy with these scores, not an operating point.
    """
    pos, benign = s.label == 1, s.label == 0
    states: dict[tuple[int, int], tuple[int, int, dict[str, float]]] = {(0, 0): (0, 0, {})}
    for cat in sorted(set(s.category.tolist())):
        m = s.category == cat
        options = []
        for t in np.unique(np.concatenate([s.score[m & pos], [2.0]])):
            b = m & (s.score >= t)
            options.append((float(t), int(b[pos].sum()), int(b[s.alarming].sum()),
                            int(b[s.ordinary].sum()), int(b[benign].sum())))  # fmt: skip
        grown: dict[tuple[int, int], tuple[int, int, dict[str, float]]] = {}
        for (corpus, ordinary), (tp, fp, chosen) in states.items():
            for t, tp_c, corpus_c, ordinary_c, fp_c in options:
                key = (corpus + corpus_c, ordinary + ordinary_c)
                if key[0] > max_corpus or key[1] > max_ordinary:
                    continue
                if key not in grown or tp + tp_c > grown[key][0]:
                    grown[key] = (tp + tp_c, fp + fp_c, {**chosen, cat: round(t, 3)})
        states = grown
    (corpus, ordinary), (tp, fp, chosen) = max(states.items(), key=lambda kv: kv[1][0])
    print(
        f"    bound: TPR {wilson_str(tp, int(pos.sum()))}, corpus {corpus}, ordinary {ordinary}, "
        f"benign {fp}: {chosen}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("score", help="score the val split once")
    sc.add_argument("--weights-dir", type=Path, default=None)
    sc.add_argument("--embedding-cache", type=Path, default=None)
    sc.add_argument("--band", type=float, nargs=2, default=None, metavar=("LO", "HI"))
    sc.add_argument("--out", type=Path, required=True)
    sw = sub.add_parser("sweep", help="replay block policies on score files")
    sw.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    score(args) if args.command == "score" else sweep(args)


if __name__ == "__main__":
    main()
