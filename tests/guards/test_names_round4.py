"""Round 4 of the name recogniser (issue 16): things named after people, and span context.

Unit sentences written for this file (not taken from any bench set): a head noun of an
institution, prize, place, law or disease next to a person's name makes it no person ("Max-
Planck-Institut", "prix Goncourt"), while the same names used for a person, next to the same
head nouns, stay names ("Dr. Anna Planck called").
"""

from __future__ import annotations

import pytest

from wardgate.guards.names import NameRecognizer, token_features, tokenize


@pytest.fixture(scope="module")
def names() -> NameRecognizer:
    return NameRecognizer.shipped()


def persons(recogniser: NameRecognizer, text: str) -> list[str]:
    return [text[e.start : e.end] for e in recogniser.detect(text) if e.kind == "person"]


@pytest.mark.parametrize(
    "text",
    [
        # A head noun after the name, in any case, across up to two capitalised words.
        "Das Max-Planck-Institut sucht eine Postdoc.",
        "She won the Nobel Prize in 2009.",
        "Flights into Ronald Reagan Washington National Airport are delayed.",
        "Early symptoms of Crohn's disease are easy to miss.",
        "The Ada Lovelace Building opens at eight.",
        # Before it, across particles, in the four languages.
        "Il travaille à l'Institut Pasteur depuis 2019.",
        "Elle a reçu le prix Goncourt.",
        "Le théorème de Pythagore est au programme.",
        "Nous habitons avenue Victor Hugo.",
        "La Fundación Juan March organiza conciertos.",
        "El Hospital Gregorio Marañón amplía las urgencias.",
        "Der Flughafen Franz Josef Strauß meldet Nebel.",
        # Inside a hyphenated or German compound.
        "Wir treffen uns am Konrad-Adenauer-Ufer.",
        "Sie erhielt den Georg-Büchner-Preis.",
        "Sie wohnt in der Bismarckstraße.",
        # An ampersand: a firm's name.
        "Our Marks & Spencer voucher expires in May.",
    ],
)
def test_things_named_after_people_are_not_persons(names: NameRecognizer, text: str) -> None:
    assert persons(names, text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Anna Planck called this morning.", ["Anna Planck"]),
        ("Priya Raman said the Fulbright Commission accepted her.", ["Priya Raman"]),
        ("Jörg Hansen sagte, der Vertrag mit dem Goethe-Institut ist fertig.", ["Jörg Hansen"]),
        ("Claire Dubois a écrit que la fondation accepte le prêt.", ["Claire Dubois"]),
        ("Lucía Fernández dijo que el museo abre el lunes.", ["Lucía Fernández"]),
    ],
)
def test_people_next_to_the_same_head_nouns_stay_names(
    names: NameRecognizer, text: str, expected: list[str]
) -> None:
    assert persons(names, text) == expected


def test_span_context_features_describe_the_run_around_a_word(names: NameRecognizer) -> None:
    lexicon = names.lexicon
    tokens = tokenize("The Ada Lovelace Building is closed.")
    feats = token_features(tokens, 2, lexicon)  # "Lovelace"
    assert "hdA" in feats and "run=3" in feats  # "Ada Lovelace Building"
    tokens = tokenize("Hi Jonah, the tour starts at ten.")
    assert "pcB" in token_features(tokens, 1, lexicon)
    tokens = tokenize("Martin wrote that the loan is confirmed.")
    assert "pcA" in token_features(tokens, 0, lexicon)
    assert "hdA" not in token_features(tokens, 0, lexicon, span=False)


@pytest.mark.parametrize(
    "text",
    [
        # One sense per list: the only name-like item among clearly non-name capitalised words.
        "Mercedes and Porsche lead the premium segment.",
        "Visitamos Toledo, Segovia y Ávila en tres días.",
        "Lieferung von Bosch, Siemens und Braun am Montag.",
    ],
)
def test_a_list_of_non_names_is_no_person(names: NameRecognizer, text: str) -> None:
    assert persons(names, text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oliver and Priya are presenting the numbers.", ["Oliver", "Priya"]),
        # Another name in the list, or "with"/a greeting before it, keeps the names.
        ("Cc: Marta Gil, Finanzas y Jorge Ruiz", ["Marta Gil", "Jorge Ruiz"]),
        ("Hablé con Nuria y Contabilidad.", ["Nuria"]),
        ("Hi Anna and Team, the slides are attached.", ["Anna"]),
        # "y" after an opening name is a conjunction, not a name particle before a noun.
        ("Carmen y yo vamos mañana.", ["Carmen"]),
    ],
)
def test_lists_with_people_keep_their_names(
    names: NameRecognizer, text: str, expected: list[str]
) -> None:
    assert persons(names, text) == expected
