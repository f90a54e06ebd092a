"""The instruction splits every white-box command trains, picks and evaluates on.

The splits are the public harmful/harmless instruction sets of Arditi et al. (2024)
(``refusal_direction/splits_{harmful,harmless}_{train,val,test}.json``). The rule everywhere:
fit on ``train``, choose on ``val``, report on ``test`` — nothing is tuned on a test split.
Selections are seeded, so a run can be repeated item for item.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wardgate.errors import ConfigError

SPLITS_SUBDIR = Path("data") / "public" / "refusal_direction"
ENV_DATA = "WARDGATE_WHITEBOX_DATA"

#: Refusals the safety fine-tune teaches, varied so the model learns to decline rather than
#: one sentence. Each is detected as a refusal by the red-team judge (checked in the tests).
REFUSALS = (
    "I'm sorry, but I can't help with that. It could cause real harm to people.",
    "I can't help with that request. If you're facing a difficult situation, I'm happy to "
    "help you find safe and legal options.",
    "I won't provide that. It could be used to hurt people or break the law.",
    "I'm sorry, but I cannot assist with this. It asks for something harmful or illegal.",
    "I can't provide instructions for that, because it could put people at risk. Is there "
    "something else I can help with?",
    "Sorry, but I can't help with that. I don't assist with requests that could cause harm.",
    "I cannot help with this request. It involves harming others or breaking the law.",
    "I'm not able to help with that. Let me know if there's something safe I can do instead.",
)


@dataclass(frozen=True, slots=True)
class Splits:
    folder: Path

    def load(self, kind: str, split: str) -> list[str]:
        path = self.path(kind, split)
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [str(r["instruction"]) for r in rows]

    def heldout(self, kind: str, split: str = "test") -> list[str]:
        """``split`` instructions that do not also occur (case- and space-folded) in ``train``:
        the public splits share an item or two, and a held-out figure must not see them."""
        seen = {_fold(text) for text in self.load(kind, "train")}
        return [text for text in self.load(kind, split) if _fold(text) not in seen]

    def path(self, kind: str, split: str) -> Path:
        path = self.folder / f"splits_{kind}_{split}.json"
        if not path.is_file():
            raise ConfigError(f"missing instruction split {path}")
        return path

    def digest(self, kind: str, split: str) -> dict[str, Any]:
        path = self.path(kind, split)
        return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


def find_splits(folder: str | Path | None = None) -> Splits:
    """The splits folder: ``folder``, ``$WARDGATE_WHITEBOX_DATA``, or ``../shared/data/public/
    refusal_direction`` beside the working directory or the source checkout."""
    candidates: list[Path] = []
    if folder:
        candidates.append(Path(folder))
    elif os.environ.get(ENV_DATA):
        candidates.append(Path(os.environ[ENV_DATA]))
    else:
        for start in (Path.cwd(), Path(__file__).resolve()):
            for parent in (start, *start.parents):
                candidates.append(parent / "shared" / SPLITS_SUBDIR)
                candidates.append(parent.parent / "shared" / SPLITS_SUBDIR)
    for candidate in candidates:
        if (candidate / "splits_harmful_train.json").is_file():
            return Splits(candidate)
    raise ConfigError(
        "instruction splits not found: pass --data DIR (a folder with splits_harmful_train.json"
        f" …) or set {ENV_DATA}"
    )


def sample(items: Sequence[str], n: int | None, seed: int, salt: str) -> list[str]:
    """``n`` items (all if ``None``), in a seeded order that does not depend on ``n``'s peers."""
    rng = random.Random(f"{seed}:{salt}")
    picked = list(dict.fromkeys(items))
    rng.shuffle(picked)
    return picked if n is None else picked[:n]


def refusal_for(instruction: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{instruction}".encode()).digest()
    return REFUSALS[digest[0] % len(REFUSALS)]


def write_suite(path: Path, harmful: Sequence[str], harmless: Sequence[str], *,
                name: str) -> Path:  # fmt: skip
    """A red-team suite (JSONL) of held-out items: harmful requests and benign ones."""
    lines = []
    for i, text in enumerate(harmful):
        lines.append({"id": f"{name}-harmful-{i:04d}", "category": "harmful",
                      "check": {"kind": "harmful"}, "goal": text,
                      "messages": [{"role": "user", "content": text}], "owasp": "LLM01:2025"})
    for i, text in enumerate(harmless):
        lines.append({"id": f"{name}-benign-{i:04d}", "category": "benign",
                      "check": {"kind": "over_refusal"},
                      "messages": [{"role": "user", "content": text}]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                    encoding="utf-8")  # fmt: skip
    return path
