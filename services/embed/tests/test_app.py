"""The service over FastStream's in-memory broker, with a real vector store (Qdrant Edge in a temporary
directory, and qdrant-client `:memory:`) and a hashing embedder: what a user of the bus sees on
`docs.indexed.v1` and the dead-letter topic, and what a search then finds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ragbus.common.envelope import Envelope
from ragbus.common.events import ChunkData, DocsChunked, DocsIndexed, doc_shard
from ragbus.common.ids import content_hash, record_id
from ragbus.common.settings import RetrySettings
from ragbus.common.testing import Harness, Received, component_settings
from ragbus.common.topics import DOCS_CHUNKED, DOCS_INDEXED
from ragbus.embed.app import create_app
from ragbus.embed.settings import EmbedSettings
from ragbus.embed.usecases import EmbedDeps
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.errors import EmbedderUnavailable
from ragbus.vectors.ports import SearchFilter, VectorStore
from ragbus.vectors.sparse import Bm25Encoder
from ragbus.vectors.testing import HashingEmbedder

EIFFEL = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
    "It was completed in 1889 for the World's Fair.",
    "The tower is 330 metres tall.",
]


def chunked(
    doc_id: str, texts: list[str], *, tenant: str = "acme", version: str = "v1", **fields: Any
) -> DocsChunked:
    chunks = [
        ChunkData(
            chunk_id=record_id(tenant, doc_id, str(i), content_hash(t)),
            index=i,
            text=t,
            content_hash=content_hash(t),
            token_count=len(t.split()),
            char_start=0,
            char_end=len(t),
        )
        for i, t in enumerate(texts)
    ]
    return DocsChunked(
        doc_id=doc_id,
        version=version,
        chunks=chunks,
        total_chunks=len(chunks),
        **({"title": "Eiffel Tower"} | fields),
    )


@pytest.fixture(params=["edge", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> AsyncIterator[VectorStore]:
    s: VectorStore = (
        EdgeVectorStore(tmp_path / "shard")
        if request.param == "edge"
        else QdrantServerStore(":memory:", collection=unique)
    )
    yield s
    await s.aclose()


class Service:
    """The embed app on the in-memory broker, with the store and embedder it was given."""

    def __init__(self, prefix: str, store: VectorStore, *, with_title: bool = True) -> None:
        retry = RetrySettings(initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts_unknown=3)
        settings = component_settings(EmbedSettings, prefix, retry=retry)
        self.embedder = HashingEmbedder(dim=32)
        self.store = store
        deps = EmbedDeps(embedder=self.embedder, store=store, with_title=with_title)
        self.harness = Harness(create_app(settings, deps))

    @property
    def dead(self) -> list[Received]:
        return self.harness.letters(DOCS_CHUNKED)

    def results_of(self, event: Envelope[DocsChunked]) -> list[Envelope[DocsIndexed]]:
        return [e for e in self.harness.events(DOCS_INDEXED) if e.causationid == event.id]


@pytest.fixture
def service(topic_prefix: str, store: VectorStore) -> Service:
    return Service(topic_prefix, store)


async def test_chunks_become_searchable_and_the_result_is_published(service: Service) -> None:
    async with service.harness as h:
        event = await h.send(chunked("eiffel", EIFFEL))

    [result] = service.results_of(event)
    assert result.data.upserted == 3
    assert result.data.removed == 0
    assert not result.data.deleted
    assert result.data.chunk_ids == [c.chunk_id for c in event.data.chunks]
    assert result.data.embedding_model == "test/hashing"
    assert (result.tenantid, result.correlationid, result.source) == (
        "acme",
        event.correlationid,
        "ragbus/embed",
    )
    assert result.key == f"acme:{doc_shard('eiffel')}".encode()
    assert await service.store.count("acme", "eiffel") == 3
    query = await service.embedder.embed_query("How tall is the tower?")
    hits = await service.store.search("acme", query, 1)
    assert hits[0].text == "The tower is 330 metres tall."
    assert hits[0].title == "Eiffel Tower"
    # What was embedded carries the title; what is stored is the chunk's own text.
    assert service.embedder.calls[0][0] == "Eiffel Tower\n" + EIFFEL[0]


async def test_a_flagged_chunk_is_stored_and_found_with_its_flag(service: Service) -> None:
    part = chunked("eiffel", EIFFEL)
    injected = part.chunks[2].model_copy(update={"flags": ["injection"], "injection_score": 0.9})
    part = part.model_copy(update={"chunks": [*part.chunks[:2], injected]})
    async with service.harness as h:
        await h.send(part)
    hits = await service.store.search("acme", await service.embedder.embed_query(EIFFEL[2]), 3)
    by_text = {h.text: h for h in hits}
    assert by_text[EIFFEL[2]].flags == ("injection",)
    assert by_text[EIFFEL[2]].injection_score == 0.9
    assert by_text[EIFFEL[0]].flags == ()


async def test_a_redelivered_event_leaves_one_point_per_chunk_and_the_same_result(service: Service) -> None:
    event = Envelope.new(chunked("eiffel", EIFFEL), source="ragbus/ingest", tenant="acme")
    async with service.harness as h:
        for _ in range(2):
            await h.send_event(event)

    assert await service.store.count("acme", "eiffel") == 3
    first, second = service.results_of(event)
    assert first.id == second.id  # downstream sees a duplicate, not a new fact
    assert (first.data.upserted, first.data.unchanged) == (3, 0)
    # The redelivery finds its points stored as they are: nothing embedded or written twice.
    assert (second.data.upserted, second.data.unchanged, second.data.removed) == (0, 3, 0)
    assert len(service.embedder.calls) == 1


async def test_an_unchanged_document_sent_again_is_not_embedded_again(service: Service) -> None:
    async with service.harness as h:
        await h.send(chunked("eiffel", EIFFEL))
        calls = len(service.embedder.calls)
        again = await h.send(chunked("eiffel", EIFFEL))  # a new event: the user re-ingested the file

    [result] = service.results_of(again)
    assert (result.data.upserted, result.data.unchanged, result.data.removed) == (0, 3, 0)
    assert result.data.chunk_ids == [c.chunk_id for c in again.data.chunks]
    assert len(service.embedder.calls) == calls
    assert await service.store.count("acme", "eiffel") == 3


async def test_a_metadata_only_change_rewrites_the_payloads_and_embeds_nothing(service: Service) -> None:
    async with service.harness as h:
        await h.send(chunked("eiffel", EIFFEL, metadata={"team": "ops"}, groups=["staff"]))
        calls = len(service.embedder.calls)
        # The same text with new metadata and new readers: every point must carry them (retrieval
        # filters on them), and no vector changes.
        regrouped = await h.send(chunked("eiffel", EIFFEL, metadata={"team": "travel"}, groups=["public"]))
        # One chunk newly flagged by the scan, the rest as just written: that chunk's payload only.
        part = chunked("eiffel", EIFFEL, metadata={"team": "travel"}, groups=["public"])
        flagged = part.chunks[1].model_copy(update={"flags": ["injection"], "injection_score": 0.9})
        one = await h.send(part.model_copy(update={"chunks": [part.chunks[0], flagged, part.chunks[2]]}))

    [first] = service.results_of(regrouped)
    assert (first.data.upserted, first.data.updated, first.data.unchanged, first.data.removed) == (0, 3, 0, 0)
    [second] = service.results_of(one)
    assert (second.data.upserted, second.data.updated, second.data.unchanged) == (0, 1, 2)
    assert len(service.embedder.calls) == calls  # nothing embedded again
    query = await service.embedder.embed_query(EIFFEL[1])
    hits = await service.store.search("acme", query, 3, SearchFilter(groups=("public",)))
    assert {h.metadata["team"] for h in hits} == {"travel"}
    assert {h.text: h.flags for h in hits}[EIFFEL[1]] == ("injection",)
    assert hits[0].text == EIFFEL[1]  # the vectors are the ones embedded first: still found by them
    # Retrieval filters see the new values at once: the old readers and the old metadata find nothing.
    assert await service.store.search("acme", query, 3, SearchFilter(groups=("staff",))) == []
    assert await service.store.search("acme", query, 3, SearchFilter(metadata={"team": ["ops"]})) == []
    assert await service.store.count("acme", "eiffel") == 3


@pytest.mark.parametrize("with_title", [True, False])
async def test_a_new_title_is_embedded_only_when_titles_are(
    topic_prefix: str, store: VectorStore, with_title: bool
) -> None:
    service = Service(topic_prefix, store, with_title=with_title)
    async with service.harness as h:
        await h.send(chunked("eiffel", EIFFEL))
        calls = len(service.embedder.calls)
        renamed = await h.send(chunked("eiffel", EIFFEL, title="La tour Eiffel"))

    [result] = service.results_of(renamed)
    if with_title:  # the model reads "title\ntext": a new title is new input, so new vectors
        assert (result.data.upserted, result.data.replaced, result.data.updated) == (3, 3, 0)
        assert service.embedder.calls[calls][0] == "La tour Eiffel\n" + EIFFEL[0]
    else:  # the title is payload only
        assert (result.data.upserted, result.data.updated) == (0, 3)
        assert len(service.embedder.calls) == calls
    hits = await store.search("acme", await service.embedder.embed_query(EIFFEL[2]), 3)
    assert {h.title for h in hits} == {"La tour Eiffel"}


async def test_a_new_version_replaces_the_old_chunks(service: Service) -> None:
    async with service.harness as h:
        await h.send(chunked("eiffel", EIFFEL, version="v1"))
        await h.send(chunked("other", ["Sourdough is leavened by wild yeast."]))
        # v2 keeps the first chunk as it was (same chunk id) and rewrites the rest.
        v2 = await h.send(chunked("eiffel", [EIFFEL[0], "It is 330 metres tall."], version="v2"))

    [result] = service.results_of(v2)
    # The kept chunk's vectors still hold: its payload moves to v2, nothing is embedded for it.
    assert (result.data.upserted, result.data.updated, result.data.removed) == (1, 1, 2)
    hits = await service.store.search(
        "acme", await service.embedder.embed_query("tower"), 10, SearchFilter(doc_ids=["eiffel"])
    )
    assert sorted((h.index, h.text, h.version) for h in hits) == [
        (0, EIFFEL[0], "v2"),
        (1, "It is 330 metres tall.", "v2"),
    ]
    assert await service.store.count("acme", "other") == 1


async def test_indexed_chunks_are_found_by_their_words_too(service: Service) -> None:
    async with service.harness as h:
        await h.send(chunked("eiffel", EIFFEL, version="v1"))
        await h.send(chunked("other", ["Sourdough is leavened by wild yeast."]))
    vector = await service.embedder.embed_query("yeast")
    legs = await service.store.search_hybrid("acme", vector, Bm25Encoder.query("leavened yeast"), 10)
    assert [h.doc_id for h in legs.sparse] == ["other"]
    assert legs.sparse[0].lexical is not None
    assert legs.sparse[0].lexical > 0


async def test_a_document_in_parts_replaces_the_old_version_when_its_last_part_is_in(
    service: Service,
) -> None:
    texts = [f"Paragraph {i} about the tower." for i in range(5)]
    whole = chunked("eiffel", texts, version="v2")
    async with service.harness as h:
        await h.send(chunked("eiffel", EIFFEL, version="v1"))
        event = Envelope.new(whole, source="ragbus/ingest", tenant="acme")
        parts = [
            whole.model_copy(update={"chunks": whole.chunks[:3], "part": 0, "parts": 2}),
            whole.model_copy(update={"chunks": whole.chunks[3:], "part": 1, "parts": 2}),
        ]
        for p in parts:
            e = event.model_copy(update={"data": p, "id": event.id})
            await h.send_event(e)
            if p.part == 0:
                # v2's first part is in but not searchable; v1 is what readers see until v2 is whole.
                assert await service.store.count("acme", "eiffel") == 6
                assert await service.store.count("acme", "eiffel", "v2") == 3

    results = service.results_of(event)
    assert [(r.data.part, r.data.upserted, r.data.removed) for r in results] == [(0, 3, 0), (1, 2, 3)]
    assert len({r.id for r in results}) == 2
    assert await service.store.count("acme", "eiffel") == 5


async def test_a_deletion_removes_every_point_of_the_document_for_that_tenant_only(service: Service) -> None:
    async with service.harness as h:
        await h.send(chunked("eiffel", EIFFEL, tenant="acme"), tenant="acme")
        await h.send(chunked("eiffel", EIFFEL, tenant="globex"), tenant="globex")
        gone = await h.send(chunked("eiffel", [], deleted=True), tenant="acme")

    [result] = service.results_of(gone)
    assert result.data.deleted
    assert result.data.removed == 3
    assert await service.store.count("acme") == 0
    assert await service.store.count("globex", "eiffel") == 3


async def test_a_malformed_message_is_dead_lettered_and_the_next_one_still_indexed(service: Service) -> None:
    bad = Envelope.new(chunked("eiffel", EIFFEL), source="ragbus/ingest").model_dump(mode="json")
    del bad["data"]["version"]  # breaks the contract
    async with service.harness as h:
        await h.send_raw(DOCS_CHUNKED, json.dumps(bad).encode())
        await h.send_raw(DOCS_CHUNKED, b"{not json")
        good = await h.send(chunked("eiffel", EIFFEL))

    assert [r.value for r in service.dead][1] == b"{not json"
    letters = [r.letter() for r in service.dead]
    assert [letter.original_topic for letter in letters] == [h.topics(DOCS_CHUNKED)] * 2
    assert letters[0].error_type == "ValidationError"
    assert "version" in letters[0].reason
    assert all(letter.service == "embed" for letter in letters)
    assert len(service.results_of(good)) == 1
    assert await service.store.count("acme", "eiffel") == 3


async def test_an_embedder_outage_is_waited_out_not_dead_lettered(service: Service) -> None:
    service.embedder.fail_with = EmbedderUnavailable("model server down")
    asyncio.get_running_loop().call_later(0.3, setattr, service.embedder, "fail_with", None)
    async with service.harness as h:
        event = await h.send(chunked("eiffel", EIFFEL))

    assert len(service.results_of(event)) == 1
    assert service.dead == []
    assert await service.store.count("acme", "eiffel") == 3


async def test_a_store_built_for_another_model_dead_letters_with_the_reason(service: Service) -> None:
    await service.store.ensure(service.embedder.dim * 2)
    async with service.harness as h:
        event = await h.send(chunked("eiffel", EIFFEL))

    assert service.results_of(event) == []
    [dead] = service.dead
    assert dead.value == event.to_bytes()
    letter = dead.letter()
    assert letter.error_type == "PoisonMessage"
    assert "dimension" in letter.reason
    assert letter.attempts == 1


def test_model_calls_out_are_one_more_than_the_model_runs_unless_set() -> None:
    """Each model process runs a call while one more waits, full, at the model: with fewer, a process
    waits for the event loop between calls; with many more, another tenant waits behind them."""
    assert EmbedSettings().calls_out(2) == 3
    assert EmbedSettings().calls_out(1) == 2
    assert EmbedSettings(batch_in_flight=1).calls_out(2) == 1
