"""Prompt rendering (numbered sources, budget, registry) and reading `[n]` markers back into citations."""

from __future__ import annotations

import pytest

from ragbus.orchestrator.citations import parse_citations
from ragbus.orchestrator.prompts import DONT_KNOW, PROMPTS, RAG_ANSWER_V1, Source, format_numbered, get_prompt
from ragbus.orchestrator.settings import ChatTierSettings
from ragbus.orchestrator.testing import make_hit

A = make_hit("Aspirin reduces fever. It also thins the blood.", 0.8, doc_id="aspirin", title="Aspirin")
B = make_hit("Ibuprofen is an anti-inflammatory drug.", 0.7, doc_id="ibuprofen", index=3)
C = make_hit("Paracetamol relieves pain but not inflammation.", 0.6, doc_id="paracetamol")


def test_the_prompt_numbers_the_sources_in_retrieval_order_and_asks_for_markers() -> None:
    system, user = RAG_ANSWER_V1.render("  Does aspirin thin the blood? ", [A, B], max_source_chars=6000)
    assert system.role == "system"
    assert user.role == "user"
    assert "[1]" in system.content
    assert DONT_KNOW in system.content
    assert "[1] Aspirin. Aspirin reduces fever. It also thins the blood." in user.content
    assert "[2] Ibuprofen is an anti-inflammatory drug." in user.content
    assert user.content.index("[1]") < user.content.index("[2]")
    assert user.content.rstrip().endswith("Question: Does aspirin thin the blood?\nAnswer with citations:")


def test_sources_share_the_character_budget() -> None:
    long = make_hit("word " * 1000, doc_id="long")
    sources = [Source(n, h.title, h.text) for n, h in enumerate([long, B, C], start=1)]
    text = format_numbered(sources, max_chars=600)
    assert len(text) < 700
    # The short sources are whole; the long one gave way.
    assert B.text in text
    assert C.text in text
    assert "…" in text


def test_prompts_are_looked_up_by_name_and_version() -> None:
    assert get_prompt("rag-answer@v1") is RAG_ANSWER_V1
    assert RAG_ANSWER_V1.id in PROMPTS
    with pytest.raises(KeyError, match="known: rag-answer@v1"):
        get_prompt("rag-answer@v99")
    with pytest.raises(ValueError, match="unknown prompt"):
        ChatTierSettings(base_url="http://x/v1", model="m", prompt="nope@v1")


def test_valid_markers_become_citations_with_the_passage_they_support() -> None:
    p = parse_citations("Aspirin thins the blood [1]. Ibuprofen fights inflammation [2].", [A, B, C])
    assert p.text == "Aspirin thins the blood [1]. Ibuprofen fights inflammation [2]."
    assert [(c.n, c.doc_id, c.chunk_id) for c in p.citations] == [
        (1, "aspirin", A.chunk_id),
        (2, "ibuprofen", B.chunk_id),
    ]
    assert p.citations[0].quote == "It also thins the blood."  # the sentence of the source the claim rests on
    assert not p.fell_back
    assert p.note() == ""


def test_grouped_and_labelled_markers_are_read() -> None:
    p = parse_citations("Both reduce pain [1, 3]. See also [Source 2].", [A, B, C])
    assert p.text == "Both reduce pain [1][3]. See also [2]."
    assert [c.n for c in p.citations] == [1, 3, 2]


def test_markers_naming_no_source_are_removed_and_reported() -> None:
    p = parse_citations("Aspirin thins the blood [1] [7]. Also [0].", [A, B])
    assert p.text == "Aspirin thins the blood [1]. Also."
    assert [c.n for c in p.citations] == [1]
    assert p.invalid == [7, 0]
    assert "[7], [0]" in p.note()


def test_an_answer_citing_nothing_valid_cites_every_source_it_was_given_and_says_so() -> None:
    p = parse_citations("Aspirin thins the blood [9].", [A, B])
    assert p.text == "Aspirin thins the blood."
    assert p.fell_back
    assert [c.n for c in p.citations] == [1, 2]
    assert "cites no source by number" in p.note()
    assert "[9]" in p.note()
    none = parse_citations("Aspirin thins the blood.", [A])
    assert none.fell_back
    assert [c.chunk_id for c in none.citations] == [A.chunk_id]
