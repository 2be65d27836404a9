from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragbus.ingest.chunking import ChunkingConfig, Span, plan_chunks
from ragbus.ingest.normalize import normalize_text
from ragbus.ingest.ports import Tokenizer
from ragbus.ingest.tokens import RegexTokenizer, tokenize_in_blocks


def chunk(text: str, tokenizer: Tokenizer, config: ChunkingConfig) -> list[Span]:
    return plan_chunks(text, tokenizer.tokenize(text), config, tokenizer.count)


def assert_well_formed(text: str, spans: list[Span], tokenizer: Tokenizer, config: ChunkingConfig) -> None:
    tokens = tokenizer.tokenize(text)
    assert spans[0].start == 0
    assert spans[-1].end == len(tokens)  # every token is in some chunk
    for prev, nxt in itertools.pairwise(spans):
        assert prev.start < nxt.start <= prev.end  # progress, and no gap between chunks
    for span in spans:
        chunk_text = text[span.char_start : span.char_end]
        assert chunk_text == chunk_text.strip()
        assert span.token_count <= config.max_tokens
        # Cut between words only: the embedder, tokenizing the chunk alone, sees exactly these tokens.
        assert tokenizer.count(chunk_text) == span.token_count


def test_chunks_stay_within_the_budget_and_map_back_to_the_text(
    tokenizer: Tokenizer, make_prose: Any
) -> None:
    text = make_prose.paragraphs(12, 9)
    config = ChunkingConfig(max_tokens=120, overlap_tokens=24)
    spans = chunk(text, tokenizer, config)
    assert len(spans) > 5
    assert_well_formed(text, spans, tokenizer, config)


def test_consecutive_chunks_overlap_starting_on_a_sentence(tokenizer: Tokenizer, make_prose: Any) -> None:
    # One long paragraph of ~15-token sentences: a sentence start always lies within the overlap window.
    text = make_prose.paragraphs(1, 60)
    config = ChunkingConfig(max_tokens=100, overlap_tokens=30)
    spans = chunk(text, tokenizer, config)
    assert len(spans) > 5
    for prev, nxt in itertools.pairwise(spans):
        shared = text[nxt.char_start : prev.char_end]
        assert nxt.char_start < prev.char_end, "no overlap"
        assert prev.end - nxt.start <= config.overlap_tokens
        assert re.match(r"[A-Z]", shared)  # the overlap starts a sentence
        assert text[nxt.char_start - 2 : nxt.char_start] == ". "


def test_chunks_end_at_sentence_ends_rather_than_mid_sentence(tokenizer: Tokenizer, make_prose: Any) -> None:
    text = make_prose.paragraphs(1, 60)
    spans = chunk(text, tokenizer, ChunkingConfig(max_tokens=100, overlap_tokens=20))
    for span in spans:
        assert text[span.char_start : span.char_end].endswith(".")


def test_paragraph_breaks_win_over_later_sentence_ends(tokenizer: Tokenizer, make_prose: Any) -> None:
    # Paragraphs of 5 sentences (~70 tokens): a 120-token chunk can hold one and a half; it should stop
    # at the paragraph break, not at the last sentence end before the budget.
    text = make_prose.paragraphs(8, 5)
    spans = chunk(text, tokenizer, ChunkingConfig(max_tokens=120, overlap_tokens=0))
    for span in spans[:-1]:
        assert text[span.char_end : span.char_end + 2] == "\n\n"
    assert len(spans) == 8


def test_markdown_list_items_and_headings_are_boundaries(regex: RegexTokenizer) -> None:
    items = "\n".join(f"- item {i} has a few words that run on and on" for i in range(30))
    text = normalize_text(f"# Heading\n\nIntro text here.\n{items}")
    spans = chunk(text, regex, ChunkingConfig(max_tokens=60, overlap_tokens=0))
    for span in spans[:-1]:
        following = text[span.char_end : span.char_end + 3]
        assert following == "\n- " or following.startswith("\n\n")


def test_hard_wrapped_lines_do_not_outrank_sentence_ends(regex: RegexTokenizer, make_prose: Any) -> None:
    # Prose wrapped at ~50 characters: a line break mid-sentence is no better than a space.
    flat = make_prose.paragraphs(1, 40)
    wrapped = re.sub(r"(.{40,50}?) (?=[a-z])", "\\1\n", flat)
    spans = chunk(wrapped, regex, ChunkingConfig(max_tokens=100, overlap_tokens=0))
    assert all(wrapped[s.char_start : s.char_end].endswith(".") for s in spans)


def test_a_word_longer_than_the_budget_is_cut_inside(regex: RegexTokenizer) -> None:
    blob = "A" * 2000  # a base64-like run without spaces: 400 regex pieces, one word
    text = f"Before the blob. {blob} After the blob."
    config = ChunkingConfig(max_tokens=50, overlap_tokens=10)
    spans = chunk(text, regex, config)
    assert all(s.token_count <= 50 for s in spans)
    assert "".join(text[s.char_start : s.char_end] for s in spans).count("A") >= 2000


def test_short_text_is_one_chunk(tokenizer: Tokenizer) -> None:
    spans = chunk("Just one sentence.", tokenizer, ChunkingConfig())
    assert [(s.char_start, s.char_end) for s in spans] == [(0, 18)]


def test_nothing_to_chunk_gives_no_chunks(tokenizer: Tokenizer) -> None:
    assert chunk("", tokenizer, ChunkingConfig()) == []


@pytest.mark.parametrize(
    ("max_tokens", "overlap", "min_tokens"),
    [(0, 0, None), (100, 50, None), (100, -1, None), (100, 10, 101), (100, 30, 20)],
)
def test_config_refuses_budgets_that_cannot_make_progress(
    max_tokens: int, overlap: int, min_tokens: int | None
) -> None:
    with pytest.raises(ValueError, match="must be"):
        ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap, min_tokens=min_tokens)


_PIECES = st.sampled_from(
    ["alpha", "beta", "gamma", "Delta", "epsilon", "x", "42", "3.14", ",", ".", "!", "?", ";", "(", ")",
     "\n", "\n\n", "- ", "# ", "unbelievably", "naïve", "日本語", "“quote”", "e.g.", "Mr.", "—"]
)  # fmt: skip
_TEXTS = st.lists(st.tuples(_PIECES, st.sampled_from([" ", "", " ", "  "])), max_size=400).map(
    lambda parts: normalize_text("".join(a + b for a, b in parts))
)


@settings(max_examples=150, deadline=None)
@given(text=_TEXTS, max_tokens=st.integers(8, 80), overlap_share=st.floats(0, 0.49))
def test_any_text_chunks_within_budget_with_exact_offsets(
    text: str, max_tokens: int, overlap_share: float, minilm: Tokenizer, regex: RegexTokenizer
) -> None:
    config = ChunkingConfig(max_tokens=max_tokens, overlap_tokens=int(max_tokens // 2 * overlap_share))
    for tokenizer in (minilm, regex):
        spans = chunk(text, tokenizer, config)
        if not tokenizer.tokenize(text):
            assert spans == []
            continue
        assert_well_formed(text, spans, tokenizer, config)


def test_sections_follow_the_heading_levels() -> None:
    from ragbus.ingest.chunking import sections

    text = (
        "Intro line.\n# Guide\nText.\n## Install\nSteps.\n### Linux ##\napt.\n## Use\nRun it.\n# C#\nSharp."
    )
    found = [(text[s.start : s.end].split("\n")[0], s.path) for s in sections(text)]
    assert found == [
        ("Intro line.", ()),
        ("# Guide", ("Guide",)),
        ("## Install", ("Guide", "Install")),
        ("### Linux ##", ("Guide", "Install", "Linux")),
        ("## Use", ("Guide", "Use")),
        ("# C#", ("C#",)),  # a `#` inside the heading is its text, not a closing sequence
    ]
    assert sections("No headings at all.") == [sections("No headings at all.")[0]]
    assert sections("No headings at all.")[0].path == ()


def test_no_chunk_or_overlap_crosses_a_break(tokenizer: Tokenizer, make_prose: Any) -> None:
    text = make_prose.paragraphs(6, 6)
    tokens = tokenize_in_blocks(tokenizer.tokenize, text)
    cut = len(tokens) // 2
    spans = plan_chunks(text, tokens, ChunkingConfig(max_tokens=60, overlap_tokens=20), breaks=[cut])
    assert all(s.end <= cut or s.start >= cut for s in spans)
    assert any(s.end == cut for s in spans)
    assert any(s.start == cut for s in spans)
    assert all(s.end - s.start <= 60 for s in spans)
