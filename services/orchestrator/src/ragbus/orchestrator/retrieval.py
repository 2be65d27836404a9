"""Retrieval: the question's vector against one tenant's chunks, weak hits dropped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragbus.common.events import RetrievedChunk
from ragbus.vectors.ports import Embedder, Hit, VectorStore


@dataclass(frozen=True, slots=True)
class Retrieval:
    """The hits kept (best first; source `[n]` is `hits[n-1]`) and how many fell under the minimum."""

    hits: list[Hit]
    dropped: int = 0

    @property
    def chunks(self) -> list[RetrievedChunk]:
        return [to_retrieved_chunk(h) for h in self.hits]

    @property
    def top_score(self) -> float:
        return self.hits[0].score if self.hits else 0.0


def to_retrieved_chunk(hit: Hit) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=hit.chunk_id,
        doc_id=hit.doc_id,
        index=hit.index,
        score=hit.score,
        title=hit.title,
        flags=list(hit.flags),
        injection_score=hit.injection_score,
        text=hit.text,
    )


async def retrieve(
    embedder: Embedder,
    store: VectorStore,
    *,
    tenant: str,
    question: str,
    top_k: int,
    min_score: float,
    doc_ids: Sequence[str] | None = None,
) -> Retrieval:
    """The `top_k` chunks of `tenant` closest to the question with a score of at least `min_score`.

    Tenant scoping is the store's contract (every search names one tenant); here it is passed through
    from the event's `tenantid`, never from the payload, so a request cannot read another tenant's data.
    """
    if doc_ids is not None and not doc_ids:
        return Retrieval(hits=[])  # restricted to no document at all: nothing can match
    vector = await embedder.embed_query(question)
    hits = await store.search(tenant, vector, top_k, list(doc_ids) if doc_ids is not None else None)
    kept = sorted((h for h in hits if h.score >= min_score), key=lambda h: h.score, reverse=True)
    return Retrieval(hits=kept, dropped=len(hits) - len(kept))
