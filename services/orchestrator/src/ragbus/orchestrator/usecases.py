"""The orchestrator use case: one accepted question in, one drafted answer out (retrieval, then the
cascade, each timed). No Kafka here: `app.py` hands each event in and publishes what comes back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ragbus.common.envelope import Envelope
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDelta,
    AnswersDrafted,
    CacheHit,
    Cascade,
    Citation,
    DocsIndexed,
    QueriesAccepted,
    QueriesEscalated,
    StageTiming,
)
from ragbus.common.logging import get_logger
from ragbus.common.timing import stage
from ragbus.orchestrator import conversation, semantic_cache
from ragbus.orchestrator.cascade import ChatTier, run_cascade
from ragbus.orchestrator.citations import renumber
from ragbus.orchestrator.expansion import Expansion, expand
from ragbus.orchestrator.ports import AnswerCache, CacheEntry, CacheFound, ConversationMemory, Turn
from ragbus.orchestrator.retrieval import normalise_question, retrieve, search_filter, to_retrieved_chunk
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
    cache: AnswerCache | None = None
    memory: ConversationMemory | None = None

    @property
    def config(self) -> str:
        """What produced an answer besides the request: a cached answer is served only under the same."""
        tiers = ",".join(f"{t.name}:{t.prompt.id}" for t in self.chat_tiers)
        return f"extractive={self.policy.cascade.extractive};tiers={tiers}"


Publish = Callable[[AnswersDelta], Awaitable[object]]
# A question to answer: as the guard accepted it (the fast lane), or escalated to the model lane.
Accepted = Envelope[QueriesAccepted] | Envelope[QueriesEscalated]


class DeltaStream:
    """A streaming request's `answers.delta` events: the text as a tier generates it, in pieces of at
    least `min_chars` or `max_wait_s` apart (one event per token would be a message per 4 characters),
    numbered in order; a reset when the cascade withdraws a tier's text; the final marker."""

    def __init__(self, query: QueriesAccepted, publish: Publish, *, min_chars: int = 48) -> None:
        self._query, self._publish, self._min_chars = query, publish, min_chars
        self._seq, self._buffer, self._tier = 0, "", 0
        self._last = time.monotonic()
        self.shown: int | None = None  # the tier whose text the reader now has, if any

    async def _send(self, tier: int, text: str = "", *, reset: bool = False, final: bool = False) -> None:
        q = self._query
        delta = AnswersDelta(
            query_id=q.query_id, conversation_id=q.conversation_id, seq=self._seq, tier=tier, text=text,
            reset=reset, final=final,
        )  # fmt: skip
        self._seq += 1
        self._last = time.monotonic()
        await self._publish(delta)

    async def _flush(self) -> None:
        if self._buffer:
            text, self._buffer = self._buffer, ""
            await self._send(self._tier, text)

    async def text(self, tier: int, piece: str) -> None:
        if tier != self._tier:
            await self._flush()
        self._tier, self._buffer, self.shown = tier, self._buffer + piece, tier
        if len(self._buffer) >= self._min_chars or time.monotonic() - self._last >= 0.25:
            await self._flush()

    async def reset(self, tier: int) -> None:
        self._buffer = ""
        if self.shown is not None:
            await self._send(tier, reset=True)
        self.shown = None

    async def finish(self, tier: int, answer: str) -> None:
        """The answer the cascade kept: streamed already if its tier was the one shown, else sent whole
        (tier 0's quote, a cached answer, a lower tier's fallback) after withdrawing what was shown."""
        if self.shown != tier:
            await self.reset(tier)
            self._tier, self._buffer = tier, answer
        await self._flush()
        await self._send(tier, final=True)


async def draft_answer(
    deps: OrchestratorDeps,
    event: Accepted,
    publish: Publish | None = None,
    *,
    defer_models: bool = False,
) -> AnswersDrafted | None:
    """Answer the question from the tenant's documents only (the tenant comes from the envelope, never
    the body). A request that asked to stream has its text published through `publish` as it comes.

    With `defer_models` (the fast lane) it answers only what needs no model call, and returns None for
    a question that does: the caller escalates it to the model lane, which calls this again without.
    Nothing is published or stored before that decision, so the model lane starts afresh (retrieval
    again, tens of milliseconds against the seconds of a model call)."""
    stream = DeltaStream(event.data, publish) if publish is not None and event.data.options.stream else None
    drafted = await _draft(deps, event, stream, defer_models=defer_models)
    if drafted is None:
        return None
    if stream is not None and not drafted.retrieve_only:
        await stream.finish(drafted.cascade.tier, drafted.answer)
    return drafted


async def _draft(
    deps: OrchestratorDeps,
    event: Accepted,
    stream: DeltaStream | None,
    *,
    defer_models: bool,
) -> AnswersDrafted | None:
    query, policy, options = event.data, deps.policy, event.data.options
    stages = list(query.stages)
    history: list[Turn] = []
    if deps.memory is not None and policy.memory.enabled and query.conversation_id:
        history = await deps.memory.turns(event.tenantid, query.conversation_id)
    # What retrieval and the cache search for: a follow-up together with the question it follows.
    searched = conversation.standalone(query.question, history)
    cache = deps.cache if policy.cache.enabled and options.cache and not options.retrieve_only else None
    key, vector = "", None
    if cache is not None:
        key = semantic_cache.scope(options, deps.config, query.groups)
        with stage("cache lookup", SERVICE, stages, **{"ragbus.query_id": str(query.query_id)}) as span:
            vector = await _embed(deps, searched)
            found = await cache.lookup(event.tenantid, key, searched, vector)
            if found is not None and not await _sources_exist(deps, event.tenantid, found.entry):
                found = None  # deleted since, and its docs.indexed not consumed yet: never cite it
            span.set_attribute("ragbus.cache.hit", found is not None)
            if found is not None:
                span.set_attribute("ragbus.cache.similarity", round(found.similarity, 4))
        if found is not None:
            return _from_cache(query, found, stages)
    expansion = Expansion()
    # A request capped at tier 0 asked for no model at all: no expansion either.
    if policy.expansion.mode != "off" and deps.chat_tiers and options.max_tier != 0:
        if defer_models:  # expansion asks tier 1: that is the model lane's work
            return None
        with stage("expansion", SERVICE, stages, **{"ragbus.expansion.mode": policy.expansion.mode}):
            expansion = await expand(deps.chat_tiers[0], searched, policy.expansion)
    top_k = options.top_k or policy.top_k
    with stage("retrieval", SERVICE, stages, **{"ragbus.query_id": str(query.query_id)}) as span:
        with _embeddable():
            retrieval = await retrieve(
                deps.embedder,
                deps.store,
                tenant=event.tenantid,
                question=searched,
                top_k=top_k,
                # A ranking asked for as such (evaluations) keeps its tail: recall at depth is the point.
                min_score=-1.0 if options.retrieve_only else policy.min_score,
                where=search_filter(options.doc_ids, options.where, query.groups),
                policy=policy.retrieval,
                expansions=expansion.texts,
                query_vector=vector,
            )
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
            history=conversation.recent(history, policy.memory.max_chars),
            standalone=searched,
            stream=stream,
            options=query.options,
            policy=policy.cascade,
            tiers=deps.chat_tiers,
            dropped=len(retrieval.hits) - len(hits),
            defer_models=defer_models,
        )
        if result.deferred:
            span.set_attribute("ragbus.cascade.deferred", True)
            log.info("escalated to the model lane", retrieved=len(retrieval.hits))
            return None
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
    if cache is not None and vector is not None and _cacheable(cascade, citations):
        entry = CacheEntry(
            query_id=query.query_id,
            question=searched,
            answer=answer,
            citations=citations,
            retrieved=retrieval.chunks,
            tier=cascade.tier,
            reason=cascade.reason,
            cached_at=datetime.now(UTC),
        )
        await cache.store(event.tenantid, key, vector, entry)
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


async def forget_documents(deps: OrchestratorDeps, event: Envelope[DocsIndexed]) -> int:
    """A document changed or went away: the cached answers that used it go too."""
    if deps.cache is None:
        return 0
    forgotten = await deps.cache.invalidate(event.tenantid, [event.data.doc_id])
    if forgotten:
        log.info("cached answers forgotten", doc_id=event.data.doc_id, entries=forgotten)
    return forgotten


@contextlib.contextmanager
def _embeddable() -> Iterator[None]:
    """A question the embedder will never take is a poison message, wherever it is embedded."""
    try:
        yield
    except InputRejected as exc:
        raise PoisonMessage(f"the question cannot be embedded: {exc}") from exc


async def _embed(deps: OrchestratorDeps, question: str) -> list[float]:
    with _embeddable():
        return await deps.embedder.embed_query(normalise_question(question))


async def _sources_exist(deps: OrchestratorDeps, tenant: str, entry: CacheEntry) -> bool:
    """Every cited document is still indexed. `docs.indexed` removes the entries of a changed or
    deleted document, but on another partition, so a question asked right after a deletion may be
    looked up first; a deleted document must never be cited again."""
    for doc_id in sorted({c.doc_id for c in entry.citations}):
        if not await deps.store.count(tenant, doc_id):
            if deps.cache is not None:
                await deps.cache.invalidate(tenant, [doc_id])
            return False
    return True


def _cacheable(cascade: Cascade, citations: Sequence[Citation]) -> bool:
    """Only an answer some tier accepted, with sources: a fallback or "not found" may be bettered by
    the next try (a model back up, a document indexed)."""
    return bool(citations) and any(a.accepted and a.tier == cascade.tier for a in cascade.attempts)


def _from_cache(query: QueriesAccepted, found: CacheFound, stages: list[StageTiming]) -> AnswersDrafted:
    entry = found.entry
    hit = CacheHit(
        query_id=entry.query_id,
        question=entry.question,
        similarity=round(found.similarity, 4),
        cached_at=entry.cached_at,
    )
    reason = (
        f"semantic cache: the answer to an earlier request ({entry.query_id}, similarity "
        f"{found.similarity:.2f}); first answered at tier {entry.tier}: {entry.reason}"
    )
    log.info("answered from the cache", cached_query_id=entry.query_id, similarity=hit.similarity)
    return AnswersDrafted(
        query_id=query.query_id,
        conversation_id=query.conversation_id,
        question=query.question,
        answer=entry.answer,
        citations=entry.citations,
        retrieved=entry.retrieved,
        cascade=Cascade(tier=entry.tier, reason=reason, cache=hit),
        stages=stages,
    )


async def remember_turn(deps: OrchestratorDeps, event: Envelope[AnswersCompleted]) -> bool:
    """Keep an answered turn of a conversation, as the user saw it (after the output guard); a blocked
    or failed one is not part of what the conversation said."""
    done = event.data
    if (
        deps.memory is None
        or not deps.policy.memory.enabled
        or not done.conversation_id
        or done.status != "answered"
        or not done.question
        or not done.answer.strip()
    ):
        return False
    turn = Turn(query_id=done.query_id, question=done.question, answer=done.answer)
    await deps.memory.record(event.tenantid, done.conversation_id, turn)
    return True
