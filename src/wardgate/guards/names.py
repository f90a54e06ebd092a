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

Since round 4 each word's features also describe the run of capitalised words around it
(``_span_context``): a head noun of something named after a person after, before or inside
it ("Nobel Prize", "Institut Pasteur", "Goethe-Institut"), an ampersand, a person cue before
or after it ("Hi …", "… said", "… sagte") and the run's length.

A span found that way is then dropped by a few structural vetoes (``_not_a_person``): a place
or organisation word next to it ("Victoria Station", "Chase Bank", "Puerta del Sol"), a head
noun of an institution, prize, street, law or disease named after a person, in the four
languages ("Max-Planck-Institut", "prix Goncourt", "Fundación Juan March", "Crohn's
disease"), an ampersand ("Marks & Spencer"), one word followed by a particle and a
lower-case word ("Dolores de cabeza"), or an article before a word that is not a first name
("der Bauer"); never after a form of address. A span that is the only name-like item of a
list whose other items are clearly no names is dropped too ("Mercedes and Porsche",
``_listed_with_non_names``).

Lower-case words are scored only when they are in the first-name gazetteer ("hey jake",
"sag leonie bescheid"), by features of their own (prefixed ``L``), so chat-style names are
found without the capitalised model learning anything from ordinary lower-case words.
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
#: Share of the threshold a word needs to continue the name right before it (it only extends
#: a span already found, so it cannot add a false hit; it keeps the redaction whole).
CONTINUATION = 0.35
#: Share of the threshold a capitalised word needs to continue a name across particles
#: ("Leonie van der Meer": after a name and "van der" the next capitalised word is the
#: surname even when, as a word, it is also a noun).
AFTER_PARTICLE = 0.15
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
#: Articles and determiners: a capitalised word right after one is a noun or a place ("der
#: Bauer", "the Queen", "la Alhambra"), rarely a person.
DETERMINERS = frozenset(
    {"the", "a", "an", "this", "that", "these", "those", "our", "your", "my", "their", "his",
     "her", "its", "every", "each", "no", "der", "die", "das", "dem", "den", "des", "ein",
     "eine", "einen", "einem", "einer", "eines", "kein", "keine", "jeder", "jede", "jedes",
     "diese", "dieser", "dieses", "unser", "unsere", "le", "la", "les", "un", "une", "du", "au",
     "aux", "ce", "cet", "cette", "ces", "notre", "votre", "el", "los", "las", "una", "unos",
     "unas", "al", "lo", "este", "esta", "nuestro", "nuestra"}
)  # fmt: skip
#: Place nouns a capitalised word names a place with ("Waterloo Station", "Gare de Lyon").
PLACE_WORDS = frozenset(
    {"street", "road", "avenue", "lane", "square", "station", "hall", "park", "valley", "bridge",
     "river", "lake", "mount", "hill", "airport", "college", "university", "hospital", "church",
     "cathedral", "castle", "palace", "centre", "center", "gardens", "terrace", "way", "place",
     "straße", "strasse", "str", "platz", "weg", "allee", "bahnhof", "hauptbahnhof", "brücke",
     "kirche", "dom", "schloss", "see", "berg", "tal", "rue", "gare", "pont", "quai",
     "boulevard", "lycée", "collège", "église", "château", "calle", "plaza", "paseo",
     "estación", "avenida", "puente", "iglesia", "catedral", "colegio", "barrio", "puerto",
     "room", "salle", "saal", "sala", "impasse", "chemin", "allée", "carrer", "camino",
     "saint", "sainte", "san", "santa", "santo", "sankt", "st"}
)  # fmt: skip
#: Capitalised words after which a capitalised word (across particles) names a place or an
#: institution, not a person: "Lake Victoria", "Puerta del Sol", "Museo del Prado", "Sankt
#: Augustin", "Gare de Lyon". Words that are also English verbs ("See", "Park", "Place") are
#: left out.
PLACE_BEFORE = frozenset(
    {"lake", "mount", "cape", "saint", "sainte", "san", "santa", "santo", "sankt", "st", "rue",
     "calle", "plaza", "avenida", "paseo", "puerta", "museo", "musée", "gare", "pont",
     "estación", "iglesia", "catedral", "colegio", "lycée", "collège", "église", "château",
     "puente", "virgen", "parque", "teatro", "porte", "avenue", "boulevard", "quai",
     "isla", "île", "monte", "puerto", "villa", "hotel", "hôtel", "banco", "banque", "club"}
)  # fmt: skip
#: Capitalised words after which the capitalised words before them name a place or an
#: organisation: "Victoria Station", "Hudson Bay", "Chase Bank", "Müller GmbH".
PLACE_AFTER = frozenset(
    {"street", "road", "avenue", "lane", "square", "station", "park", "bay", "bridge", "river",
     "airport", "college", "university", "hospital", "church", "cathedral", "castle", "palace",
     "centre", "center", "gardens", "terrace", "museum", "stadium", "tower", "island", "beach",
     "harbour", "harbor", "abbey", "column", "estate", "straße", "strasse", "platz", "allee",
     "bahnhof", "hauptbahnhof", "brücke", "kirche", "schloss", "gymnasium", "bank", "group",
     "ltd", "limited", "inc", "plc", "llc", "llp", "corp", "corporation", "gmbh", "ag", "kg",
     "holdings", "partners", "foundation", "airlines", "airways", "motors", "foods", "labs",
     "studios", "records", "media", "insurance", "capital", "consulting", "stiftung",
     "verlag", "versicherung", "hotel", "hotels"}
)  # fmt: skip
#: Round 4: head nouns of things named after people, in the four languages. A name span with
#: one of these right after it (any case, across up to two more capitalised words: "Nobel
#: Prize", "Crohn's disease", "Ada Lovelace Building", "Queen Elizabeth Olympic Park") or
#: inside a hyphenated compound ("Max-Planck-Institut", "Konrad-Adenauer-Ufer") names an
#: institution, prize, place, law or disease, not the person.
HEADS_AFTER = frozenset(
    {"institute", "institution", "foundation", "trust", "society", "prize", "award", "awards",
     "medal", "scholarship", "fellowship", "fund", "university", "college", "academy",
     "hospital", "clinic", "infirmary", "museum", "gallery", "library", "theatre", "theater",
     "stadium", "arena", "airport", "building", "memorial", "centre", "center", "telescope",
     "observatory", "laboratory", "theorem", "equation", "effect", "principle", "constant",
     "syndrome", "disease", "comet", "doctrine", "lecture", "lectures", "cup", "trophy",
     "quarter", "estate", "wing",
     "institut", "stiftung", "preis", "gesellschaft", "universität", "hochschule", "schule",
     "gymnasium", "klinik", "klinikum", "krankenhaus", "bibliothek", "halle", "stadion",
     "flughafen", "ufer", "gasse", "saal", "zentrum", "verteilung", "krankheit", "syndrom",
     "medaille", "realschule", "grundschule", "komitee",
     "fondation", "université", "école", "lycée", "hôpital", "musée", "bibliothèque",
     "théâtre", "stade", "aéroport", "fundación", "premio", "universidad", "escuela",
     "museo", "biblioteca", "teatro", "estadio", "aeropuerto", "instituto"}
)  # fmt: skip
#: Heads that come before the name ("Institut Pasteur", "prix Goncourt", "premio Cervantes",
#: "Flughafen Franz Josef Strauß", "théorème de Pythagore", "avenue Victor Hugo"), any case,
#: across particles. Words that are also English verbs or prepositions are left out.
HEADS_BEFORE = frozenset(
    {"institut", "institute", "fondation", "fundación", "stiftung", "prix", "premio", "premios",
     "preis", "université", "universidad", "universität", "école", "escuela", "lycée",
     "collège", "colegio", "instituto", "hôpital", "hospital", "clinique", "clínica", "klinik",
     "musée", "museo", "museum", "théâtre", "teatro", "stade", "estadio", "stadion",
     "aéroport", "aeropuerto", "flughafen", "airport", "gare", "estación", "station", "bahnhof",
     "rue", "avenue", "boulevard", "allée", "impasse", "quai", "calle", "avenida", "plaza",
     "paseo", "glorieta", "ronda", "théorème", "teorema", "theorem", "loi", "ley", "gesetz",
     "syndrome", "síndrome", "syndrom", "maladie", "enfermedad", "morbus", "effet", "efecto",
     "effekt", "principe", "principio", "prinzip", "médiathèque", "bibliothèque", "biblioteca",
     "centre", "centro", "salle", "sala", "place", "platz", "pont", "puente", "parc", "parque",
     "metro", "métro", "torre", "tour", "palais", "palacio", "cátedra", "chaire", "bourse",
     "beca", "medalla", "médaille", "trofeo", "trophée", "copa", "coupe", "ship", "vessel",
     "schiff", "navire", "paquebot", "buque", "barco", "yacht"}
)  # fmt: skip
#: German compounds end in their head noun ("Bismarckstraße", "Beethovenhalle", "Karlspreis"):
#: a capitalised word ending in one of these (and not itself a known surname) is a place or
#: an institution.
_HEAD_SUFFIXES = (
    "straße", "strasse", "platz", "allee", "ufer", "kirche", "halle", "preis", "stiftung",
    "institut", "schule", "gymnasium", "universität", "bahnhof", "brücke", "gasse", "stadion",
    "klinik", "krankenhaus", "museum", "theater", "zentrum", "saal",
)  # fmt: skip
#: Greetings and thanks before a name ("Hi Jonah", "Thanks, Bethany.").
GREETINGS = frozenset(
    {"hi", "hello", "hey", "dear", "thanks", "thank", "cheers", "hallo", "liebe", "lieber",
     "liebes", "geehrte", "geehrter", "moin", "servus", "danke", "bonjour", "salut", "cher",
     "chère", "coucou", "merci", "bonsoir", "hola", "querido", "querida", "estimado",
     "estimada", "gracias"}
)  # fmt: skip
#: Words before a capitalised run that mark it as a person (span-context features):
#: greetings, verbs and prepositions that take a person ("ask Dylan", "mit Moritz", "avec
#: Marc", "dile a Carmen") and e-mail header labels ("From:", "An:", "Para:").
PERSON_BEFORE = GREETINGS | frozenset(
    {"hi", "hello", "hey", "dear", "thanks", "thank", "cheers", "morning", "evening", "ask",
     "tell", "ping", "call", "email", "e-mail", "met", "with", "cc", "from", "to", "attn",
     "hallo", "liebe", "lieber", "liebes", "geehrte", "geehrter", "moin", "servus", "danke",
     "frag", "fragen", "sag", "ruf", "mit", "an", "von", "für", "bonjour", "salut", "cher",
     "chère", "coucou", "merci", "bonsoir", "avec", "préviens", "dis", "demande", "appelle",
     "hola", "querido", "querida", "estimado", "estimada", "gracias", "buenos", "buenas",
     "dile", "pregúntale", "avísale", "llama", "con", "para", "de", "à", "a", "por", "pour",
     "par", "by", "for", "und", "and", "et", "y"}
)  # fmt: skip
#: Words right after a capitalised run that only a person (or a person's possessive) takes: said,
#: wrote, asked, called, has … ("Martin wrote", "Jörg hat", "Claire a écrit", "Carmen dijo").
PERSON_AFTER = frozenset(
    {"said", "says", "wrote", "writes", "asked", "asks", "called", "calls", "told", "tells",
     "replied", "replies", "mentioned", "thinks", "thought", "wants", "wanted", "left", "will",
     "would", "has", "had", "sent", "sends", "agreed", "confirmed", "approved", "joined",
     "sagt", "sagte", "schrieb", "schreibt", "fragt", "fragte", "meint", "meinte", "hat",
     "hatte", "ruft", "rief", "kommt", "kam", "möchte", "schickt", "schickte", "wird",
     "dit", "disait", "écrit", "écrivait", "demande", "demandait", "pense", "veut", "voulait",
     "a", "avait", "viendra", "vient", "rappelle", "envoie", "dijo", "dice", "decía",
     "escribió", "escribe", "llamó", "llama", "preguntó", "pregunta", "quiere", "quería",
     "piensa", "ha", "había", "viene", "vendrá", "envió", "manda", "dejó"}
)  # fmt: skip
_AMPERSAND = frozenset({"&", "+"})
#: Words before a list that make its capitalised items people (``_listed_with_non_names``).
_LIST_KEEPS = GREETINGS | TITLES | frozenset({"with", "mit", "avec", "con", "cc", "attn", "para"})
#: Words that coordinate the items of a list ("Bosch, Siemens und Braun").
_CONJUNCTIONS = frozenset({"and", "or", "und", "oder", "et", "ou", "y", "e", "o", "/"})
_RUN_STOP = PERSON_BEFORE | TITLES | DETERMINERS | HEADS_BEFORE | PLACE_BEFORE
#: Either list: a span made only of these words ("Bank", "Hotel") is no person.
_PLACE_ANY = PLACE_BEFORE | PLACE_AFTER
_PREPOSITION_ARTICLES = frozenset({"a", "al", "au", "aux", "du"})
#: Possessive endings stripped before a word is looked up ("Grant's", "Chris'").
_POSSESSIVE = ("'s", "’s", "'", "’")
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


def is_candidate(text: str, tok: Token, lexicon: Lexicon | None = None) -> bool:
    """Whether ``tok`` is scored at all: a capitalised word standing on its own, or (given the
    lexicon) a lower-case word that is a known first name."""
    if not tok.word:
        return False
    if not tok.capitalised:
        # Most words are lower case: the set lookup comes first, the rest only for names.
        t = tok.text
        if lexicon is None or not (
            t in lexicon.first or (("'" in t or "’" in t) and stem(t) in lexicon.first)
        ):
            return False
        if not t.islower() or len(t) < 3 or t in PARTICLES:
            return False
    before = text[tok.start - 1] if tok.start else " "
    after = text[tok.end] if tok.end < len(text) else " "
    return before in _BOUNDARY and after in _BOUNDARY


def stem(word: str) -> str:
    """The lower-case word without a possessive ending."""
    low = word.lower()
    for ending in _POSSESSIVE:
        if low.endswith(ending) and len(low) > len(ending) + 1:
            return low[: -len(ending)]
    return low


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
    #: lower-case words of real place names (cities, regions) in the four languages.
    places: frozenset[str] = frozenset()


def token_features(
    tokens: Sequence[Token],
    i: int,
    lexicon: Lexicon,
    *,
    drop_gazetteer: bool = False,
    span: bool = True,
) -> list[str]:
    """Feature strings of candidate ``tokens[i]`` (shared by training and inference).

    ``span`` adds round 4's span-context features (``_span_context``; a weights file records
    whether it was trained with them). ``drop_gazetteer`` hides the word's own gazetteer
    membership (training only: it teaches the model to find names that are in no gazetteer
    from shape and context). A lower-case candidate gets the same features under an ``L``
    prefix: a model of its own.
    """
    tok = tokens[i]
    low = stem(tok.text)
    possessive = len(low) < len(tok.text)
    first = not drop_gazetteer and low in lexicon.first
    last = not drop_gazetteer and low in lexicon.last
    # German genitive without an apostrophe: "Sabines Auto".
    genitive = (
        not drop_gazetteer and not (first or last) and low.endswith("s")
        and low[:-1] in lexicon.first
    )  # fmt: skip
    band = lexicon.bands.get(low, 0)
    gaz = "gf" if first else ""
    gaz += "gl" if last else ""
    gaz += "gs" if genitive else ""
    gaz = gaz or "none"
    place = low in lexicon.places
    feats = [
        "b",
        "w=" + low,
        "s3=" + low[-3:],
        "s4=" + low[-4:],
        "sh=" + _shape(tok.text),
        f"len={min(len(low), 12) // 3}",
        f"z={band}",
        "g=" + gaz,
        f"g={gaz}&z={band}",
    ]
    if possessive:
        feats.append("poss")
    if place:
        feats += ["place", f"place&g={gaz}"]
    if "-" in low:
        feats.append("hp=" + low.split("-", 1)[0])
    prev = tokens[i - 1] if i > 0 else None
    prev2 = tokens[i - 2] if i > 1 else None
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    nxt2 = tokens[i + 2] if i + 2 < len(tokens) else None
    p1 = prev.text.lower() if prev else "<s>"
    p2 = prev2.text.lower() if prev2 else "<s>"
    n1 = nxt.text.lower() if nxt else "</s>"
    feats += ["p1=" + p1, "p2=" + p2, "n1=" + n1]
    feats += [f"g={gaz}&p1={p1}", f"g={gaz}&n1={n1}"]
    feats += ["n2=" + (nxt2.text.lower() if nxt2 else "</s>")]
    # "Mr. Okonkwo", "Dr. Meyer", "M. Bernard": the abbreviation's dot does not end a sentence.
    abbreviation = (
        prev is not None and prev.text == "." and prev2 is not None and prev2.word
        and len(prev2.text) <= 4 and prev2.text[0].isupper()
    )  # fmt: skip
    start = prev is None or (prev.text in _SENTENCE_BREAK and not abbreviation)
    feats.append(f"start={int(start)}")
    # A form of address right before (or before its dot, or before particles): "Mrs
    # Henderson", "Herrn Brinkmann", "Herr von Bülow".
    j = i - 1
    while j >= 0 and tokens[j].text in PARTICLES:
        j -= 1
    if j >= 1 and tokens[j].text == ".":
        j -= 1
    title_word = tokens[j] if j >= 0 else None
    if title_word is not None and title_word.text.lower() in TITLES:
        feats += ["title", f"title&g={gaz}"]
    if p1 in DETERMINERS and p2 not in PARTICLES:
        feats += ["det", f"det&g={gaz}", f"det&z={band}"]
    # A place noun before (across particles and one more name word: "rue de la Paix", "rue
    # Victor Hugo", "estación de Atocha") or right after ("Church Lane").
    j = i - 1
    while j >= 0 and (tokens[j].text in PARTICLES or (j == i - 1 and tokens[j].capitalised)):
        j -= 1
    if n1 in PLACE_WORDS or (j >= 0 and tokens[j].text.lower() in PLACE_WORDS):
        feats += ["pw", f"pw&g={gaz}"]
    # A name closing a sentence after a comma: "Thanks, Declan." / "Gracias, Ramón."
    if p1 == "," and n1 in (".", "!", "?", "</s>", "\n"):
        feats += ["vocative", f"vocative&g={gaz}"]
    feats.append(f"start={int(start)}&g={gaz}&z={band}")
    if span:
        feats += _span_context(tokens, i, gaz)
    for side, other in (("p", prev), ("n", nxt)):
        if other is not None and other.word and other.capitalised:
            o = stem(other.text)
            known = o in lexicon.first or o in lexicon.last
            feats.append(f"{side}c={'g' if known else 'x'}")
            feats.append(f"{side}c={'g' if known else 'x'}&g={gaz}")
        elif other is not None and other.word and other.text in PARTICLES:
            feats.append(f"{side}particle")
    if not tok.capitalised:
        return ["L" + f for f in feats]
    return feats


def _span_context(tokens: Sequence[Token], i: int, gaz: str) -> list[str]:
    """Round 4: features of the run of capitalised words around candidate ``i`` (joined by
    particles): a head noun of something named after a person after it, before it or inside
    the word ("Nobel Prize", "Institut Pasteur", "Goethe-Institut"), an ampersand next to it
    ("Marks & Spencer"), a person cue before or after it ("Hi …", "… said"), and its length."""
    n = len(tokens)
    r0 = i
    # Backwards the run stops at a capitalised greeting, title, article or head noun ("Hi
    # Jonah", "The Nobel Prize", "Institut Pasteur"): those are context, not part of it.
    while r0 > 0 and (
        (tokens[r0 - 1].capitalised and tokens[r0 - 1].text.lower() not in _RUN_STOP)
        or (tokens[r0 - 1].text in PARTICLES and r0 > 1 and tokens[r0 - 2].capitalised)
    ):
        r0 -= 1
    r1 = i
    while r1 + 1 < n and (
        tokens[r1 + 1].capitalised
        or (tokens[r1 + 1].text in PARTICLES and r1 + 2 < n and tokens[r1 + 2].capitalised)
    ):
        r1 += 1
    out = [f"run={min(r1 - r0 + 1, 4)}", f"run={min(r1 - r0 + 1, 4)}&g={gaz}"]
    head = any(
        tokens[k].text.lower() in HEADS_AFTER or tokens[k].text.lower() in PLACE_AFTER
        for k in range(i + 1, r1 + 1)
    ) or (r1 + 1 < n and tokens[r1 + 1].text.lower() in HEADS_AFTER)
    if head:
        out += ["hdA", f"hdA&g={gaz}"]
    j = r0 - 1
    while j >= 0 and tokens[j].text in PARTICLES:
        j -= 1
    if (
        j >= 0
        and tokens[j].word
        and (tokens[j].text.lower() in HEADS_BEFORE or tokens[j].text.lower() in PLACE_BEFORE)
    ):
        out += ["hdB", f"hdB&g={gaz}"]
    low = tokens[i].text.lower()
    if any(p in HEADS_AFTER or p in PLACE_AFTER for p in low.split("-")[1:]) or any(
        low.endswith(x) and len(low) > len(x) + 2 for x in _HEAD_SUFFIXES
    ):
        out.append("hdX")
    if (r1 + 1 < n and tokens[r1 + 1].text in _AMPERSAND) or (
        r0 > 0 and tokens[r0 - 1].text in _AMPERSAND
    ):
        out.append("amp")
    j = r0 - 1
    if j >= 0 and tokens[j].text in (",", ":"):
        j -= 1
    if j >= 0 and tokens[j].text.lower() in PERSON_BEFORE:
        out += ["pcB", f"pcB&g={gaz}"]
    if r1 + 1 < n and tokens[r1 + 1].text.lower() in PERSON_AFTER:
        out += ["pcA", f"pcA&g={gaz}"]
    return out


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
        lower_threshold: float | None = None,
        span_features: bool = True,
    ) -> None:
        self._weights = weights.astype(np.float32, copy=False)
        # Scoring reads ~20 scattered weights per word: an array.array index returns a Python
        # float at a fraction of the cost of a numpy scalar read (same float32 values).
        self._table = array.array("f", self._weights.tobytes())
        self._lexicon = lexicon
        self.threshold = threshold
        #: Lower-case candidates start a name only at this score (chosen on the dev split).
        self.lower_threshold = threshold if lower_threshold is None else lower_threshold
        self._bits = bits
        #: Whether the weights were trained with the span-context features (round 4).
        self.span_features = span_features

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
        lower = max(threshold, base.lower_threshold)
        return cls(
            base._weights,
            base._lexicon,
            threshold,
            bits=base._bits,
            lower_threshold=lower,
            span_features=base.span_features,
        )

    @classmethod
    def from_npz_bytes(cls, data: bytes) -> NameRecognizer:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode("utf-8"))
            weights = npz["weights"]
            first = npz["first"].tobytes().decode("utf-8").split("\n")
            last = npz["last"].tobytes().decode("utf-8").split("\n")
            words = npz["band_words"].tobytes().decode("utf-8").split("\n")
            bands = npz["bands"]
            places = npz["places"].tobytes().decode("utf-8").split("\n")
        lexicon = Lexicon(
            frozenset(first),
            frozenset(last),
            dict(zip(words, bands.tolist(), strict=True)),
            frozenset(places),
        )
        return cls(
            weights,
            lexicon,
            float(header["threshold"]),
            bits=int(header["bits"]),
            lower_threshold=header.get("lower_threshold"),
            span_features=bool(header.get("span_features", False)),
        )

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
            if not is_candidate(text, tok, self._lexicon):
                continue
            z = sum(
                table[zlib.crc32(f.encode("utf-8")) & mask]
                for f in token_features(tokens, i, self._lexicon, span=self.span_features)
            )
            scores[i] = 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0
        return scores

    def detect(self, text: str) -> list[Entity]:
        tokens = tokenize(text)
        scores = self.token_scores(text, tokens)
        found: list[Entity] = []
        i = 0
        while i < len(tokens):
            bar = self.threshold if tokens[i].capitalised else self.lower_threshold
            if scores[i] < bar:
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
                # After "von"/"van der"/"de la" a lower bar; "y"/"e" join two names.
                share = CONTINUATION if tokens[k - 1].text in ("y", "e") else AFTER_PARTICLE
                if k > j and k < len(tokens) and scores[k] >= self.threshold * share:
                    end, best = k, max(best, scores[k])
                    j = k + 1
                    continue
                break
            if not self._not_a_person(tokens, start, end) and not self._listed_with_non_names(
                tokens, scores, start, end
            ):
                found.append(
                    Entity(
                        "person", tokens[start].start, tokens[end].end, round(best, 3), DATA_CLASS
                    )
                )
            i = end + 1
        return found

    def _not_a_person(self, tokens: Sequence[Token], start: int, end: int) -> bool:
        """Structural vetoes on a scored span, from the words around it (never after a form
        of address: "Frau Koch", "Mme Berger" stay names).

        * a place or organisation word right after it or before it (across particles):
          "Victoria Station", "Chase Bank", "Lake Victoria", "Puerta del Sol";
        * one word opening a sentence or after an article, followed by a particle and a
          lower-case word: "Dolores de cabeza", "Le Meunier de la vallée";
        * one word after an article that is not a known first name and has no name word after
          it: "der Bauer", "Le Boulanger", "el Herrero" (but "der Peter" stays a name).
        """
        j = start - 1
        while j >= 0 and tokens[j].text in PARTICLES and tokens[j].text not in ("y", "e"):
            j -= 1
        before = tokens[j] if j >= 0 else None
        if before is not None and before.text == "." and j >= 1:
            before = tokens[j - 1]
        if before is not None and before.text.lower() in TITLES:
            return False
        after = tokens[end + 1] if end + 1 < len(tokens) else None
        if after is not None and after.capitalised and after.text.lower() in PLACE_AFTER:
            return True
        if self._named_after(tokens, start, end, before):
            return True
        if before is not None and before.capitalised and before.text.lower() in PLACE_BEFORE:
            return True
        if all(tokens[k].text.lower() in _PLACE_ANY for k in range(start, end + 1)):
            return True  # "Bank" in "Chase Bank", "Hotel" alone
        last = tokens[end].text.lower()
        if start != end and last in PLACE_AFTER and last not in self._lexicon.last:
            return True  # the place word continued the span: "Hudson Bay" ("Jane Park" stays)
        prev = tokens[start - 1] if start > 0 else None
        p1 = prev.text.lower() if prev is not None else "<s>"
        opening = prev is None or prev.text in _SENTENCE_BREAK
        # Articles only: "a", "al", "au", "du" are also prepositions ("Avisa a Raúl de que").
        after_article = p1 in DETERMINERS and p1 not in _PREPOSITION_ARTICLES
        k = start + 1
        if (
            (opening or after_article)
            and k < len(tokens)
            and tokens[k].text in PARTICLES
            and tokens[k].text not in ("y", "e")  # "Carmen y yo", not "Dolores de cabeza"
        ):
            while k < len(tokens) and tokens[k].text in PARTICLES:
                k += 1
            if k < len(tokens) and tokens[k].word and tokens[k].text.islower():
                return True
        if start != end:
            return False
        if after_article:
            low = stem(tokens[start].text)
            if low not in self._lexicon.first and not (after is not None and after.capitalised):
                return True
        return False

    def _listed_with_non_names(
        self, tokens: Sequence[Token], scores: Sequence[float], start: int, end: int
    ) -> bool:
        """Whether the span is the only name-like item of a list ("A, B and C", "A y B")
        whose other items include a capitalised word that is clearly no name: one sense per
        list, so "Mercedes and Porsche", "Bosch, Siemens und Braun", "Toledo, Segovia y
        Ávila" are not people, while "Oliver and Priya" and "Marta Gil, Finanzas y Jorge Ruiz"
        (another name in the list) are. A title, a greeting, "with" or an address label
        before the list keeps it ("Hi Anna and Team", "con Nuria y Contabilidad")."""
        non_name = other_name = has_conjunction = False
        first = start
        for step in (-1, 1):
            k = start - 1 if step < 0 else end + 1
            while 0 <= k < len(tokens) and (
                tokens[k].text == "," or tokens[k].text in _CONJUNCTIONS
            ):
                joiner = tokens[k]
                item = k + step
                if not (0 <= item < len(tokens) and tokens[item].capitalised):
                    break
                # The item's extent: capitalised words and particles, in the walk's direction.
                far = item
                while 0 <= far + step < len(tokens) and (
                    tokens[far + step].capitalised
                    and tokens[far + step].text.lower() not in _RUN_STOP
                ):
                    far += step
                lo, hi = min(item, far), max(item, far)
                if tokens[lo].text.lower() in _RUN_STOP:
                    break
                has_conjunction = has_conjunction or joiner.text in _CONJUNCTIONS
                best = max(scores[lo : hi + 1])
                non_name = non_name or best < self.threshold * CONTINUATION
                other_name = other_name or best >= self.threshold
                if step < 0:
                    first = lo
                k = (lo - 1) if step < 0 else (hi + 1)
        if not non_name or other_name or not has_conjunction:
            return False
        j = first - 1
        if j >= 0 and tokens[j].text in (",", ":", "."):
            j -= 1
        return not (j >= 0 and tokens[j].text.lower() in _LIST_KEEPS)

    def _named_after(
        self, tokens: Sequence[Token], start: int, end: int, before: Token | None
    ) -> bool:
        """Whether the span names something after a person: a head noun after it (across up
        to two capitalised words) or before it (across particles), inside a hyphenated or
        German compound, or an ampersand next to it ("Marks & Spencer")."""
        k, hops = end + 1, 0
        while k < len(tokens) and hops <= 2:
            t = tokens[k]
            low = t.text.lower()
            if low in HEADS_AFTER or (t.capitalised and low in PLACE_AFTER):
                return True
            if not (t.word and t.capitalised):
                break
            k, hops = k + 1, hops + 1
        if before is not None and before.word and before.text.lower() in HEADS_BEFORE:
            return True
        for k in range(start, min(end + 2, len(tokens))):
            t = tokens[k]
            if not t.word or (k > end and not t.capitalised):
                continue
            low = t.text.lower()
            parts = low.split("-")
            if any(p in HEADS_AFTER or p in PLACE_AFTER for p in parts[1:]):
                return True
            if (
                k <= end
                and stem(t.text) not in self._lexicon.last
                and any(low.endswith(x) and len(low) > len(x) + 2 for x in _HEAD_SUFFIXES)
            ):
                return True
        nxt = tokens[end + 1] if end + 1 < len(tokens) else None
        prv = tokens[start - 1] if start > 0 else None
        return (nxt is not None and nxt.text in _AMPERSAND) or (
            prv is not None and prv.text in _AMPERSAND
        )


@functools.cache
def _shipped() -> NameRecognizer:
    return NameRecognizer.load()
