"""Person names, offline: a learned token classifier over word features and gazetteers.

No download, no torch, no spaCy. Each capitalised word is scored by a logistic model over
hashed features: the word itself, its suffixes and shape, whether it is a known first name or
surname (gazetteers from Faker's person providers for 30+ Latin-script locales), how common
it is as an ordinary word in English, German, French or Spanish (``wordfreq`` frequency
bands), and its neighbours (titles such as ``Frau``/``Mme``/``señora``, verbs such as
``spoke with``/``schreib an``, a capitalised known name next to it). Words scored at or above
the threshold, with the particles between them (``von``, ``de la``, ``van der``), form one
``person`` span.

The weights, gazetteers and word bands live in one file, ``wardgate/data/pii/names.npz``,
pinned by SHA-256 in ``wardgate/data/MANIFEST.json`` and verified before it is parsed (a file
that does not verify does not load: fail closed). ``scripts/train_names.py`` produces it
reproducibly from Faker names, wordfreq bands and template sentences written by the team;
the threshold is chosen on a generated dev split, never on the hand-written test set.

Lower-case names ("tell john") are not found: in the four languages a name is capitalised,
and scoring every lower-case word would trade a great deal of precision for little recall.
"""

from __future__ import annotations

import array
import functools
import io
import json
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wardgate.guards.entities import Entity

DATA_CLASS = "pii"
WEIGHTS_PATH = "pii/names.npz"
#: Share of the threshold a word needs to continue the name right before it.
CONTINUATION = 0.5
#: Hashed feature space (2**20 float32 weights: 4 MiB in memory).
FEATURE_BITS = 20

_TOKEN = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*|\d+|\n|[^\w\s]")
#: Lower-case words that may sit inside a name between two name words.
PARTICLES = frozenset(
    {"von", "van", "der", "den", "de", "la", "le", "du", "del", "della", "di", "da", "dos", "das",
     "zu", "ten", "ter", "y", "e", "bin", "al", "el", "ibn", "st"}
)  # fmt: skip
#: Honorifics and forms of address (lower case, without the dot) in the four languages.
TITLES = frozenset(
    {"mr", "mrs", "ms", "miss", "dr", "prof", "professor", "sir", "dame", "herr", "herrn",
     "frau", "fräulein", "professorin", "doktor", "m", "mme", "mlle", "monsieur", "madame",
     "mademoiselle", "docteur", "maître", "me", "sr", "sra", "srta", "señor", "señora",
     "señorita", "don", "doña", "doctor", "doctora", "profesor", "profesora", "dra"}
)  # fmt: skip
_SENTENCE_BREAK = frozenset(
    {".", "!", "?", "\n", ":", "¿", "¡", '"', "«", "»", "“", "„", "(", "-", "–"}
)


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    start: int
    end: int

    @property
    def word(self) -> bool:
        return self.text[0].isalpha()

    @property
    def capitalised(self) -> bool:
        t = self.text
        return t[0].isupper() and len(t) > 1 and not t.isupper()


#: Characters a candidate word may touch. A capitalised run glued to digits, ``_``, ``/`` or
#: ``+`` is a piece of an identifier or a key ("...Gj4Ae6Ru2Ioq"), not a word.
_BOUNDARY = frozenset(" \t\r\n.,;:!?\"'()[]{}«»“”„‘’-–—¿¡<>*")


def is_candidate(text: str, tok: Token) -> bool:
    """Whether ``tok`` is scored at all: a capitalised word standing on its own."""
    if not (tok.word and tok.capitalised):
        return False
    before = text[tok.start - 1] if tok.start else " "
    after = text[tok.end] if tok.end < len(text) else " "
    return before in _BOUNDARY and after in _BOUNDARY


def tokenize(text: str) -> list[Token]:
    return [Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _shape(word: str) -> str:
    out: list[str] = []
    for char in word:
        c = "X" if char.isupper() else "x" if char.isalpha() else char
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Gazetteers and word-frequency bands the features consult."""

    first: frozenset[str]
    last: frozenset[str]
    #: lower-case word -> frequency band 1..7 (max Zipf over en/de/fr/es); absent: rare.
    bands: dict[str, int]


def token_features(
    tokens: Sequence[Token], i: int, lexicon: Lexicon, *, drop_gazetteer: bool = False
) -> list[str]:
    """Feature strings of candidate ``tokens[i]`` (shared by training and inference).

    ``drop_gazetteer`` hides the word's own gazetteer membership (training only: it teaches the
    model to find names that are in no gazetteer from shape and context).
    """
    tok = tokens[i]
    low = tok.text.lower()
    first = not drop_gazetteer and low in lexicon.first
    last = not drop_gazetteer and low in lexicon.last
    band = lexicon.bands.get(low, 0)
    feats = [
        "b",
        "w=" + low,
        "s3=" + low[-3:],
        "s4=" + low[-4:],
        "sh=" + _shape(tok.text),
        f"len={min(len(low), 12) // 3}",
        f"z={band}",
    ]
    gaz = "gf" if first else ""
    gaz += "gl" if last else ""
    feats.append("g=" + (gaz or "none"))
    feats.append(f"g={gaz or 'none'}&z={band}")
    prev = tokens[i - 1] if i > 0 else None
    prev2 = tokens[i - 2] if i > 1 else None
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    nxt2 = tokens[i + 2] if i + 2 < len(tokens) else None
    p1 = prev.text.lower() if prev else "<s>"
    n1 = nxt.text.lower() if nxt else "</s>"
    feats += ["p1=" + p1, "p2=" + (prev2.text.lower() if prev2 else "<s>"), "n1=" + n1]
    feats += [f"g={gaz or 'none'}&p1={p1}", f"g={gaz or 'none'}&n1={n1}"]
    feats += ["n2=" + (nxt2.text.lower() if nxt2 else "</s>")]
    # "Mr. Okonkwo", "Dr. Meyer", "M. Bernard": the abbreviation's dot does not end a sentence.
    abbreviation = (
        prev is not None and prev.text == "." and prev2 is not None and prev2.word
        and len(prev2.text) <= 4 and prev2.text[0].isupper()
    )  # fmt: skip
    start = prev is None or (prev.text in _SENTENCE_BREAK and not abbreviation)
    feats.append(f"start={int(start)}")
    # A form of address right before (or before its dot): "Mrs Henderson", "Herrn Brinkmann".
    title_word = prev2 if abbreviation else prev
    if title_word is not None and title_word.text.lower() in TITLES:
        feats += ["title", f"title&g={gaz or 'none'}"]
    feats.append(f"start={int(start)}&g={gaz or 'none'}&z={band}")
    for side, other in (("p", prev), ("n", nxt)):
        if other is not None and other.word and other.capitalised:
            o = other.text.lower()
            known = o in lexicon.first or o in lexicon.last
            feats.append(f"{side}c={'g' if known else 'x'}")
            feats.append(f"{side}c={'g' if known else 'x'}&g={gaz or 'none'}")
        elif other is not None and other.word and other.text in PARTICLES:
            feats.append(f"{side}particle")
    return feats


def _index(feature: str, bits: int) -> int:
    return zlib.crc32(feature.encode("utf-8")) & ((1 << bits) - 1)


def feature_indices(features: Iterable[str], bits: int = FEATURE_BITS) -> list[int]:
    return [_index(f, bits) for f in features]


class NameRecognizer:
    """Finds ``person`` spans; see the module docstring. Build with :meth:`load`."""

    def __init__(
        self,
        weights: np.ndarray,
        lexicon: Lexicon,
        threshold: float,
        *,
        bits: int = FEATURE_BITS,
    ) -> None:
        self._weights = weights.astype(np.float32, copy=False)
        # Scoring reads ~20 scattered weights per word: an array.array index returns a Python
        # float at a fraction of the cost of a numpy scalar read (same float32 values).
        self._table = array.array("f", self._weights.tobytes())
        self._lexicon = lexicon
        self.threshold = threshold
        self._bits = bits

    @classmethod
    def load(cls, root: Path | None = None) -> NameRecognizer:
        """The shipped recogniser, after verifying its pinned digest (fail closed)."""
        from wardgate.guards.classifier import read_verified

        return cls.from_npz_bytes(read_verified(WEIGHTS_PATH, root))

    @classmethod
    def shipped(cls, threshold: float | None = None) -> NameRecognizer:
        """The shipped recogniser; weights and gazetteers are loaded (and verified) once per
        process and shared, read-only, by every guard and pseudonymiser."""
        base = _shipped()
        if threshold is None:
            return base
        return cls(base._weights, base._lexicon, threshold, bits=base._bits)

    @classmethod
    def from_npz_bytes(cls, data: bytes) -> NameRecognizer:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode("utf-8"))
            weights = npz["weights"]
            first = npz["first"].tobytes().decode("utf-8").split("\n")
            last = npz["last"].tobytes().decode("utf-8").split("\n")
            words = npz["band_words"].tobytes().decode("utf-8").split("\n")
            bands = npz["bands"]
        lexicon = Lexicon(
            frozenset(first), frozenset(last), dict(zip(words, bands.tolist(), strict=True))
        )
        return cls(weights, lexicon, float(header["threshold"]), bits=int(header["bits"]))

    @property
    def lexicon(self) -> Lexicon:
        return self._lexicon

    @property
    def weights(self) -> np.ndarray:
        return self._weights

    def token_scores(self, text: str, tokens: Sequence[Token]) -> list[float]:
        """Probability that each token is part of a name (0 for non-candidates)."""
        scores = [0.0] * len(tokens)
        table, mask = self._table, (1 << self._bits) - 1
        for i, tok in enumerate(tokens):
            if not is_candidate(text, tok):
                continue
            z = sum(
                table[zlib.crc32(f.encode("utf-8")) & mask]
                for f in token_features(tokens, i, self._lexicon)
            )
            scores[i] = 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0
        return scores

    def detect(self, text: str) -> list[Entity]:
        tokens = tokenize(text)
        scores = self.token_scores(text, tokens)
        found: list[Entity] = []
        i = 0
        while i < len(tokens):
            if scores[i] < self.threshold:
                i += 1
                continue
            start, end, best = i, i, scores[i]
            j = i + 1
            while j < len(tokens):
                gap = text[tokens[j - 1].end : tokens[j].start]
                if "\n" in gap or len(gap) > 1:
                    break
                # A capitalised word right after a name word needs less evidence to continue
                # it: "Jean-Luc Marchetti" is one name even if "Marchetti" alone is unsure.
                if scores[j] >= self.threshold * CONTINUATION:
                    end, best = j, max(best, scores[j])
                    j += 1
                    continue
                # Particles join two name words: "Niklas von Arnim", "José Luis de la Fuente".
                k = j
                while k < len(tokens) and tokens[k].text in PARTICLES:
                    k += 1
                if k > j and k < len(tokens) and scores[k] >= self.threshold * CONTINUATION:
                    end, best = k, max(best, scores[k])
                    j = k + 1
                    continue
                break
            found.append(
                Entity("person", tokens[start].start, tokens[end].end, round(best, 3), DATA_CLASS)
            )
            i = end + 1
        return found


@functools.cache
def _shipped() -> NameRecognizer:
    return NameRecognizer.load()
