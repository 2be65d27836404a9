"""On real abstracts (SciFact): the guarantees the embed service relies on hold for every chunk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragbus.ingest.chunking import ChunkingConfig
from ragbus.ingest.domain import prepare_document
from ragbus.ingest.ports import Tokenizer
from ragbus.ingest.tokens import RegexTokenizer

pytestmark = pytest.mark.scifact

MINILM_WINDOW = 254  # 256 word pieces, [CLS] and [SEP] included


@pytest.fixture(scope="module")
def abstracts(data_dir: Path) -> list[tuple[str, str]]:
    with (data_dir / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(500), f, strict=False)]
    return [(r["_id"], f"{r['title']}\n\n{r['text']}") for r in rows]


def test_minilm_chunks_fit_the_budget_exactly_and_cover_the_abstract(
    abstracts: list[tuple[str, str]], minilm: Tokenizer
) -> None:
    config = ChunkingConfig(max_tokens=200, overlap_tokens=40)
    for doc_id, text in abstracts:
        doc = prepare_document("t", doc_id, text, minilm, config)
        for c in doc.chunks:
            assert minilm.count(c.text) == c.token_count <= 200
        assert doc.chunks[0].char_start == 0
        assert doc.chunks[-1].char_end == len(doc.text)


def test_regex_fallback_chunks_stay_inside_minilms_window(
    abstracts: list[tuple[str, str]], minilm: Tokenizer, regex: RegexTokenizer
) -> None:
    config = ChunkingConfig(max_tokens=200, overlap_tokens=40)
    real = [
        minilm.count(c.text)
        for doc_id, text in abstracts
        for c in prepare_document("t", doc_id, text, regex, config).chunks
    ]
    assert max(real) <= MINILM_WINDOW  # nothing the embedder would silently truncate
