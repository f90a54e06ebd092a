"""Train the offline person-name recogniser: writes src/wardgate/data/pii/names.npz.

    .venv/bin/pip install -e '.[train-names]'     # faker + wordfreq, training-time only
    PYTHONPATH=src:scripts .venv/bin/python scripts/train_names.py [--check]

Every random choice comes from ``--seed`` (default 16), Faker is seeded and its clock frozen
(``FAKER_NOW``, UTC, C locale: its day and month names came from the wall clock), nothing
depends on set order, the fit runs on one BLAS/OpenMP thread, the zip entries carry a fixed
timestamp, and the digest is written to MANIFEST.json. ``--check`` retrains and compares with
the pinned file instead of writing it: byte for byte (same faker/wordfreq/numpy/scipy/
scikit-learn releases), else the same lexicon and thresholds and every weight within
``CHECK_RTOL`` of the largest (the fit runs to convergence, so float noise stays at that
scale); ``--out PATH`` writes the file elsewhere and leaves the manifest alone.

Data, all generated, none from the hand-written test sets:

* names - Faker's person providers (first and last names) for the locales in ``LOCALES``;
  the same lists become the shipped gazetteers; place words from Faker's lists of real
  cities, regions and departments and ``CITIES``.
* word bands - wordfreq's Zipf frequency of the 30,000 most frequent words of en/de/fr/es.
* sentences - ``scripts/name_templates.py`` (written by the team) filled with Faker names,
  cities, companies, streets and countries, 12 % of them in lower case (chat); word-salad
  sentences of frequent words with random capitals (German capitalises its nouns), with a
  capitalised ordinary word that is also a name after an article or at the start as a
  negative and, in half of them, a name; lower-case word salad (names included).

Every fifth template (and its fillers, drawn with another seed) is the generated dev split.
The capitalised-word threshold is chosen on the hand-written dev sets ``HAND_DEV`` (never
trained on; scored with the recogniser's structural vetoes): the highest worst-set lowest
per-language F1 (sets with at least ``MIN_SET_NAMES`` names, to two decimals), ties to the
fewest texts without a name hit over all of them; the lower-case threshold maximises the
lowest per-language F1 on the generated dev split's lower-case sentences, and is never
below the capitalised one. ``--no-span-features`` trains without round 4's span-context
features (the weights file records which).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import re
import sys
import time
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path

# One BLAS/OpenMP thread for the whole process, set before numpy loads its BLAS (round 4:
# ``threadpool_limits(1)`` around the fit alone left runs 0.035 apart in a weight when the
# variables were unset, against 0.001 with them).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from name_templates import (  # noqa: E402
    CITIES,
    COMPANIES,
    LABELS,
    NEGATIVE,
    NEGATIVE_MORE,
    NEGATIVE_R4,
    POSITIVE,
    POSITIVE_MORE,
    POSITIVE_R4,
    PRODUCTS,
    TITLES,
)

from wardgate.guards.names import (  # noqa: E402
    FEATURE_BITS,
    WEIGHTS_PATH,
    Lexicon,
    NameRecognizer,
    feature_indices,
    is_candidate,
    token_features,
    tokenize,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "wardgate" / "data"
#: Hand-written dev sets: they choose the threshold and are never trained on. The names dev
#: set (issue 16, second round) and the distractor validation set (third round: with the
#: name vetoes the names dev set alone ties from 0.50 to 0.70 and would take 0.55, which
#: hits 21 instead of 12 of the validation set's 180 distractors).
HAND_DEV = (
    ROOT / "bench" / "data" / "pii_names_dev.jsonl",
    ROOT / "bench" / "data" / "pii_distractors_val.jsonl",
    ROOT / "bench" / "data" / "pii_distractors_dev2.jsonl",
    ROOT / "bench" / "data" / "pii_distractors_dev3.jsonl",
    ROOT / "bench" / "data" / "pii_dev.jsonl",
)
LANGS = ("en", "de", "fr", "es")
#: Locales whose names are typical in each language's texts.
LOCALES = {
    "en": ("en_US", "en_GB", "en_IE", "en_NZ", "en_IN"),
    "de": ("de_DE", "de_AT", "de_CH"),
    "fr": ("fr_FR", "fr_BE", "fr_CH", "fr_CA"),
    "es": ("es_ES", "es_MX", "es_AR", "es_CO"),
}
#: Other Latin-script locales: names from everywhere turn up in every language's texts.
FOREIGN = (
    "it_IT", "nl_NL", "pt_PT", "pt_BR", "pl_PL", "tr_TR", "sv_SE", "da_DK", "fi_FI", "cs_CZ",
    "hu_HU", "ro_RO", "hr_HR", "sk_SK", "sl_SI", "lt_LT", "lv_LV", "et_EE", "no_NO", "ga_IE",
    "en_NG", "en_KE", "id_ID", "fil_PH", "vi_VN", "zu_ZA", "de_LI",
)  # fmt: skip
TOP_WORDS = 30_000
PARTICLE_WORDS = frozenset({"von", "van", "der", "den", "de", "la", "le", "du", "del", "sur", "am"})
#: Particles inside full names, per language ("Leonie van der Meer", "Ana de los Ríos").
NAME_PARTICLES = {
    "en": ("van", "van der", "de", "da"),
    "de": ("von", "von der", "van", "van der", "zu"),
    "fr": ("de", "de la", "du", "le"),
    "es": ("de", "de la", "del", "de los", "y"),
}
#: Share of template sentences written all in lower case (chat).
LOWER_SHARE = 0.12
#: Articles put before capitalised ordinary words that are also names (negatives).
ARTICLES = {
    "en": ("the", "The", "a", "our"),
    "de": ("der", "die", "das", "Der", "Die", "Das", "den", "dem", "ein", "eine"),
    "fr": ("le", "la", "Le", "La", "les", "un", "une"),
    "es": ("el", "la", "El", "La", "los", "un", "una"),
}
#: Negative template sentences per language (2,500 until round 4, which added 20-24
#: negative templates per language of things named after people).
NEGATIVE_SENTENCES = 4000
#: Positive template sentences per language (5,000 until round 4; raised with the negatives
#: to keep their ratio).
POSITIVE_SENTENCES = 5000
#: Dev sets with fewer person names than this only count for their texts without a name
#: when the threshold is chosen (their per-language F1 rests on a handful of names).
MIN_SET_NAMES = 20
GAZETTEER_DROPOUT = 0.25
C_REGULARISATION = 2.0
MAX_ITER = 5000
FIT_TOL = 1e-10
#: Faker's ``now`` while sentences are generated. Its date providers (the ``{DAY}`` and
#: ``{MONTH}`` slots: ``day_of_week()``, ``month_name()``) draw a moment uniformly between the
#: epoch and ``datetime.now()`` and name its day in the local time zone, so the sentences
#: followed the wall clock and ``TZ`` (issue 16: a retrain 13 hours after the pin renamed about
#: a quarter of the days). Training now pins both. This moment reproduces the pinned names.npz
#: byte for byte (found by retraining under frozen clocks near its commit; every "now" from
#: 04:57:15 to 04:58:28 gives the same sentences); ``--faker-now`` sets another.
FAKER_NOW = datetime(2026, 12, 4, 4, 58, 0, tzinfo=UTC)
#: ``--check`` passes on identical bytes, or (other BLAS builds, other alignment) with the same
#: lexicon and thresholds and no weight moved by more than this share of the largest weight.
CHECK_RTOL = 1e-3


def _names(locale: str) -> tuple[list[str], list[str]]:
    import importlib

    module = importlib.import_module(f"faker.providers.person.{locale}")
    provider = module.Provider
    first: list[str] = []
    for attr in ("first_names", "first_names_male", "first_names_female"):
        first += list(getattr(provider, attr, ()) or ())
    last = list(getattr(provider, "last_names", ()) or ())
    latin = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿĀ-žȘ-ț' \-]+$")
    return sorted({n for n in first if latin.match(n)}), sorted({n for n in last if latin.match(n)})


def build_lexicon() -> tuple[Lexicon, dict[str, tuple[list[str], list[str]]]]:
    from wordfreq import top_n_list, zipf_frequency

    pools: dict[str, tuple[list[str], list[str]]] = {}
    first: set[str] = set()
    last: set[str] = set()
    places: set[str] = set()
    for locale in sorted({loc for locs in LOCALES.values() for loc in locs} | set(FOREIGN)):
        try:
            f, ln = _names(locale)
        except ModuleNotFoundError:
            continue
        pools[locale] = (f, ln)
        for name in f:
            first.update(p.lower() for p in re.split(r"[ \-]", name) if len(p) > 1)
        for name in ln:
            last.update(p.lower() for p in re.split(r"[ \-]", name) if len(p) > 1)
    bands: dict[str, int] = {}
    for lang in LANGS:
        for word in top_n_list(lang, TOP_WORDS):
            if word.isalpha():
                band = int(zipf_frequency(word, lang))
                bands[word] = max(bands.get(word, 0), band)
    for place in _place_names():
        places.update(p.lower() for p in re.split(r"[ \-]", place) if len(p) > 2)
    places -= PARTICLE_WORDS
    return Lexicon(frozenset(first), frozenset(last), bands, frozenset(places)), pools


def _place_names() -> list[str]:
    """Real place names: the hand-picked cities and Faker's lists of real cities, regions and
    departments (Faker's English city names are invented from surnames, so not those)."""
    import importlib

    out = list(CITIES)
    for locale, attrs in (
        ("de_DE", ("cities",)),
        ("de_AT", ("cities",)),
        ("fr_FR", ("regions", "departments")),
        ("es_ES", ("states",)),
        ("en_GB", ("counties",)),
    ):
        provider = importlib.import_module(f"faker.providers.address.{locale}").Provider
        for attr in attrs:
            for item in getattr(provider, attr, ()) or ():
                out.append(item[1] if isinstance(item, tuple) else str(item))
    return sorted(set(out))


@contextlib.contextmanager
def faker_clock(now: datetime) -> Iterator[None]:
    """Faker's date providers with ``now`` as the current time, UTC as the local time zone and
    the C locale's day and month names, whatever the machine's clock, ``TZ`` and locale."""
    import locale

    import faker.providers.date_time as module

    frozen = now.astimezone(UTC)
    real: type[datetime] = getattr(module, "datetime")  # noqa: B009 (Faker's module global)

    class FrozenDatetime(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:
            return frozen.replace(tzinfo=None) if tz is None else frozen.astimezone(tz)

    saved = {name: getattr(module, name) for name in ("datetime", "_get_local_timezone")}
    time_locale = locale.setlocale(locale.LC_TIME)
    setattr(module, "datetime", FrozenDatetime)  # noqa: B010
    setattr(module, "_get_local_timezone", lambda: UTC)  # noqa: B010
    locale.setlocale(locale.LC_TIME, "C")
    try:
        # A Faker release that reads the clock some other way must fail here, not train on it.
        if module.Provider._parse_end_datetime(None) != int(frozen.timestamp()):
            raise RuntimeError("faker_clock: Faker's date provider does not use the frozen now")
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)
        locale.setlocale(locale.LC_TIME, time_locale)


class Filler:
    """Draws slot values for one language from Faker, seeded."""

    def __init__(self, lang: str, pools: dict[str, tuple[list[str], list[str]]], seed: int):
        from faker import Faker

        self.lang = lang
        self.rng = random.Random(seed)
        self.locales = [loc for loc in LOCALES[lang] if loc in pools]
        self.foreign = [loc for loc in FOREIGN if loc in pools]
        self.pools = pools
        self.fake = Faker(self.locales)
        self.fake.seed_instance(seed)
        self.gazetteer: set[str] = set()
        for f, ln in pools.values():
            self.gazetteer.update(n.lower() for n in f + ln)
        # Word salad is all negatives: frequent words that are also names ("max", "claire")
        # would teach the model that known names are not names.
        top = self._top_words(lang)
        self.words = [w for w in top if w not in self.gazetteer]
        # Everything, names included, for lower-case text and for the negatives below.
        self.all_words = top
        # Ordinary words that are also in a name list ("bauer", "rose", "hope", "victoria").
        self.name_words = [w for w in top if w in self.gazetteer and len(w) > 2]
        # Sentence openers: Faker's lorem words (a list of ordinary words) that are in a name
        # list but not among this language's own first names ("Hope", "Grace" stay names).
        own = {n.lower() for loc in self.locales for n in pools[loc][0]}
        self.openers = sorted(
            {w.lower() for w in self._lorem(lang)} & self.gazetteer - own - {"the"}
        )

    @staticmethod
    def _lorem(lang: str) -> list[str]:
        import importlib

        locale = {"en": "en_US", "de": "de_DE", "fr": "fr_FR", "es": "es_ES"}[lang]
        module = importlib.import_module(f"faker.providers.lorem.{locale}")
        return [w for w in module.Provider.word_list if w.isalpha() and len(w) > 2]

    @staticmethod
    def _top_words(lang: str) -> list[str]:
        from wordfreq import top_n_list

        return [w for w in top_n_list(lang, 8000) if w.isalpha() and len(w) > 1]

    def _known(self, word: str) -> bool:
        return word.lower() in self.gazetteer

    def _pool(self) -> tuple[list[str], list[str]]:
        locale = self.rng.choice(self.foreign if self.rng.random() < 0.2 else self.locales)
        return self.pools[locale]

    def first(self) -> str:
        return self.rng.choice(self._pool()[0])

    def last(self) -> str:
        pool = self._pool()[1]
        name = self.rng.choice(pool)
        if self.lang == "es" and self.rng.random() < 0.3:
            name += " " + self.rng.choice(pool)  # two surnames
        return name

    def full(self) -> str:
        roll = self.rng.random()
        if roll < 0.12:
            return f"{self.first()} {self.first()} {self.last()}"
        if roll < 0.2:
            particle = self.rng.choice(NAME_PARTICLES[self.lang])
            return f"{self.first()} {particle} {self.last()}"
        return f"{self.first()} {self.last()}"

    def surname(self) -> str:
        return self.rng.choice(self._pool()[1])

    def title_last(self) -> tuple[str, str]:
        return self.rng.choice(TITLES[self.lang]), self.last()

    def other(self, slot: str) -> str:
        fake, rng = self.fake, self.rng
        if slot == "CITY":
            if self.lang == "en" or rng.random() < 0.5:
                return rng.choice(CITIES)
            return str(fake.city())
        if slot == "COMPANY":
            # Faker's companies are mostly surnames ("Mills, Rogers and Freeman"): ambiguous,
            # so only those without a known name, else a hand-picked organisation.
            for _ in range(5):
                company = str(fake.company())
                if not any(self._known(w) for w in re.split(r"[\s,\-&]+", company)):
                    return company
            return rng.choice(COMPANIES)
        if slot == "COUNTRY":
            return str(fake.country())
        if slot == "STREET":
            # Streets named after people ("Christopher Street") are ambiguous: skip those.
            for _ in range(5):
                street = str(fake.street_name())
                if not any(self._known(w) for w in re.split(r"[\s,\-]+", street)):
                    return street
            return rng.choice(("High Street", "Station Road", "Hauptstraße", "Rue du Port"))
        if slot == "DAY":
            return str(fake.day_of_week())
        if slot == "MONTH":
            return str(fake.month_name())
        if slot == "PRODUCT":
            return rng.choice(PRODUCTS)
        if slot == "FN":
            return self.first().split(" ")[0]
        if slot == "LN":
            return self.surname()
        raise KeyError(slot)


_SLOT = re.compile(r"\{(P|F|TL|LAST|FN|LN|CITY|COMPANY|COUNTRY|STREET|DAY|MONTH|PRODUCT)\}")


def fill(template: str, filler: Filler) -> tuple[str, list[tuple[int, int]]]:
    """The sentence and the character spans of its person names."""
    out, spans, pos = [], [], 0
    length = 0
    for m in _SLOT.finditer(template):
        out.append(template[pos : m.start()])
        length += m.start() - pos
        slot = m.group(1)
        if slot == "TL":
            title, name = filler.title_last()
            out.append(title + " ")
            length += len(title) + 1
            value, person = name, True
        elif slot in ("P", "F", "LAST"):
            pick = {"P": filler.full, "F": filler.first, "LAST": filler.surname}[slot]
            value, person = pick(), True
        else:
            value, person = filler.other(slot), False
        if person:
            spans.append((length, length + len(value)))
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def word_salad(filler: Filler, *, lower: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """Frequent words with random capitals and, half of the time, a name.

    ``lower``: all in lower case, names and name-like words included (chat). Otherwise the
    words are not in a name list, except for a capitalised ordinary word that is also a name
    put after an article ("der Bauer", "la Rosa") or at the start, as a negative.
    """
    rng = filler.rng
    if lower:
        words = [rng.choice(filler.all_words) for _ in range(rng.randint(5, 14))]
    else:
        words = [rng.choice(filler.words) for _ in range(rng.randint(5, 14))]
        share = 0.45 if filler.lang == "de" else 0.12
        words = [w.capitalize() if rng.random() < share else w for w in words]
        if rng.random() < 0.5:
            at = rng.randint(0, len(words) - 1)
            article = rng.choice(ARTICLES[filler.lang])
            words[at : at + 1] = [article, rng.choice(filler.name_words).capitalize()]
        if rng.random() < 0.1:
            words[0] = rng.choice(filler.openers)
        words[0] = words[0].capitalize()
    spans: list[tuple[int, int]] = []
    if rng.random() < 0.5:
        at = rng.randint(0, len(words))
        name = filler.full() if rng.random() < 0.6 else filler.first()
        if lower:
            name = name.lower() if len(name.lower()) == len(name) else name
        before = " ".join(words[:at]) + " " if at else ""
        spans.append((len(before), len(before) + len(name)))
        text = before + name + (" " + " ".join(words[at:]) if words[at:] else "")
    else:
        text = " ".join(words)
    return text + rng.choice((".", "", "?", "!")), spans


Sample = tuple[str, str, list[tuple[int, int]]]  # lang, text, person spans


def labelled(
    filler: Filler, sample: tuple[str, list[tuple[int, int]]], share: float
) -> tuple[str, list[tuple[int, int]]]:
    """``sample`` with a "Label: " head put before it ``share`` of the time."""
    text, spans = sample
    if filler.rng.random() >= share:
        return text, spans
    sep = " : " if filler.lang == "fr" else ": "
    head = filler.rng.choice(LABELS[filler.lang]) + sep
    return head + text, [(s + len(head), e + len(head)) for s, e in spans]


def lowered(
    filler: Filler, sample: tuple[str, list[tuple[int, int]]], share: float
) -> tuple[str, list[tuple[int, int]]]:
    """``sample`` all in lower case ``share`` of the time (spans keep their places)."""
    text, spans = sample
    if filler.rng.random() >= share or len(text.lower()) != len(text):
        return text, spans
    return text.lower(), spans


def build_split(
    pools: dict[str, tuple[list[str], list[str]]],
    *,
    dev: bool,
    seed: int,
    scale: float = 1.0,
    faker_now: datetime = FAKER_NOW,
) -> list[Sample]:
    with faker_clock(faker_now):
        return _build_split(pools, dev=dev, seed=seed, scale=scale)


def _build_split(
    pools: dict[str, tuple[list[str], list[str]]], *, dev: bool, seed: int, scale: float
) -> list[Sample]:
    samples: list[Sample] = []
    for n, lang in enumerate(LANGS):
        filler = Filler(lang, pools, seed + 101 * n + (7 if dev else 0))
        positive = POSITIVE[lang] + POSITIVE_MORE[lang] + POSITIVE_R4[lang]
        negative = NEGATIVE[lang] + NEGATIVE_MORE[lang] + NEGATIVE_R4[lang]
        pos = [t for i, t in enumerate(positive) if (i % 5 == 4) == dev]
        neg = [t for i, t in enumerate(negative) if (i % 5 == 4) == dev]
        for _ in range(int((600 if dev else POSITIVE_SENTENCES) * scale)):
            sample = labelled(filler, fill(filler.rng.choice(pos), filler), 0.1)
            samples.append((lang, *lowered(filler, sample, LOWER_SHARE)))
        for _ in range(int((300 if dev else NEGATIVE_SENTENCES) * scale)):
            sample = labelled(filler, fill(filler.rng.choice(neg), filler), 0.3)
            samples.append((lang, *lowered(filler, sample, LOWER_SHARE)))
        if not dev:
            for _ in range(int(4000 * scale)):
                samples.append((lang, *labelled(filler, word_salad(filler), 0.3)))
            for _ in range(int(1500 * scale)):
                samples.append((lang, *word_salad(filler, lower=True)))
    return samples


def featurise(
    samples: Sequence[Sample], lexicon: Lexicon, rng: random.Random | None, span: bool = True
) -> tuple[list[list[int]], list[int]]:
    rows, labels = [], []
    for _, text, spans in samples:
        tokens = tokenize(text)
        for i, tok in enumerate(tokens):
            if not is_candidate(text, tok, lexicon):
                continue
            # Overlap, not containment: "Grant's" is a name word though the span is "Grant".
            inside = any(s < tok.end and tok.start < e for s, e in spans)
            drop = rng is not None and rng.random() < GAZETTEER_DROPOUT
            feats = token_features(tokens, i, lexicon, drop_gazetteer=drop, span=span)
            rows.append(feature_indices(feats))
            labels.append(int(inside))
    return rows, labels


def fit(rows: list[list[int]], labels: list[int]) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(indptr[-1]))
    data = np.ones(len(indices), dtype=np.float64)
    x = csr_matrix((data, indices, indptr), shape=(len(rows), 1 << FEATURE_BITS))
    x.sum_duplicates()
    from threadpoolctl import threadpool_limits

    # Fitted to convergence: OpenBLAS kernels round differently with memory alignment, and an
    # L-BFGS run stopped early carries that difference into the weights (two 400-iteration
    # runs differed by 0.35 in a weight); the converged optimum is the same for every run.
    model = LogisticRegression(
        C=C_REGULARISATION, max_iter=MAX_ITER, tol=FIT_TOL, fit_intercept=False
    )
    # One BLAS thread: multi-threaded reductions change the float sums from run to run, and
    # L-BFGS carries the difference forward (two 4-thread runs differed by 0.1 dev F1 points).
    with threadpool_limits(1):
        model.fit(x, np.array(labels))
    print(f"fit: {int(model.n_iter_[0])} L-BFGS iterations (limit {MAX_ITER})")
    return model.coef_[0].astype(np.float32)


def span_scores(
    recogniser: NameRecognizer, samples: Sequence[Sample]
) -> dict[str, tuple[int, int, int, int]]:
    """Per language: (true spans, found, findings, correct), overlap matching."""
    out: dict[str, list[int]] = {lang: [0, 0, 0, 0] for lang in LANGS}
    for lang, text, spans in samples:
        found = [(e.start, e.end) for e in recogniser.detect(text)]
        c = out[lang]
        c[0] += len(spans)
        c[1] += sum(any(s < fe and fs < e for fs, fe in found) for s, e in spans)
        c[2] += len(found)
        c[3] += sum(any(s < fe and fs < e for s, e in spans) for fs, fe in found)
    return {k: (v[0], v[1], v[2], v[3]) for k, v in out.items()}


def hand_written_dev(paths: Sequence[Path] = HAND_DEV) -> list[Sample]:
    """``HAND_DEV`` (or ``paths``): person spans (and distractors, no spans)."""
    out: list[Sample] = []
    lines = [ln for path in paths for ln in path.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        item = json.loads(line)
        if item["lang"] not in LANGS:
            continue
        text, spans = item["text"], []
        for kind, value in item["spans"]:
            if kind == "person":
                start = text.index(value)
                spans.append((start, start + len(value)))
        out.append((item["lang"], text, spans))
    return out


def _lowest_f1(recogniser: NameRecognizer, samples: Sequence[Sample]) -> float:
    worst = 1.0
    for n, found, findings, correct in span_scores(recogniser, samples).values():
        if n == 0:
            continue
        r, p = found / n, correct / max(findings, 1)
        worst = min(worst, 2 * r * p / max(r + p, 1e-9))
    return worst


def choose_threshold(
    weights: np.ndarray,
    lexicon: Lexicon,
    dev: list[Sample],
    lower: float,
    cased: bool = False,
    span: bool = True,
    groups: Sequence[list[Sample]] = (),
) -> float:
    """The threshold with the highest lowest per-language dev F1, and among equals the one
    that hits the fewest texts without a name (then the lowest): for capitalised words
    (``cased``; ``lower`` is then the lower-case words' threshold) or for lower-case words
    (``lower`` is then the capitalised words' threshold).

    With ``groups`` (the hand-written dev sets, one list each) the F1 is the worst over the
    sets with at least ``MIN_SET_NAMES`` names of each set's lowest per-language F1, to two
    decimals (round 4: each set is written in its own style, and the pooled F1 was carried
    by whichever set had the most names); the texts without a name are counted over
    ``dev``, all sets together."""
    best: tuple[float, int] = (-1.0, 0)
    best_t = 0.5
    for t in np.arange(0.30, 0.96, 0.05):
        if cased:
            rec = NameRecognizer(
                weights, lexicon, float(t), lower_threshold=lower, span_features=span
            )
        else:
            rec = NameRecognizer(
                weights, lexicon, lower, lower_threshold=float(t), span_features=span
            )
        scored = [g for g in groups if sum(len(spans) for _, _, spans in g) >= MIN_SET_NAMES]
        worst = min((_lowest_f1(rec, g) for g in scored), default=None)
        if worst is None:
            worst = _lowest_f1(rec, dev)
        hit = sum(bool(rec.detect(text)) for _, text, spans in dev if not spans)
        print(f"  threshold {t:.2f}: lowest per-language dev F1 {worst:.3f}, "
              f"{hit} texts without a name hit")  # fmt: skip
        key = (round(worst, 2 if scored else 6), -hit)
        if key > best:
            best, best_t = key, float(round(t, 2))
    return best_t


def _array_entry(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, buffer.getvalue())


def to_npz_bytes(weights: np.ndarray, lexicon: Lexicon, threshold: float, meta: dict) -> bytes:
    def text_array(items: Sequence[str]) -> np.ndarray:
        return np.frombuffer("\n".join(items).encode("utf-8"), dtype=np.uint8)

    words = sorted(lexicon.bands)
    header = {"bits": FEATURE_BITS, "threshold": threshold, **meta}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        _array_entry(zf, "header", text_array([json.dumps(header, sort_keys=True)]))
        _array_entry(zf, "weights", weights.astype(np.float32))
        _array_entry(zf, "first", text_array(sorted(lexicon.first)))
        _array_entry(zf, "last", text_array(sorted(lexicon.last)))
        _array_entry(zf, "band_words", text_array(words))
        _array_entry(zf, "bands", np.array([lexicon.bands[w] for w in words], dtype=np.uint8))
        _array_entry(zf, "places", text_array(sorted(lexicon.places)))
    return buffer.getvalue()


def _utc_moment(text: str) -> datetime:
    """An ISO 8601 moment; without a zone it is UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the sentences")
    parser.add_argument("--check", action="store_true", help="compare with the pinned file")
    parser.add_argument("--out", type=Path, help="write the file here instead (no manifest)")
    parser.add_argument(
        "--no-span-features", action="store_true", help="without round 4's span features"
    )
    parser.add_argument(
        "--faker-now",
        type=_utc_moment,
        default=FAKER_NOW,
        help=f"Faker's 'now' for the day and month slots (ISO 8601; {FAKER_NOW.isoformat()})",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    lexicon, pools = build_lexicon()
    print(f"gazetteers: {len(lexicon.first)} first, {len(lexicon.last)} last names, "
          f"{len(lexicon.places)} place words; {len(lexicon.bands)} banded words; "
          f"{len(pools)} locales")  # fmt: skip
    print(f"Faker's clock: {args.faker_now.astimezone(UTC).isoformat()} (UTC, C locale)")
    train = build_split(
        pools, dev=False, seed=args.seed, scale=args.scale, faker_now=args.faker_now
    )
    dev = build_split(
        pools, dev=True, seed=args.seed + 1, scale=args.scale, faker_now=args.faker_now
    )
    span = not args.no_span_features
    rows, labels = featurise(train, lexicon, random.Random(args.seed), span)
    print(f"train: {len(train)} sentences, {len(rows)} candidate words, {sum(labels)} in names")
    weights = fit(rows, labels)
    # Capitalised and lower-case words each get a threshold, on the dev sentences of their
    # case; a lower-case word never needs less than a capitalised one.
    # The capitalised threshold is chosen on the hand-written dev set: the generated dev
    # split is too easy to set it (its F1 peaked at the lowest threshold tried).
    lower_dev = [sample for sample in dev if sample[1].islower()]
    hand_dev = hand_written_dev()
    names = ", ".join(p.name for p in HAND_DEV)
    print(f"threshold on the {len(hand_dev)} hand-written dev texts ({names}):")
    groups = [hand_written_dev((path,)) for path in HAND_DEV]
    threshold = choose_threshold(
        weights, lexicon, hand_dev, lower=1.01, cased=True, span=span, groups=groups
    )
    print(f"lower-case threshold on {len(lower_dev)} lower-case dev sentences:")
    lower_choice = choose_threshold(weights, lexicon, lower_dev, lower=threshold, span=span)
    lower_threshold = max(threshold, lower_choice)
    recogniser = NameRecognizer(
        weights, lexicon, threshold, lower_threshold=lower_threshold, span_features=span
    )
    dev_scores = span_scores(recogniser, dev)
    for lang, (n, found, findings, correct) in dev_scores.items():
        print(f"dev {lang}: recall {found / max(n, 1):.1%} ({found}/{n}), "
              f"precision {correct / max(findings, 1):.1%} ({correct}/{findings})")  # fmt: skip
    meta = {
        "seed": args.seed,
        "scale": args.scale,
        "train_sentences": len(train),
        "dev_sentences": len(dev),
        "dev": {lang: list(v) for lang, v in dev_scores.items()},
        "trained_by": "scripts/train_names.py",
    }
    meta["lower_threshold"] = lower_threshold
    if span:
        meta["span_features"] = True
    hand_scores = span_scores(recogniser, hand_dev)
    for lang, (n, found, findings, correct) in hand_scores.items():
        print(f"hand-written dev {lang}: recall {found}/{n}, precision {correct}/{findings}")
    meta["hand_dev"] = {lang: list(v) for lang, v in hand_scores.items()}
    blob = to_npz_bytes(weights, lexicon, threshold, meta)
    digest = hashlib.sha256(blob).hexdigest()
    target = DATA / WEIGHTS_PATH
    if args.out is not None:
        args.out.write_bytes(blob)
        print(f"wrote {args.out}: sha256 {digest}")
        return 0
    if args.check:
        pinned_blob = target.read_bytes()
        if pinned_blob == blob:
            print(f"retrained sha256 {digest}: identical to the pinned {WEIGHTS_PATH}")
            return 0
        pinned = NameRecognizer.from_npz_bytes(pinned_blob)
        same_lexicon = pinned.lexicon == recogniser.lexicon
        same_thresholds = (pinned.threshold, pinned.lower_threshold) == (
            recogniser.threshold,
            recogniser.lower_threshold,
        )
        drift = float(np.max(np.abs(pinned.weights - weights)))
        scale = float(np.max(np.abs(pinned.weights))) or 1.0
        ok = same_lexicon and same_thresholds and drift <= CHECK_RTOL * scale
        verdict = "within tolerance" if ok else "DIFFERENT"
        print(f"retrained sha256 {digest} != pinned {hashlib.sha256(pinned_blob).hexdigest()}; "
              f"lexicon {'same' if same_lexicon else 'DIFFERENT'}, thresholds "
              f"{recogniser.threshold}/{recogniser.lower_threshold} vs "
              f"{pinned.threshold}/{pinned.lower_threshold}, largest weight change "
              f"{drift:.2e} of {scale:.2f}: {verdict}")  # fmt: skip
        return 0 if ok else 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(blob)
    manifest_path = DATA / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][WEIGHTS_PATH] = digest
    manifest["files"] = dict(sorted(manifest["files"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    took = time.perf_counter() - started
    print(f"wrote {WEIGHTS_PATH}: {len(blob) / 1e6:.2f} MB sha256 {digest} ({took:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
