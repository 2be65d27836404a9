"""Retrieval: the question against one tenant's chunks, by meaning (dense) and by its words (BM25),
fused into one ranking; weak hits dropped.

Both legs run in the store under the same filter (tenant, documents, metadata, dates); the fusion is
pure (`ragbus.vectors.fusion`). `fusion="dense"` skips the lexical leg entirely.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ragbus.common.events import QueryFilter, RetrievedChunk
from ragbus.vectors.fusion import DEFAULT_RRF_K, DEFAULT_WEIGHT, FusionMethod, fuse
from ragbus.vectors.ports import ANY, Embedder, Hit, SearchFilter, VectorStore
from ragbus.vectors.sparse import Bm25Encoder, reciprocal_rank_fusion


@dataclass(frozen=True, slots=True)
class RetrievalPolicy:
    """How retrieval ranks: the fusion method and its knobs, and how deep each leg looks."""

    fusion: FusionMethod = "weighted"
    weight: float = DEFAULT_WEIGHT
    rrf_k: int = DEFAULT_RRF_K
    # Each leg's depth before fusion (at least `top_k`): a chunk ranked 60th by one leg and 3rd by the
    # other is exactly what hybrid search exists to find.
    candidates: int = 50


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
        """The best cosine among the hits (fusion may rank a chunk with a lower one first)."""
        return max((h.score for h in self.hits), default=0.0)


def to_retrieved_chunk(hit: Hit, *, with_text: bool = True) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=hit.chunk_id,
        doc_id=hit.doc_id,
        index=hit.index,
        score=hit.score,
        title=hit.title,
        flags=list(hit.flags),
        injection_score=hit.injection_score,
        text=hit.text if with_text else None,
        lexical=hit.lexical,
        **place_of(hit),
    )


def place_of(hit: Hit) -> dict[str, Any]:
    """A hit's place in its document, as the ChunkPlace fields of a retrieved chunk or a citation."""
    start, end = hit.char_span if hit.char_span is not None else (None, None)
    return {
        "char_start": start,
        "char_end": end,
        "section": list(hit.section),
        "page": hit.page,
        "last_page": hit.last_page,
    }


_SPACE = re.compile(r"\s+")


def normalise_question(text: str) -> str:
    """NFKC (full-width letters, ligatures and compatibility forms become plain ones, so `ﬁbrosis`
    meets `fibrosis`), control characters out, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    return _SPACE.sub(" ", text).strip()


def search_filter(
    doc_ids: Sequence[str] | None, where: QueryFilter | None, groups: Sequence[str] | None = None
) -> SearchFilter:
    """The store's filter for a request's `doc_ids` and `where` options and its asker's `groups`
    (None: no access check, for the store's own tools; a question always passes its asker's)."""
    if doc_ids is None and where is None and groups is None:
        return ANY
    where = where or QueryFilter()
    return SearchFilter(
        doc_ids=list(doc_ids) if doc_ids is not None else None,
        metadata={key: list(values) for key, values in where.metadata.items()},
        date_field=where.date_field,
        after=where.after,
        before=where.before,
        groups=sorted(set(groups)) if groups is not None else None,
    )


async def _ranking(
    embedder: Embedder,
    store: VectorStore,
    tenant: str,
    text: str,
    top_k: int,
    where: SearchFilter,
    policy: RetrievalPolicy,
    vector: Sequence[float] | None = None,
) -> list[Hit]:
    """One text's ranking: its dense leg alone, or both legs fused by the policy (`vector`: the text's
    embedding, when the caller has it already)."""
    vector = vector if vector is not None else await embedder.embed_query(text)
    if policy.fusion == "dense":
        return sorted(await store.search(tenant, vector, top_k, where), key=lambda h: h.score, reverse=True)
    depth = max(top_k, policy.candidates)
    legs = await store.search_hybrid(tenant, vector, Bm25Encoder.query(text), depth, where)
    return fuse(legs, top_k, method=policy.fusion, weight=policy.weight, rrf_k=policy.rrf_k)


async def retrieve(
    embedder: Embedder,
    store: VectorStore,
    *,
    tenant: str,
    question: str,
    top_k: int,
    min_score: float,
    where: SearchFilter = ANY,
    policy: RetrievalPolicy = RetrievalPolicy(),
    expansions: Sequence[str] = (),
    query_vector: Sequence[float] | None = None,
) -> Retrieval:
    """The `top_k` chunks of `tenant` that best match the question and pass `where`, ranked by the
    policy's fusion; a hit whose cosine is under `min_score` is dropped (noise, whichever leg found it:
    sharing one word with the question is no evidence on its own).

    `expansions` (rewrites of the question, or a hypothetical answer: ragbus.orchestrator.expansion) are
    each ranked the same way, `candidates` deep, and all rankings, the question's included, are fused by
    reciprocal rank. A hit keeps the cosine of the question's own ranking when it is in it, else the
    cosine to the expansion that found it. `query_vector` is the question's embedding (of
    `normalise_question(question)`) when the caller has it already (the semantic cache's lookup).

    Tenant scoping is the store's contract (every search names one tenant); here it is passed through
    from the event's `tenantid`, never from the payload, so a request cannot read another tenant's data.
    """
    if where.matches_nothing:
        return Retrieval(hits=[])  # restricted to no document at all: nothing can match
    question = normalise_question(question)
    if not expansions:
        ranked = await _ranking(embedder, store, tenant, question, top_k, where, policy, query_vector)
    else:
        depth = max(top_k, policy.candidates)
        texts = [question, *(normalise_question(t) for t in expansions)]
        rankings = [
            await _ranking(embedder, store, tenant, t, depth, where, policy, query_vector if i == 0 else None)
            for i, t in enumerate(texts)
        ]
        found: dict[UUID, Hit] = {}
        for ranking in rankings:  # the question's ranking first: its cosines win
            for hit in ranking:
                found.setdefault(hit.chunk_id, hit)
        fused = reciprocal_rank_fusion([[h.chunk_id for h in r] for r in rankings], k=policy.rrf_k)
        ranked = [dataclasses.replace(found[key], fused=score) for key, score in fused[:top_k]]
    kept = [h for h in ranked if h.score >= min_score]
    return Retrieval(hits=kept, dropped=len(ranked) - len(kept))
