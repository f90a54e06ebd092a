"""The shipped offline name recogniser: verified loading, behaviour, and its place in the guard.

The sentences here are unit checks written for this file; the quality figures come from the
hand-written held-out set (bench/pii_quality.py --set heldout), which no test tunes on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wardgate.errors import ModelVerificationFailed
from wardgate.guards import GuardSpec, ScanContext
from wardgate.guards.classifier import data_root
from wardgate.guards.names import WEIGHTS_PATH, NameRecognizer, tokenize
from wardgate.guards.pii import PiiGuard


@pytest.fixture(scope="module")
def names() -> NameRecognizer:
    return NameRecognizer.shipped()


def persons(recogniser: NameRecognizer, text: str) -> list[str]:
    return [text[e.start : e.end] for e in recogniser.detect(text) if e.kind == "person"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please send the minutes to Hannah Schofield.", ["Hannah Schofield"]),
        ("Kannst du bitte Frau Brandt anrufen?", ["Brandt"]),
        ("Merci de prévenir Jean-Luc Marchetti.", ["Jean-Luc Marchetti"]),
        ("Ayer hablé con Rocío Sanz.", ["Rocío Sanz"]),
        ("Regards,\nTimothy Wexley", ["Timothy Wexley"]),
        ("Ich habe mit Leonie van der Meer gesprochen.", ["Leonie van der Meer"]),
    ],
)
def test_names_in_four_languages(names: NameRecognizer, text: str, expected: list[str]) -> None:
    assert persons(names, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The Munich office reopens on Monday.",
        "Die Kunden zahlen meistens per Überweisung.",
        "Les clients de Toulouse paient en ligne.",
        "Actualiza Chrome y reinicia el servidor.",
        "Most patients prefer morning appointments.",
    ],
)
def test_capitalised_words_that_are_not_people(names: NameRecognizer, text: str) -> None:
    assert persons(names, text) == []


def test_titles_are_outside_the_span_and_spans_map_to_the_text(names: NameRecognizer) -> None:
    text = "Dear Mrs. Okafor-Smith, thank you."
    [entity] = names.detect(text)
    assert text[entity.start : entity.end] == "Okafor-Smith"
    assert entity.data_class == "pii" and 0.0 < entity.score <= 1.0


def test_tokenizer_keeps_hyphens_and_apostrophes_inside_names() -> None:
    assert [t.text for t in tokenize("O'Brien-Ward, d'Artagnan")] == [
        "O'Brien-Ward",
        ",",
        "d'Artagnan",
    ]


def test_the_guard_finds_names_by_default_and_can_turn_them_off() -> None:
    text = "Forward this to Margarethe Vogelsang, please."
    ctx = ScanContext(stage="input")
    on = PiiGuard(GuardSpec(type="pii", options={"action": "redact"})).scan(text, ctx)
    assert on.redacted == "Forward this to [REDACTED:person], please."
    off = PiiGuard(GuardSpec(type="pii", options={"action": "redact", "names": False}))
    assert off.scan(text, ctx).findings == ()


def test_a_threshold_override_shares_the_loaded_weights() -> None:
    strict = NameRecognizer.shipped(0.999)
    assert strict is not NameRecognizer.shipped()
    assert strict.lexicon is NameRecognizer.shipped().lexicon
    assert persons(strict, "Merci de prévenir Jean-Luc Marchetti.") == []


def _copy_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "pii").mkdir(parents=True)
    shutil.copy(data_root() / WEIGHTS_PATH, root / WEIGHTS_PATH)
    shutil.copy(data_root() / "MANIFEST.json", root / "MANIFEST.json")
    return root


def test_verified_copy_loads(tmp_path: Path) -> None:
    recogniser = NameRecognizer.load(_copy_data(tmp_path))
    assert persons(recogniser, "Please send the minutes to Hannah Schofield.")


def test_tampered_weights_do_not_load(tmp_path: Path) -> None:
    root = _copy_data(tmp_path)
    blob = bytearray((root / WEIGHTS_PATH).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (root / WEIGHTS_PATH).write_bytes(bytes(blob))
    with pytest.raises(ModelVerificationFailed, match="pinned SHA-256"):
        NameRecognizer.load(root)


def test_weights_without_a_pinned_digest_do_not_load(tmp_path: Path) -> None:
    root = _copy_data(tmp_path)
    manifest = json.loads((root / "MANIFEST.json").read_text())
    del manifest["files"][WEIGHTS_PATH]
    (root / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelVerificationFailed, match="no pinned digest"):
        NameRecognizer.load(root)


def test_capitalised_runs_inside_keys_and_identifiers_are_not_names(names: NameRecognizer) -> None:
    for text in ("token Zx9Qw8Er7Ty6Ui5Op4Anna3Sd", "id user_Maria_01", "path a/Bernard/b"):
        assert persons(names, text) == [], text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Possessives and the German genitive are the name word.
        ("Daniela's report is late.", ["Daniela's"]),
        # A title before particles still counts: the surname after "Frau von".
        ("Frau von Thadden hat angerufen.", ["Thadden"]),
        # A name closing a sentence after a comma.
        ("Thanks for the help, Ingrid.", ["Ingrid"]),
        # Lower-case first names typed in chat.
        ("pregúntale a rocío, ella sabe", ["rocío"]),
    ],
)
def test_second_round_shapes(names: NameRecognizer, text: str, expected: list[str]) -> None:
    assert persons(names, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Der Müller mahlt das Korn.",  # a capitalised noun (and surname) after an article
        "Mit freundlichen Grüßen\nIhr Serviceteam",  # a sign-off without a name
        "Will you check the logs?",
    ],
)
def test_second_round_non_names(names: NameRecognizer, text: str) -> None:
    assert persons(names, text) == []


@pytest.mark.parametrize(
    "text",
    [
        # A word opening a sentence or after an article, then a particle and a lower-case word.
        "Margarita de limón para todos.",
        "Le Tonnelier du village répare les fûts.",
        # A place or organisation word after the name word, or before it across particles.
        "Walk along Sandra Bay at sunset.",
        "Bookings via Harrison Bank only.",
        "The Museo del Carmen reopens in May.",
    ],
)
def test_third_round_vetoes(names: NameRecognizer, text: str) -> None:
    assert persons(names, text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ask Hannah Park about the keys.", ["Hannah Park"]),  # a surname that is a place word
        ("Frau Bauer kommt morgen.", ["Bauer"]),  # a form of address lifts every veto
        ("Dolores de la Fuente llamó ayer.", ["Dolores de la Fuente"]),  # particle + capital
        ("Avisa a Raúl de que llega tarde.", ["Raúl"]),  # "a" is a preposition here
    ],
)
def test_third_round_vetoes_keep_names(
    names: NameRecognizer, text: str, expected: list[str]
) -> None:
    assert persons(names, text) == expected
