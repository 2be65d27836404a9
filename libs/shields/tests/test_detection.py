"""Patterns and a named-entity model combined: overlaps resolved, a confidence per span. The tests
marked `model` load spaCy's small English pipeline from its installed wheel (no download)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest

from ragbus.shields.detection import PiiDetector, combine, extend_persons
from ragbus.shields.entities import Entity
from ragbus.shields.pii import PiiSpan

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_a_pattern_span_wins_over_an_entity_it_overlaps() -> None:
    address = PiiSpan("LOCATION", 10, 40, 0.9)
    street_as_person = PiiSpan("PERSON", 15, 22, 0.85)
    elsewhere = PiiSpan("PERSON", 50, 58, 0.85)
    assert combine([address], [street_as_person, elsewhere]) == [address, elsewhere]


def test_an_entity_of_the_same_kind_is_merged_into_the_pattern_span() -> None:
    cued = PiiSpan("PERSON", 4, 10, 0.9)
    model = PiiSpan("PERSON", 4, 20, 0.85)
    assert combine([cued], [model]) == [PiiSpan("PERSON", 4, 20, 0.9)]


def test_overlapping_entities_keep_the_surer_then_the_longer() -> None:
    weak = PiiSpan("ORGANIZATION", 0, 12, 0.75)
    sure = PiiSpan("PERSON", 0, 8, 0.95)
    low = PiiSpan("LOCATION", 30, 35, 0.4)
    assert combine([], [weak, sure, low]) == [sure]  # `low` is under min_score


class FakeModel:
    """Tags given surface strings with given labels, as a model would."""

    def __init__(self, **labels: str) -> None:
        self.labels = labels

    def recognize(self, texts: Sequence[str]) -> list[list[Entity]]:
        out = []
        for text in texts:
            found = []
            for value, label in self.labels.items():
                value = value.replace("_", " ")
                if value in text:
                    found.append(Entity(label, text.index(value), text.index(value) + len(value)))
            out.append(found)
        return out


def test_the_detector_combines_patterns_and_the_model() -> None:
    detector = PiiDetector(FakeModel(Ann_Lee="PERSON", Crown="PERSON", Acme_Corp="ORG"))
    text = "Ann Lee of Acme Corp lives at 14 Crown Street; mail ann@example.org"
    found = [(s.kind, text[s.start : s.end]) for s in detector.find(text)]
    assert found == [
        ("PERSON", "Ann Lee"),
        ("ORGANIZATION", "Acme Corp"),
        ("LOCATION", "14 Crown Street"),  # the model's "Crown" person lost to the address
        ("EMAIL", "ann@example.org"),
    ]
    assert [s.kind for s in detector.find(text, kinds={"EMAIL", "ORGANIZATION"})] == ["ORGANIZATION", "EMAIL"]
    assert PiiDetector().find("Ann Lee of Acme Corp") == []  # no model: no names without a cue


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    from ragbus.shields.adapters.spacy_ner import SpacyRecognizer

    return PiiDetector(SpacyRecognizer())


def names(detector: PiiDetector, text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in detector.find(text) if s.kind in ("PERSON", "LOCATION")]


@pytest.mark.model
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please ask Sarah Johnson whether the report is ready.", [("PERSON", "Sarah Johnson")]),
        ("My name is Krisztián Szöllösy and I live in Budapest.",
         [("PERSON", "Krisztián Szöllösy"), ("LOCATION", "Budapest")]),
        ("Tomomi Nishiyama lives at 86036 Rua do Arenque 1634, Goiânia",
         [("PERSON", "Tomomi Nishiyama"), ("LOCATION", "86036 Rua do Arenque 1634, Goiânia")]),
        ("Send the card to 14 Crown Street, London", [("LOCATION", "14 Crown Street, London")]),
        ("Mr. Pavlović flew to STAXROITH on Monday morning.",
         [("PERSON", "Pavlović"), ("LOCATION", "STAXROITH")]),
        ("Was hat Angela Merkel in Berlin gesagt?", [("PERSON", "Angela Merkel"), ("LOCATION", "Berlin")]),
    ],
)  # fmt: skip
def test_names_places_and_addresses_with_the_model(
    detector: PiiDetector, text: str, expected: list[tuple[str, str]]
) -> None:
    assert names(detector, text) == expected


@pytest.mark.model
def test_known_limits_of_the_small_model(detector: PiiDetector) -> None:
    # Lowercase names without a cue are missed; a cue finds them.
    assert names(detector, "follow up with patricia desrosiers in a couple of months.") == []
    assert names(detector, "my name is Patricia and my kid Lukas is 5") == [
        ("PERSON", "Patricia"),
        ("PERSON", "Lukas"),
    ]


@pytest.mark.model
def test_ordinary_questions_have_no_names(detector: PiiDetector) -> None:
    for question in (
        "How does the cascade decide to call the model?",
        "What is the boiling point of water at 2 bar?",
        "how do I kill a Python process?",
    ):
        assert detector.find(question) == []


# --- carrying the model's names to where it did not look twice ---------------------------------------


def persons(text: str, spans: Sequence[PiiSpan]) -> list[str]:
    return [text[s.start : s.end] for s in spans if s.kind == "PERSON"]


def found(text: str, *names: str, kind: str = "PERSON") -> list[PiiSpan]:
    return [PiiSpan(kind, text.index(n), text.index(n) + len(n), 0.85) for n in names]  # type: ignore[arg-type]


def test_a_surname_found_once_is_found_again_alone() -> None:
    text = "The film was directed by Maciej Borkowski and starring Borkowski himself."
    spans = extend_persons(text, found(text, "Maciej Borkowski"))
    assert persons(text, spans) == ["Maciej Borkowski", "Borkowski"]


def test_a_list_of_names_is_names_even_where_the_model_saw_a_place() -> None:
    text = "They had 6: Efimiya, Mary, Ariana, Isabel, Teresa and Jodi."
    spans = extend_persons(text, [*found(text, "Mary"), *found(text, "Ariana", kind="LOCATION")])
    assert persons(text, spans) == ["Efimiya", "Mary", "Ariana", "Isabel", "Teresa", "Jodi"]
    assert all(s.kind == "PERSON" for s in spans)


def test_a_list_of_places_or_firms_stays_what_it_is() -> None:
    places = "We flew to Paris, London and Berlin."
    spans = found(places, "Paris", "London", "Berlin", kind="LOCATION")
    assert extend_persons(places, spans) == spans
    firm = "Tomomi is from Hawkins, Richardson and Santana"
    spans = [*found(firm, "Tomomi", "Richardson"), *found(firm, "Hawkins", "Santana", kind="ORGANIZATION")]
    assert persons(firm, extend_persons(firm, spans)) == ["Tomomi", "Richardson"]


def test_the_other_speakers_of_a_dialogue_are_names() -> None:
    text = "Ubul: What a wife. Nicole: Remember me? John: You saved my life!"
    spans = extend_persons(text, found(text, "Nicole"))
    assert persons(text, spans) == ["Ubul", "Nicole", "John"]


def test_the_name_heading_an_address_is_a_person() -> None:
    text = "Billing address: Ana Dias     31401 ul. Slowicza 10 Apt. 360    Wroclaw"
    spans = extend_persons(text, found(text, "31401 ul. Slowicza 10 Apt. 360", kind="LOCATION"))
    assert persons(text, spans) == ["Ana Dias"]


def test_nothing_is_carried_without_a_name_to_start_from() -> None:
    text = "Capitalized words like Wisdom, Courage and Discipline are often mistaken for names."
    assert extend_persons(text, []) == []
