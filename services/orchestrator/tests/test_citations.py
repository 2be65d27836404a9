"""Citation numbering and the sentence splitter the extractive tier quotes from."""

from __future__ import annotations


def test_renumber_orders_sources_by_first_citation() -> None:
    from uuid import uuid4

    from ragbus.common.events import Citation
    from ragbus.orchestrator.citations import renumber

    cites = [Citation(n=n, doc_id=f"d{n}", chunk_id=uuid4()) for n in (2, 4, 5)]
    text, out = renumber("First [4]. Then [2][4]. End.", cites)
    assert text == "First [1]. Then [2][1]. End."
    assert [(c.n, c.doc_id) for c in out] == [(1, "d4"), (2, "d2"), (3, "d5")]  # unmarked d5 keeps its place


def test_sentences_skip_markdown_headings_and_stop_at_list_items() -> None:
    from ragbus.orchestrator.text import split_sentences

    text = "## Dead letters\nA service sends it to the DLQ. It goes on.\n- first item here\n- second item"
    assert split_sentences(text) == [
        "A service sends it to the DLQ.",
        "It goes on.",
        "first item here",
        "second item",
    ]
