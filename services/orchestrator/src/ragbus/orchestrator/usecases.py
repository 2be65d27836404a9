"""The orchestrator use case: one accepted question in, one drafted answer out (retrieval, then the
cascade, each timed). No Kafka here: `app.py` hands each event in and publishes what comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragbus.common.envelope import Envelope
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import AnswersDrafted, Cascade, QueriesAccepted
from ragbus.common.logging import get_logger
from ragbus.common.timing import stage
from ragbus.orchestrator.cascade import ChatTier, run_cascade
from ragbus.orchestrator.citations import renumber
from ragbus.orchestrator.expansion import Expansion, expand
from ragbus.orchestrator.retrieval import retrieve, search_filter, to_retrieved_chunk
from ragbus.orchestrator.settings import AnswerPolicy
from ragbus.orchestrator.untrusted import usable
from ragbus.vectors.errors import InputRejected
from ragbus.vectors.ports import Embedder, VectorStore

SERVICE = "orchestrator"
log = get_logger("ragbus.orchestrator")


@dataclass(frozen=True, slots=True)
class OrchestratorDeps:
    """What answering needs: the embedder and store to retrieve with, the chat tiers (`chat_tiers[0]`
    is tier 1), and the retrieval and cascade policy."""

    embedder: Embedder
    store: VectorStore
    policy: AnswerPolicy
    chat_tiers: Sequence[ChatTier] = ()


async def draft_answer(deps: OrchestratorDeps, event: Envelope[QueriesAccepted]) -> AnswersDrafted:
    """Answer the question from the tenant's documents only (the tenant comes from the envelope, never
    the body)."""
    query, policy, options = event.data, deps.policy, event.data.options
    stages = list(query.stages)
    expansion = Expansion()
    # A request capped at tier 0 asked for no model at all: no expansion either.
    if policy.expansion.mode != "off" and deps.chat_tiers and options.max_tier != 0:
        with stage("expansion", SERVICE, stages, **{"ragbus.expansion.mode": policy.expansion.mode}):
            expansion = await expand(deps.chat_tiers[0], query.question, policy.expansion)
    top_k = options.top_k or policy.top_k
    with stage("retrieval", SERVICE, stages, **{"ragbus.query_id": str(query.query_id)}) as span:
        try:
            retrieval = await retrieve(
                deps.embedder,
                deps.store,
                tenant=event.tenantid,
                question=query.question,
                top_k=top_k,
                # A ranking asked for as such (evaluations) keeps its tail: recall at depth is the point.
                min_score=-1.0 if options.retrieve_only else policy.min_score,
                where=search_filter(options.doc_ids, options.where),
                policy=policy.retrieval,
                expansions=expansion.texts,
            )
        except InputRejected as exc:  # the embedder will never take this question
            raise PoisonMessage(f"the question cannot be embedded: {exc}") from exc
        span.set_attributes(
            {
                "ragbus.retrieval.fusion": policy.retrieval.fusion,
                "ragbus.retrieval.top_k": top_k,
                "ragbus.retrieval.hits": len(retrieval.hits),
                "ragbus.retrieval.dropped": retrieval.dropped,
                "ragbus.retrieval.top_score": round(retrieval.top_score, 4),
            }
        )
    expanded = [expansion.attempt] if expansion.attempt is not None else []
    if options.retrieve_only:
        log.info("retrieved only", retrieved=len(retrieval.hits))
        return AnswersDrafted(
            query_id=query.query_id,
            conversation_id=query.conversation_id,
            question=query.question,
            answer="",
            # Ids, titles and scores only: the chunks' text is not screened for the user, so it stays.
            retrieved=[to_retrieved_chunk(h, with_text=False) for h in retrieval.hits],
            cascade=Cascade(tier=0, reason="retrieval only: nothing generated", attempts=expanded),
            stages=stages,
            retrieve_only=True,
        )
    # Flagged chunks (instructions planted in a document) are quoted as untrusted or dropped; every
    # retrieved chunk is still recorded in `retrieved`, with its flags.
    hits = usable(retrieval.hits, policy.flagged_sources)
    with stage("generation", SERVICE, stages) as span:
        result = await run_cascade(
            query.question,
            hits,
            options=query.options,
            policy=policy.cascade,
            tiers=deps.chat_tiers,
            dropped=len(retrieval.hits) - len(hits),
        )
        span.set_attributes(
            {
                "ragbus.cascade.tier": result.cascade.tier,
                "ragbus.cascade.attempts": len(result.cascade.attempts),
                "ragbus.cascade.cost_usd": sum(a.cost_usd or 0.0 for a in result.cascade.attempts),
            }
        )
    answer, citations = renumber(result.answer, result.citations)
    cascade = result.cascade
    if expanded:
        cascade = cascade.model_copy(update={"attempts": [*expanded, *cascade.attempts]})
    log.info(
        "answer drafted",
        tier=cascade.tier,
        reason=cascade.reason,
        expansions=len(expansion.texts),
        retrieved=len(retrieval.hits),
        flagged=sum(h.flagged for h in retrieval.hits),
        dropped_flagged=len(retrieval.hits) - len(hits),
        citations=len(citations),
    )
    return AnswersDrafted(
        query_id=query.query_id,
        conversation_id=query.conversation_id,
        question=query.question,
        answer=answer,
        citations=citations,
        retrieved=retrieval.chunks,
        cascade=cascade,
        stages=stages,
    )
