from __future__ import annotations

from typing import Any

import pytest

from ragbus.common.errors import PoisonMessage
from ragbus.common.events import ChunkData, DocsDeleted, DocsSubmitted
from ragbus.common.ids import content_hash, record_id
from ragbus.ingest.chunking import ChunkingConfig
from ragbus.ingest.domain import (
    ByteQuota,
    ByteQuotas,
    DocumentTooLarge,
    EmptyDocument,
    QuotaExceeded,
    chunked_template,
    deletion,
    plan_parts,
    prepare_document,
    split_parts,
)
from ragbus.ingest.normalize import normalize_text
from ragbus.ingest.ports import Tokenizer

CONFIG = ChunkingConfig(max_tokens=100, overlap_tokens=20)


def test_same_text_gives_the_same_version_and_chunk_ids(tokenizer: Tokenizer, make_prose: Any) -> None:
    text = make_prose.paragraphs(6, 8)
    a = prepare_document("acme", "doc-1", text, tokenizer, CONFIG)
    # The same content saved on Windows with trailing spaces: the same document.
    b = prepare_document("acme", "doc-1", text.replace("\n", "  \r\n") + "\r\n", tokenizer, CONFIG)
    assert a.version == b.version
    assert [c.chunk_id for c in a.chunks] == [c.chunk_id for c in b.chunks]
    assert a.tokenizer == tokenizer.name


def test_rechunking_the_same_text_another_way_is_a_new_version(tokenizer: Tokenizer, make_prose: Any) -> None:
    # Otherwise the embed service would keep the old chunks beside the new ones (same version).
    text = make_prose.paragraphs(6, 8)
    a = prepare_document("acme", "doc-1", text, tokenizer, CONFIG)
    b = prepare_document("acme", "doc-1", text, tokenizer, ChunkingConfig(max_tokens=80, overlap_tokens=10))
    assert a.version != b.version


def test_chunks_carry_offsets_hashes_and_deterministic_ids(tokenizer: Tokenizer, make_prose: Any) -> None:
    doc = prepare_document("acme", "doc-1", make_prose.paragraphs(6, 8), tokenizer, CONFIG)
    assert [c.index for c in doc.chunks] == list(range(len(doc.chunks)))
    for c in doc.chunks:
        assert doc.text[c.char_start : c.char_end] == c.text
        assert c.content_hash == content_hash(c.text)
        assert c.chunk_id == record_id("acme", "doc-1", str(c.index), c.content_hash)
        assert 0 < c.token_count <= CONFIG.max_tokens
    other_tenant = prepare_document("globex", "doc-1", make_prose.paragraphs(6, 8), tokenizer, CONFIG)
    assert not {c.chunk_id for c in doc.chunks} & {c.chunk_id for c in other_tenant.chunks}


def test_one_word_edit_changes_the_version_and_only_the_chunks_that_hold_it(
    tokenizer: Tokenizer, make_prose: Any
) -> None:
    text = make_prose.paragraphs(10, 8)
    before = prepare_document("acme", "doc-1", text, tokenizer, CONFIG)
    at = text.index("experiment 41")  # a sentence in the middle of the document
    edited_text = text[:at] + "experiment 42" + text[at + len("experiment 41") :]
    after = prepare_document("acme", "doc-1", edited_text, tokenizer, CONFIG)

    assert after.version != before.version
    assert len(after.chunks) == len(before.chunks)
    changed = [
        i
        for i, (b, a) in enumerate(zip(before.chunks, after.chunks, strict=True))
        if b.chunk_id != a.chunk_id
    ]
    holding = [i for i, c in enumerate(before.chunks) if c.char_start <= at < c.char_end]
    assert changed == holding
    assert 1 <= len(changed) <= 2  # the chunk with the word, and the next one if it lies in the overlap


def test_identical_chunks_are_kept_once_with_dense_indexes(tokenizer: Tokenizer, make_prose: Any) -> None:
    boilerplate = "Confidential. Do not distribute this page without written permission from the authors."
    pages = [f"{make_prose.paragraphs(1, 6, start=10 * i)}\n\n{boilerplate}" for i in range(4)]
    config = ChunkingConfig(max_tokens=40, overlap_tokens=0, min_tokens=5)
    doc = prepare_document("acme", "doc-1", "\n\n".join(pages), tokenizer, config)
    assert sum(c.text == boilerplate for c in doc.chunks) == 1
    assert doc.duplicates == 3
    assert [c.index for c in doc.chunks] == list(range(len(doc.chunks)))
    assert len({c.content_hash for c in doc.chunks}) == len(doc.chunks)


@pytest.mark.parametrize("text", ["", "   \n\n\t ", "\x00\x01\u200b\ufeff"])
def test_a_document_with_no_text_is_poison(text: str, tokenizer: Tokenizer) -> None:
    with pytest.raises(EmptyDocument, match="no text once normalised") as err:
        prepare_document("acme", "doc-1", text, tokenizer, CONFIG)
    assert isinstance(err.value, PoisonMessage)


def test_parts_respect_both_the_count_and_the_byte_limit() -> None:
    assert plan_parts([10] * 7, max_items=3, max_bytes=1000) == [range(0, 3), range(3, 6), range(6, 7)]
    assert plan_parts([40, 40, 40, 40], max_items=100, max_bytes=100) == [range(0, 2), range(2, 4)]
    assert plan_parts([100, 1, 100], max_items=100, max_bytes=100) == [range(0, 1), range(1, 2), range(2, 3)]
    with pytest.raises(DocumentTooLarge, match="chunk 1 takes 101 bytes"):
        plan_parts([10, 101], max_items=100, max_bytes=100)


def test_split_parts_numbers_the_parts_and_keeps_version_and_total(
    tokenizer: Tokenizer, make_prose: Any
) -> None:
    submitted = DocsSubmitted(
        doc_id="doc-1", text="x", title="A title", metadata={"lang": "en"}, groups=["legal", "hr", "legal"]
    )
    doc = prepare_document("acme", "doc-1", make_prose.paragraphs(10, 8), tokenizer, CONFIG)
    template = chunked_template(submitted, doc, content_type="text/plain", metadata={"lang": "en"})
    parts = split_parts(template, doc.chunks, max_chunks=4, chunk_bytes=100_000)
    assert len(parts) == -(-len(doc.chunks) // 4)
    assert [p.part for p in parts] == list(range(len(parts)))
    assert {p.parts for p in parts} == {len(parts)}
    assert {(p.version, p.total_chunks, p.title, p.tokenizer, tuple(p.groups)) for p in parts} == {
        (doc.version, len(doc.chunks), "A title", tokenizer.name, ("hr", "legal"))
    }
    chunks: list[ChunkData] = [c for p in parts for c in p.chunks]
    assert chunks == list(doc.chunks)


def test_deletion_is_a_chunked_marker_without_chunks() -> None:
    marker = deletion(DocsDeleted(doc_id="doc-1", reason="retired"))
    assert marker.deleted
    assert marker.doc_id == "doc-1"
    assert marker.chunks == []
    assert marker.total_chunks == 0


# --- quotas ----------------------------------------------------------------------------------------------


def test_a_byte_quota_lets_a_burst_through_then_says_when_the_next_document_fits() -> None:
    now = [0.0]
    quotas = ByteQuotas({"acme": ByteQuota(mb_per_hour=3.6, burst_mb=2)}, clock=lambda: now[0])  # 1 kB/s
    quotas.check("e1", "acme", 1_500_000)
    quotas.check("e1", "acme", 1_500_000)  # a redelivery takes nothing more
    with pytest.raises(QuotaExceeded, match=r"fits in 1000 s"):
        quotas.check("e2", "acme", 1_500_000)  # 0.5 MB left: 1 MB short at 1 kB/s
    with pytest.raises(QuotaExceeded, match=r"fits in 1000 s"):
        quotas.check("e2", "acme", 1_500_000)  # refused, it stays refused when redelivered
    now[0] = 1000.0
    quotas.check("e3", "acme", 1_500_000)
    quotas.check("e4", "globex", 50_000_000)  # a tenant with no quota, and no `*`: unlimited


def test_a_document_bigger_than_the_burst_can_never_fit_and_says_so() -> None:
    quotas = ByteQuotas({"*": ByteQuota(mb_per_hour=100, burst_mb=1)}, clock=lambda: 0.0)
    with pytest.raises(
        QuotaExceeded,
        match=r"the document is 2.0 MB, more than tenant acme's ingest burst of 1.0 MB .* never fit",
    ):
        quotas.check("e1", "acme", 2_000_000)


def test_the_star_quota_applies_to_every_tenant_not_named_each_its_own() -> None:
    quotas = ByteQuotas(
        {"*": ByteQuota(mb_per_hour=1, burst_mb=1), "big": ByteQuota(mb_per_hour=100, burst_mb=10)},
        clock=lambda: 0.0,
    )
    for tenant in ("a", "b"):  # each tenant has a bucket of its own
        quotas.check(f"{tenant}-1", tenant, 900_000)
    with pytest.raises(QuotaExceeded):
        quotas.check("a-2", "a", 900_000)
    quotas.check("big-1", "big", 9_000_000)


def test_heading_aware_chunks_stay_in_their_section_and_carry_its_path(
    tokenizer: Tokenizer, make_prose: Any
) -> None:
    text = (
        f"# Guide\n\n{make_prose.paragraphs(2, 5)}\n\n## Install\n\n{make_prose.paragraphs(3, 5)}\n\n"
        f"## Use\n\nRun it once."
    )
    config = ChunkingConfig(max_tokens=60, overlap_tokens=10, headings=True)
    doc = prepare_document("acme", "guide.md", text, tokenizer, config)
    starts = {h: doc.text.index(h) for h in ("## Install", "## Use")}
    for chunk in doc.chunks:
        # No chunk runs from one section into the next.
        for at in starts.values():
            assert not chunk.char_start < at < chunk.char_end
    assert next(c.section for c in doc.chunks) == ["Guide"]
    assert {tuple(c.section) for c in doc.chunks} == {("Guide",), ("Guide", "Install"), ("Guide", "Use")}
    last = doc.chunks[-1]
    assert (last.section, doc.text[last.char_start : last.char_end]) == (
        ["Guide", "Use"],
        "## Use\n\nRun it once.",
    )
    # The same text cut by the budget alone: another version, no sections.
    plain = prepare_document(
        "acme", "guide.md", text, tokenizer, ChunkingConfig(max_tokens=60, overlap_tokens=10)
    )
    assert plain.version != doc.version
    assert {tuple(c.section) for c in plain.chunks} == {()}


def test_the_strategy_is_the_documents_else_the_services_else_the_format() -> None:
    from ragbus.ingest.domain import chunking_for

    base = ChunkingConfig(max_tokens=100, overlap_tokens=20)
    assert chunking_for(base, "auto", None, "text/markdown").headings
    assert chunking_for(base, "auto", None, "text/html").headings
    assert not chunking_for(base, "auto", None, "text/plain").headings
    assert not chunking_for(base, "auto", "tokens", "text/markdown").headings
    assert chunking_for(base, "tokens", "headings", "text/plain").headings
    assert not chunking_for(base, "tokens", None, "text/markdown").headings
    assert chunking_for(base, "auto", None, None).max_tokens == 100


def test_chunks_of_a_paged_document_know_their_pages(tokenizer: Tokenizer, make_prose: Any) -> None:
    pages = [make_prose.paragraphs(2, 4), "", make_prose.paragraphs(3, 4), "The last page."]
    doc = prepare_document(
        "acme", "paper.pdf", "\n\n".join(pages), tokenizer, ChunkingConfig(max_tokens=50, overlap_tokens=10),
        pages=pages,
    )  # fmt: skip
    assert doc.chunks[0].page == 1
    assert doc.chunks[-1].last_page == 4
    for chunk in doc.chunks:
        assert chunk.page is not None
        assert chunk.last_page is not None
        assert chunk.page <= chunk.last_page
        assert 2 not in (chunk.page, chunk.last_page)  # the empty page holds no chunk's start or end
        # The chunk's text is on the pages it names.
        for piece in doc.text[chunk.char_start : chunk.char_end].split("\n\n"):
            assert any(piece in normalize_text(pages[n - 1]) for n in range(chunk.page, chunk.last_page + 1))
    assert prepare_document("acme", "a", "Plain text.", tokenizer, CONFIG).chunks[0].page is None


def test_sentence_windows_embed_one_sentence_and_carry_its_neighbours(tokenizer: Tokenizer) -> None:
    sentences = [f"Sentence {n} says the pump moves {n} litres of water." for n in range(6)]
    text = " ".join(sentences)
    config = ChunkingConfig(max_tokens=80, overlap_tokens=10, sentence_window=1)
    doc = prepare_document("acme", "pump.md", text, tokenizer, config)
    assert len(doc.chunks) == 6  # one per sentence
    for n, chunk in enumerate(doc.chunks):
        assert chunk.focus is not None
        assert chunk.text[chunk.focus.start : chunk.focus.end] == sentences[n]
        # The neighbours on either side, where there are any, and nothing more.
        expected = " ".join(sentences[max(0, n - 1) : n + 2])
        assert chunk.text == expected
        assert doc.text[chunk.char_start : chunk.char_end] == chunk.text
    # Windows that share their text but not their focus are different chunks.
    assert len({c.chunk_id for c in doc.chunks}) == 6
    # The budget wins over the window: with room for about one sentence, a window is its sentence.
    small = ChunkingConfig(max_tokens=16, overlap_tokens=2, sentence_window=2)
    tight = prepare_document("acme", "pump.md", text, tokenizer, small)
    assert all(c.token_count <= 16 for c in tight.chunks)
    assert (
        prepare_document("acme", "pump.md", text, tokenizer, config).version
        != prepare_document(
            "acme", "pump.md", text, tokenizer, ChunkingConfig(max_tokens=80, overlap_tokens=10)
        ).version
    )


def test_the_sentences_strategy_keeps_sections_of_headed_formats() -> None:
    from ragbus.ingest.domain import chunking_for

    base = ChunkingConfig(max_tokens=100, overlap_tokens=20)
    md = chunking_for(base, "sentences", None, "text/markdown", 3)
    assert (md.sentence_window, md.headings) == (3, True)
    plain = chunking_for(base, "auto", "sentences", None)
    assert (plain.sentence_window, plain.headings) == (2, False)
    assert chunking_for(base, "auto", None, "text/markdown").sentence_window == 0
