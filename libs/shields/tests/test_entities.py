"""Names of persons, places and organisations: where the model looks, and the rules around its labels.
A fake recognizer stands in for the model here; test_detection.py runs the real one (marked `model`)."""

from __future__ import annotations

from collections.abc import Sequence

from ragbus.shields.entities import (
    Entity,
    candidate_windows,
    cued_persons,
    cued_places,
    entity_spans,
    recognize,
)


def spans(text: str, *entities: tuple[str, str]) -> list[tuple[str, str]]:
    """Our kinds for model entities given as (label, surface text)."""
    found = [Entity(label, text.index(value), text.index(value) + len(value)) for label, value in entities]
    return [(s.kind, text[s.start : s.end]) for s in entity_spans(text, found)]


def test_a_question_without_a_name_gives_the_model_nothing_to_read() -> None:
    assert candidate_windows("How does the cascade decide to call the model? What is a dead letter?") == []


def test_windows_surround_capitalised_words_and_merge() -> None:
    text = "please forward this to " + "word " * 20 + "Ann Lee and then " + "word " * 20 + "Bob"
    windows = candidate_windows(text, context=3)
    assert [text[a:b] for a, b in windows] == ["word word word Ann Lee and then word", "word word word Bob"]


class Recorder:
    """A fake model: remembers what it was given, tags every `Ann Lee` as a person."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def recognize(self, texts: Sequence[str]) -> list[list[Entity]]:
        self.seen.extend(texts)
        return [
            [Entity("PERSON", t.index("Ann Lee"), t.index("Ann Lee") + 7)] if "Ann Lee" in t else []
            for t in texts
        ]


def test_recognize_reads_windows_in_one_batch_and_maps_offsets_back() -> None:
    model = Recorder()
    texts = ["x " * 30 + "ask Ann Lee today", "nothing capitalised here", "Ann Lee"]
    [first, second, third] = recognize(model, texts, context=2)
    assert [texts[0][e.start : e.end] for e in first] == ["Ann Lee"]
    assert second == []
    assert [texts[2][e.start : e.end] for e in third] == ["Ann Lee"]
    assert len(model.seen) == 2  # the text without a capitalised word never reached the model


def test_labels_map_to_our_kinds_and_others_are_dropped() -> None:
    text = "Ada Lovelace met engineers of Siemens in Paris on Monday."
    assert spans(
        text, ("PERSON", "Ada Lovelace"), ("ORG", "Siemens"), ("GPE", "Paris"), ("DATE", "Monday")
    ) == [
        ("PERSON", "Ada Lovelace"),
        ("ORGANIZATION", "Siemens"),
        ("LOCATION", "Paris"),
    ]


def test_entities_are_trimmed_to_the_name() -> None:
    text = "the verses from Faina D. Yefremova's Cautionary Tales; Mr. Labrie said"
    assert spans(text, ("ORG", "Faina D. Yefremova's"), ("PERSON", "Mr. Labrie")) == [
        ("PERSON", "Faina D. Yefremova"),  # "verses from": a weak cue turns the model's ORG into a person
        ("PERSON", "Labrie"),
    ]
    text = "Billing address: Sophie Lang\n    3482 Via Franscini 71"
    # trimmed of the line break, and a person: a name-like "organisation" right after a label's colon
    assert spans(text, ("ORG", "Sophie Lang\n    ")) == [("PERSON", "Sophie Lang")]


def test_cues_correct_the_model_for_names_in_other_languages() -> None:
    text = "My name is Miklós Hajdu and I flew to LEPPEN; Tomomi Nishiyama lives at 12 Rua X."
    got = spans(text, ("ORG", "Miklós Hajdu"), ("NORP", "LEPPEN"), ("ORG", "Tomomi Nishiyama"))
    assert got == [("PERSON", "Miklós Hajdu"), ("LOCATION", "LEPPEN"), ("PERSON", "Tomomi Nishiyama")]


def test_organisation_words_and_acronyms_are_not_persons() -> None:
    text = "Russell Investments asked for the SSN of The Clean Power Finance"
    got = spans(
        text, ("PERSON", "Russell Investments"), ("PERSON", "SSN"), ("PERSON", "The Clean Power Finance")
    )
    assert got == [("ORGANIZATION", "Russell Investments"), ("ORGANIZATION", "The Clean Power Finance")]


def test_companies_and_field_labels_the_model_calls_persons_are_not() -> None:
    text = "I work for Citigroup. Coden is a design agency based in Turku. Mobile: 0688 843 79 56 Fax: 345"
    got = spans(text, ("PERSON", "Citigroup"), ("PERSON", "Coden"), ("PERSON", "Mobile"), ("PERSON", "Fax"))
    assert got == [("ORGANIZATION", "Citigroup"), ("ORGANIZATION", "Coden")]
    # a strong cue still wins: a title before the name
    text = "I work for Dr. Ana Lima, who is a dentist"
    assert spans(text, ("PERSON", "Ana Lima")) == [("PERSON", "Ana Lima")]


def test_names_after_cues_are_found_without_a_model() -> None:
    def persons(text: str) -> list[str]:
        return [text[s.start : s.end] for s in cued_persons(text)]

    assert persons("Hello, my name is Ján M. Novák but everyone calls me Ján") == ["Ján M. Novák", "Ján"]
    assert persons("Dear Dr. Okonkwo-Adeyemi, thanks.") == ["Okonkwo-Adeyemi"]
    assert persons("I would like to remove my kid Lukas from the will.") == ["Lukas"]
    assert persons("Directed By:    Sari J. Paavolainen") == ["Sari J. Paavolainen"]
    assert persons("She was born on 8/5/1989. Her maiden name is Møller") == ["Møller"]
    # lowercase words after a cue are not names; nor are sentence openers ...
    assert persons("my name is not important. Dear all, The meeting") == []
    assert persons("my kid is sick, Dear sir") == []
    # ... except one word right after "name is" / "call me", as people type their own name
    assert persons("hi my name is vitoria and i live in porto") == ["vitoria"]
    assert persons("sometimes people call me višeslav") == ["višeslav"]


def test_places_after_cues_are_found_without_a_model() -> None:
    def places(text: str) -> list[str]:
        return [text[s.start : s.end] for s in cued_places(text)]

    assert places("Mr. Pavlović flew to STAXROITH on Monday.") == ["STAXROITH"]
    assert places("I'm Naomi, originally from Chiclana de la Frontera, and i'm 31") == [
        "Chiclana de la Frontera"
    ]
    assert places("I am in ΛΕΥΚΩΣΙΑ for a business trip") == ["ΛΕΥΚΩΣΙΑ"]
    assert places("we moved to a new house") == []
