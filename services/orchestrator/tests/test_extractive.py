"""Tier 0: the extractive answer quotes the sentence that answers, with markers that map to citations."""

from __future__ import annotations

import re

from ragbus.orchestrator.extractive import extract_answer
from ragbus.orchestrator.testing import make_hit
from ragbus.orchestrator.text import content_terms, split_sentences, stem

EIFFEL = make_hit(
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the engineering company "
    "of Gustave Eiffel. Construction of the tower was completed in 1889 for the World's Fair.",
    0.71,
    doc_id="eiffel",
    title="Eiffel Tower",
)
HEIGHT = make_hit(
    "The tower is 330 metres tall. It was the tallest man-made structure in the world for 41 years.",
    0.64,
    doc_id="eiffel",
    index=1,
)
BREAD = make_hit(
    "Sourdough bread is leavened by wild yeast. The starter is fed every day.", 0.2, doc_id="bread"
)


def test_the_answer_quotes_the_sentence_that_answers_and_cites_its_chunk() -> None:
    ex = extract_answer("When was construction of the Eiffel Tower completed?", [BREAD, HEIGHT, EIFFEL])

    assert ex.text.startswith("Construction of the tower was completed in 1889 for the World's Fair. [3]")
    first = ex.citations[0]
    assert (first.n, first.doc_id, first.chunk_id) == (3, "eiffel", EIFFEL.chunk_id)
    assert first.quote is not None
    assert "completed in 1889" in first.quote
    assert first.score == EIFFEL.score


def test_every_marker_in_the_answer_has_a_citation_of_that_source() -> None:
    hits = [EIFFEL, HEIGHT, BREAD]
    ex = extract_answer("How tall is the Eiffel Tower and who designed it?", hits)

    markers = {int(n) for n in re.findall(r"\[(\d+)\]", ex.text)}
    assert markers == {c.n for c in ex.citations}
    for c in ex.citations:
        assert c.chunk_id == hits[c.n - 1].chunk_id
        assert c.quote
        assert c.quote.split(" … ")[0] in ex.text
    # Two parts of the question, answered by two different chunks: both quoted.
    assert "330 metres tall" in ex.text
    assert "Gustave Eiffel" in ex.text


def test_at_most_max_sentences_are_quoted() -> None:
    ex = extract_answer("tower Eiffel Paris 1889 tall designed", [EIFFEL, HEIGHT], max_sentences=1)
    assert len(ex.sentences) == 1
    assert ex.text.count("[") == 1


def test_a_word_every_passage_shares_weighs_less_than_a_rare_one() -> None:
    # "tower" is in every sentence, "wrought-iron" in one: the rare word decides.
    hits = [make_hit("The tower is tall. The tower is old. The tower is made of wrought-iron lattice.", 0.5)]
    ex = extract_answer("Which tower is wrought-iron?", hits, max_sentences=1)
    assert ex.text == "The tower is made of wrought-iron lattice. [1]"


def test_coverage_counts_the_question_words_the_quote_contains() -> None:
    ex = extract_answer("When was the Eiffel Tower completed?", [EIFFEL])
    assert ex.question_terms == ["eiffel", "tower", "complet"]
    assert ex.coverage == 1.0
    ex = extract_answer("When was the Eiffel Tower painted yellow?", [EIFFEL])
    assert ex.coverage < 1.0
    assert "yellow" in ex.question_terms
    assert "yellow" not in ex.covered_terms


def test_no_shared_word_means_no_answer() -> None:
    ex = extract_answer("What is the boiling point of mercury?", [EIFFEL, BREAD])
    assert ex.text == ""
    assert ex.citations == []


def test_sentences_split_at_ends_but_not_at_abbreviations_or_decimals() -> None:
    text = "Smith et al. found that doses of 0.5 mg helped (Fig. 2). Results differ, e.g. in mice. Done!"
    assert split_sentences(text) == [
        "Smith et al. found that doses of 0.5 mg helped (Fig. 2).",
        "Results differ, e.g. in mice.",
        "Done!",
    ]


def test_inflections_meet_and_stopwords_are_dropped() -> None:
    assert {stem(w) for w in ["increase", "increases", "increased", "increasing"]} == {"increas"}
    assert stem("virus") == "virus"
    assert stem("analysis") == "analysis"
    assert content_terms("What are the effects of the virus?") == ["effect", "virus"]


def test_a_citation_points_at_the_chunks_place_in_its_document() -> None:
    from dataclasses import replace

    from ragbus.orchestrator.retrieval import to_retrieved_chunk

    hit = replace(
        make_hit("The trial enrolled 36,282 women aged 50 to 79.", doc_id="trial.pdf"),
        char_span=(4100, 4890),
        section=("Methods", "Participants"),
        page=3,
        last_page=4,
    )
    answer = extract_answer("How many women did the trial enrol?", [hit])
    [citation] = answer.citations
    assert (citation.page, citation.last_page, citation.section) == (3, 4, ["Methods", "Participants"])
    assert (citation.char_start, citation.char_end) == (4100, 4890)
    retrieved = to_retrieved_chunk(hit)
    assert (retrieved.page, retrieved.section, retrieved.char_start) == (3, ["Methods", "Participants"], 4100)
