"""Retrieval: scoped to the event's tenant, both legs under one filter, fused, weak hits dropped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ragbus.common.events import QueryFilter
from ragbus.orchestrator.retrieval import RetrievalPolicy, normalise_question, retrieve, search_filter
from ragbus.orchestrator.testing import index_texts, make_hit
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.ports import ANY, Hit, Legs, SearchFilter
from ragbus.vectors.sparse import Bm25Encoder, SparseVector
from ragbus.vectors.testing import HashingEmbedder

DENSE = RetrievalPolicy(fusion="dense")


class SpyStore:
    """Returns canned hits and records how it was searched."""

    def __init__(self, hits: list[Hit], lexical: list[Hit] | None = None) -> None:
        self.hits, self.lexical = hits, lexical or []
        self.searches: list[tuple[str, int, SearchFilter]] = []
        self.hybrid: list[tuple[str, int, SparseVector, SearchFilter]] = []

    async def search(
        self, tenant: str, vector: Sequence[float], top_k: int, where: SearchFilter = ANY
    ) -> list[Hit]:
        self.searches.append((tenant, top_k, where))
        return self.hits

    async def search_hybrid(
        self,
        tenant: str,
        vector: Sequence[float],
        sparse: SparseVector,
        top_k: int,
        where: SearchFilter = ANY,
    ) -> Legs:
        self.hybrid.append((tenant, top_k, sparse, where))
        return Legs(self.hits, self.lexical)


async def test_both_legs_get_the_tenant_the_filter_and_the_candidate_depth() -> None:
    store: Any = SpyStore([make_hit("x", 0.9)])
    where = SearchFilter(doc_ids=["a", "b"], metadata={"groups": ["hr"]})
    policy = RetrievalPolicy(fusion="weighted", candidates=40)
    await retrieve(
        HashingEmbedder(), store, tenant="acme", question="BRCA1  risk?", top_k=7, min_score=0.1,
        where=where, policy=policy,
    )  # fmt: skip
    [(tenant, depth, sparse, passed)] = store.hybrid
    assert (tenant, depth, passed) == ("acme", 40, where)
    assert sparse == Bm25Encoder.query("BRCA1 risk")
    assert store.searches == []


async def test_dense_fusion_skips_the_lexical_leg() -> None:
    store: Any = SpyStore([make_hit("x", 0.9)])
    await retrieve(
        HashingEmbedder(), store, tenant="acme", question="q", top_k=7, min_score=0.1, policy=DENSE
    )
    assert store.searches == [("acme", 7, ANY)]
    assert store.hybrid == []


async def test_fused_order_is_kept_and_weak_cosines_are_dropped_and_counted() -> None:
    dense = [make_hit("a", 0.6, index=1), make_hit("b", 0.5, index=2), make_hit("c", 0.05, index=3)]
    lexical = [replace(make_hit("d", 0.4, index=4), lexical=9.0)]
    store: Any = SpyStore(dense, lexical)
    r = await retrieve(HashingEmbedder(), store, tenant="acme", question="q", top_k=5, min_score=0.1)
    # d: 0.75 * 0.4 + 0.25 * 1.0 = 0.55 ranks over a (0.45) and b (0.375); c's cosine is under 0.1.
    assert [h.index for h in r.hits] == [4, 1, 2]
    assert r.dropped == 1
    assert r.top_score == 0.6  # the best cosine, not the first hit's
    assert next((c.index, c.score, c.lexical) for c in r.chunks) == (4, 0.4, 9.0)


async def test_an_empty_document_restriction_searches_nothing() -> None:
    store: Any = SpyStore([make_hit("a", 0.9)])
    r = await retrieve(
        HashingEmbedder(), store, tenant="acme", question="q", top_k=5, min_score=0.0,
        where=SearchFilter(doc_ids=[]),
    )  # fmt: skip
    assert r.hits == []
    assert store.searches == []
    assert store.hybrid == []


def test_a_request_filter_becomes_the_store_filter() -> None:
    assert search_filter(None, None) is ANY
    assert search_filter(["d1"], None) == SearchFilter(doc_ids=["d1"])
    where = QueryFilter(metadata={"groups": ["hr", "legal"]}, after=datetime(2024, 1, 1, tzinfo=UTC))
    assert search_filter(None, where) == SearchFilter(
        metadata={"groups": ["hr", "legal"]}, after=datetime(2024, 1, 1, tzinfo=UTC)
    )
    # The asker's groups: always an access check once given, even in no group.
    assert search_filter(None, None, ["legal", "hr", "legal"]) == SearchFilter(groups=["hr", "legal"])
    assert search_filter(None, None, []) == SearchFilter(groups=[])


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  What\tis\n\nTP53? ", "What is TP53?"),
        ("ﬁbrosis in ＣＯＶＩＤ", "fibrosis in COVID"),  # ligature and full-width letters
        ("a\x00b\u200bc", "a b c"),  # control and format characters
    ],
)
def test_questions_are_normalised(raw: str, clean: str) -> None:
    assert normalise_question(raw) == clean


async def test_another_tenants_chunks_are_never_returned(
    store: QdrantServerStore, embedder: HashingEmbedder
) -> None:
    question = "When was the Eiffel Tower completed?"
    own = await retrieve(embedder, store, tenant="acme", question=question, top_k=5, min_score=0.0)
    other = await retrieve(embedder, store, tenant="globex", question=question, top_k=5, min_score=0.0)
    assert own.hits
    assert own.hits[0].doc_id == "eiffel"
    assert other.hits == []


async def test_hybrid_retrieval_on_a_real_store_honours_metadata_filters(
    embedder: HashingEmbedder, unique: str
) -> None:
    store = QdrantServerStore(":memory:", collection=unique)
    docs = {
        "hr": ["Parental leave is sixteen weeks."],
        "eng": ["Parental leave requests go to the HR portal."],
    }
    meta = {"hr": {"groups": ["hr"]}, "eng": {"groups": ["eng", "all"]}}
    await index_texts(store, embedder, "acme", docs, metadata=meta)
    question = "How long is parental leave?"
    both = await retrieve(embedder, store, tenant="acme", question=question, top_k=5, min_score=-1)
    assert {h.doc_id for h in both.hits} == {"hr", "eng"}
    assert all(h.lexical is not None for h in both.hits)  # both share "parental leave"
    only = SearchFilter(metadata={"groups": ["eng"]})
    r = await retrieve(embedder, store, tenant="acme", question=question, top_k=5, min_score=-1, where=only)
    assert [h.doc_id for h in r.hits] == ["eng"]
    await store.aclose()
