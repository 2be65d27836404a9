"""One accepted question in, one drafted answer out: retrieval, then the cascade, each timed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragbus.common.bus import Stopwatch
from ragbus.common.events import AnswersDrafted, QueriesAccepted
from ragbus.orchestrator.cascade import CascadePolicy, ChatTier, run_cascade
from ragbus.orchestrator.citations import renumber
from ragbus.orchestrator.retrieval import retrieve
from ragbus.vectors.ports import Embedder, VectorStore

SERVICE = "orchestrator"


@dataclass(frozen=True, slots=True)
class AnswerPolicy:
    top_k: int
    min_score: float
    cascade: CascadePolicy


async def draft_answer(
    tenant: str,
    query: QueriesAccepted,
    *,
    embedder: Embedder,
    store: VectorStore,
    tiers: Sequence[ChatTier],
    policy: AnswerPolicy,
) -> AnswersDrafted:
    """Answer `query` from `tenant`'s documents only (the tenant comes from the envelope, not the body)."""
    clock = Stopwatch("retrieval", SERVICE)
    retrieval = await retrieve(
        embedder,
        store,
        tenant=tenant,
        question=query.question,
        top_k=query.options.top_k or policy.top_k,
        min_score=policy.min_score,
        doc_ids=query.options.doc_ids,
    )
    retrieval_stage = clock.stop()
    clock = Stopwatch("generation", SERVICE)
    result = await run_cascade(
        query.question, retrieval.hits, options=query.options, policy=policy.cascade, tiers=tiers
    )
    generation_stage = clock.stop()
    answer, citations = renumber(result.answer, result.citations)
    return AnswersDrafted(
        query_id=query.query_id,
        conversation_id=query.conversation_id,
        question=query.question,
        answer=answer,
        citations=citations,
        retrieved=retrieval.chunks,
        cascade=result.cascade,
        stages=[*query.stages, retrieval_stage, generation_stage],
    )
