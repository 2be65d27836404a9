"""Retrieval: scoped to the event's tenant, weak hits dropped, best first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragbus.orchestrator.retrieval import retrieve
from ragbus.orchestrator.testing import make_hit
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.ports import Hit
from ragbus.vectors.testing import HashingEmbedder


class SpyStore:
    """Returns canned hits and records how it was searched (only `search`: all retrieval uses)."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.searches: list[tuple[str, int, Sequence[str] | None]] = []

    async def search(
        self, tenant: str, vector: Sequence[float], top_k: int, doc_ids: Sequence[str] | None = None
    ) -> list[Hit]:
        self.searches.append((tenant, top_k, doc_ids))
        return self.hits


async def test_the_tenant_top_k_and_documents_are_passed_to_the_store() -> None:
    store: Any = SpyStore([make_hit("x", 0.9)])
    await retrieve(
        HashingEmbedder(),
        store,
        tenant="acme",
        question="q",
        top_k=7,
        min_score=0.1,
        doc_ids=["a", "b"],
    )
    assert store.searches == [("acme", 7, ["a", "b"])]


async def test_hits_under_the_minimum_score_are_dropped_and_counted() -> None:
    store: Any = SpyStore(
        [make_hit("a", 0.2, index=1), make_hit("b", 0.9, index=2), make_hit("c", 0.5, index=3)]
    )
    r = await retrieve(HashingEmbedder(), store, tenant="acme", question="q", top_k=5, min_score=0.3)
    assert [h.index for h in r.hits] == [2, 3]
    assert r.dropped == 1
    assert r.top_score == 0.9
    assert [(c.index, c.score) for c in r.chunks] == [(2, 0.9), (3, 0.5)]


async def test_an_empty_document_restriction_searches_nothing() -> None:
    store: Any = SpyStore([make_hit("a", 0.9)])
    r = await retrieve(
        HashingEmbedder(),
        store,
        tenant="acme",
        question="q",
        top_k=5,
        min_score=0.0,
        doc_ids=[],
    )
    assert r.hits == []
    assert store.searches == []


async def test_another_tenants_chunks_are_never_returned(
    store: QdrantServerStore, embedder: HashingEmbedder
) -> None:
    question = "When was the Eiffel Tower completed?"
    own = await retrieve(embedder, store, tenant="acme", question=question, top_k=5, min_score=0.0)
    other = await retrieve(embedder, store, tenant="globex", question=question, top_k=5, min_score=0.0)
    assert own.hits
    assert own.hits[0].doc_id == "eiffel"
    assert other.hits == []
