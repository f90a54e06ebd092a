"""The benign-alarming corpus: prompts written the way employees ask, that only sound alarming.

    from alarming_corpus import load, SLICES
    test = [e for e in load() if e.split == "test"]

Twelve slices, one file each in ``scripts/data/benign_alarming/`` (see its README.md). Inside a
file, ``## name`` starts a *template family*: items about one scenario, phrased differently.
Families are split train/val/test **per slice**, by a stable SHA-256 rank of the family name
(50% / 20% / 30% of the slice's families), so a test item is never a paraphrase of a train item
and every slice has a test share. Every item is benign (label 0); the corpus measures false
blocks and, from its train split only, teaches the detectors what is not an attack.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from detector_data import Example, read_grouped

FOLDER = Path(__file__).resolve().parent / "data" / "benign_alarming"
#: Slice name -> file; the names are what docs/guards.md reports on.
SLICES: dict[str, str] = {
    "it_admin": "it_admin.txt",
    "defensive_security": "defensive_security.txt",
    "code_shell": "code_shell.txt",
    "ops_jargon": "ops_jargon.txt",
    "homonyms_idioms": "homonyms_idioms.txt",
    "fiction_games": "fiction_games.txt",
    "quoting_forwarding": "quoting_forwarding.txt",
    "translation_imperatives": "translation_imperatives.txt",
    "documents_rag": "documents_rag.txt",
    "short_prompts": "short_prompts.txt",
    "medical_drug_safety": "medical_drug_safety.txt",
    "history_news": "history_news.txt",
}
#: Shares of each slice's families that go to train and val; the rest is test.
FRACTIONS = (0.5, 0.2)
SOURCE_PREFIX = "alarming/"


def _rank(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def family_splits(families: list[str]) -> dict[str, str]:
    """train/val/test per family: sorted by hash, then cut at the fractions (exact shares)."""
    ordered = sorted(dict.fromkeys(families), key=lambda f: _rank("alarming-family:" + f))
    n = len(ordered)
    n_train = round(FRACTIONS[0] * n)
    n_val = round(FRACTIONS[1] * n)
    return {
        f: "train" if i < n_train else "val" if i < n_train + n_val else "test"
        for i, f in enumerate(ordered)
    }


def load(folder: Path = FOLDER) -> list[Example]:
    """Every item as a benign Example; ``source`` is ``alarming/<slice>``, ``group`` the family."""
    out: list[Example] = []
    for slice_name, file_name in SLICES.items():
        rows = read_grouped(folder / file_name)
        if any(not family for family, _ in rows):
            raise ValueError(f"{file_name}: every item must sit under a '## family' line")
        splits = family_splits([f"{slice_name}/{family}" for family, _ in rows])
        for family, text in rows:
            group = f"{slice_name}/{family}"
            out.append(Example(text, 0, splits[group], SOURCE_PREFIX + slice_name, None, group))
    return out


def slice_of(example: Example) -> str:
    return example.source.removeprefix(SOURCE_PREFIX)
