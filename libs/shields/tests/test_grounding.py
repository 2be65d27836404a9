"""Support of answer sentences by their cited sources: invented facts and numbers are caught, quotes and
paraphrases that keep the source's words pass."""

from __future__ import annotations

import re

from ragbus.shields.grounding import markers, numbers, sentences, support

SOURCES = {
    1: "Consumers are idempotent: every write is an upsert keyed by a deterministic id, so a redelivered "
    "message changes nothing.",
    2: "The monitor stores 1,200 events a second in PostgreSQL, in batches of 500 rows.",
}


def test_a_quoted_or_closely_paraphrased_answer_is_supported() -> None:
    answer = (
        "Consumers are idempotent because every write is an upsert keyed by a deterministic id [1]. "
        "The monitor stores 1200 events a second in batches of 500 rows [2]."
    )
    found = support(answer, SOURCES)
    assert [s.supported for s in found.sentences] == [True, True]
    assert found.score == 1.0


def test_an_answer_from_memory_is_not_supported() -> None:
    answer = "Idempotence is guaranteed by two-phase commit across the Zookeeper ensemble [1]."
    [s] = support(answer, SOURCES).sentences
    assert s.judged
    assert not s.supported
    assert s.coverage < 0.5


def test_an_invented_number_fails_a_sentence_whose_words_all_match() -> None:
    answer = "The monitor stores 9,500 events a second in PostgreSQL [2]."
    [s] = support(answer, SOURCES).sentences
    assert s.coverage == 1.0
    assert s.missing_numbers == ("9500",)
    assert not s.supported


def test_a_sentence_is_judged_against_the_source_it_cites_not_another() -> None:
    # True of source 2, cited as 1.
    [s] = support("The monitor stores events in PostgreSQL in batches of rows [1].", SOURCES).sentences
    assert not s.supported
    [s] = support("The monitor stores events in PostgreSQL in batches of rows [2].", SOURCES).sentences
    assert s.supported


def test_abstentions_and_short_sentences_claim_nothing() -> None:
    abstain = re.compile(r"i don't know", re.IGNORECASE)
    found = support("Yes. I don't know what quantum gravity has to do with Kafka.", SOURCES, skip=(abstain,))
    assert found.judged == []
    assert found.score == 1.0


def test_sentences_markers_and_numbers_are_read_as_written() -> None:
    assert sentences("First one [1]. Second one.\n\n- a list item\n- another") == [
        "First one [1].",
        "Second one.",
        "- a list item",
        "another",
    ]
    assert markers("as shown [1, 3] and [Source 2] and [4-6]") == {1, 2, 3, 4, 5, 6}
    assert markers("code a[0] is not a marker") == set()
    assert numbers("In 2019, 1,000 people (7 groups) paid 3.5%") == {"2019", "1000", "3.5"}


def test_a_marker_after_the_full_stop_belongs_to_the_sentence_before_it() -> None:
    # The extractive tier writes "sentence. [n]": a quote of the sources is always supported.
    answer = (
        "Consumers are idempotent: every write is an upsert keyed by a deterministic id. [1] "
        "The monitor stores 1,200 events a second in PostgreSQL, in batches of 500 rows. [2]"
    )
    found = support(answer, SOURCES)
    assert [s.sources for s in found.sentences] == [(1,), (2,)]
    assert found.unsupported == []
