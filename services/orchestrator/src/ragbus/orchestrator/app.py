"""The orchestrator service: `queries.accepted.v1` in, `answers.drafted.v1` out; `docs.indexed.v1` in, to
forget the cached answers a changed document made stale; `answers.completed.v1` in, to remember a
conversation's turns as the user saw them.

`ragbus serve orchestrator` runs it alone (a container); `ragbus up` hosts it beside the other services
in one process, where it shares the embedded vector store with the embed service.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from ragbus.common import topics
from ragbus.common.app import RagbusApp
from ragbus.common.envelope import Envelope
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDelta,
    AnswersDrafted,
    DocsIndexed,
    QueriesAccepted,
    QueriesEscalated,
)
from ragbus.common.service import Clients, Service
from ragbus.orchestrator import usecases
from ragbus.orchestrator.adapters.chat_openai import OpenAIChatModel
from ragbus.orchestrator.cascade import ChatTier
from ragbus.orchestrator.prompts import get_prompt
from ragbus.orchestrator.routing import load as load_router
from ragbus.orchestrator.settings import ChatTierSettings, OrchestratorSettings
from ragbus.orchestrator.usecases import OrchestratorDeps

SERVICE = usecases.SERVICE


def chat_tier(tier: ChatTierSettings) -> ChatTier:
    """A cascade tier over the OpenAI-compatible endpoint `tier` names."""
    return ChatTier(
        model=OpenAIChatModel.from_settings(tier),
        prompt=get_prompt(tier.prompt),
        max_tokens=tier.max_tokens,
        temperature=tier.temperature,
        max_source_chars=tier.source_chars(),
        limit=asyncio.Semaphore(tier.max_concurrency) if tier.max_concurrency else None,
        price_prompt_per_1k=tier.price_prompt_per_1k,
        price_completion_per_1k=tier.price_completion_per_1k,
        label=tier.name,
        router=load_router(tier.router) if tier.router else None,
        min_benefit=tier.min_benefit,
    )


async def open_deps(settings: OrchestratorSettings, clients: Clients) -> OrchestratorDeps:
    # Imported here: the adapters load heavy libraries (torch, qdrant) only when configured.
    from ragbus.vectors.factory import open_embedder, open_vector_store

    embedder = clients.add("embedder", open_embedder(settings.embedder))
    store = clients.add("vector_store", open_vector_store(settings.vectors.for_embedder(settings.embedder)))
    # Creates the collection on a fresh deployment (a search then finds nothing instead of failing),
    # and a store built with another embedding model stops the service here, not on every query.
    await store.ensure(embedder.dim)
    # Chat tiers are not pinged here: tier 0 answers while they are down (their questions wait).
    tiers = [chat_tier(s) for s in settings.chat_tiers()]
    for n, tier in enumerate(tiers, start=1):
        clients.add(f"chat_tier_{n}", tier.model)
    cache = None
    if settings.cache:
        from ragbus.orchestrator.adapters.answer_cache import VectorAnswerCache

        # A collection (an embedded shard) of its own beside the chunks', for the same embedding model.
        where = settings.vectors.for_embedder(settings.embedder).derived("answer-cache")
        cache = clients.add(
            "answer_cache", VectorAnswerCache(open_vector_store(where), settings.cache_policy())
        )
    memory = None
    if settings.memory:
        from ragbus.orchestrator.adapters.memory_store import VectorConversationMemory

        turns = settings.vectors.for_embedder(settings.embedder).derived("conversations")
        memory = clients.add(
            "conversations",
            VectorConversationMemory(
                open_vector_store(turns), dim=embedder.dim, max_turns=settings.memory_max_turns
            ),
        )
    return OrchestratorDeps(
        embedder=embedder,
        store=store,
        policy=settings.answer_policy(),
        chat_tiers=tiers,
        cache=cache,
        memory=memory,
    )


def create_app(
    settings: OrchestratorSettings | None = None, deps: OrchestratorDeps | None = None
) -> RagbusApp:
    settings = settings or OrchestratorSettings()
    service = Service(
        SERVICE,
        settings,
        deps=deps,
        open_deps=partial(open_deps, settings),
        publishes=[QueriesEscalated, AnswersDrafted, AnswersDelta],
    )

    # Two lanes, each on a topic of its own, so a question answered without a model never waits on a
    # partition behind a model call (docs/cascade.md): the fast lane answers what it can and escalates
    # the rest to the model lane.
    def deltas(event: Envelope[Any]) -> usecases.Publish:
        async def delta(piece: AnswersDelta) -> object:  # for a request that streams; ids by `seq`
            return await service.bus.reply(event, piece, seq=piece.seq)

        return delta

    @service.subscriber(topics.QUERIES_ACCEPTED, concurrent=True)
    async def on_accepted(event: Envelope[QueriesAccepted]) -> None:
        drafted = await usecases.draft_answer(service.deps(), event, deltas(event), defer_models=True)
        await service.bus.reply(
            event, drafted if drafted is not None else QueriesEscalated(**dict(event.data))
        )

    @service.subscriber(topics.QUERIES_ESCALATED, concurrent=True)
    async def on_escalated(event: Envelope[QueriesEscalated]) -> None:
        drafted = await usecases.draft_answer(service.deps(), event, deltas(event))
        assert drafted is not None  # only the fast lane defers
        await service.bus.reply(event, drafted)

    @service.subscriber(topics.ANSWERS_COMPLETED)
    async def on_completed(event: Envelope[AnswersCompleted]) -> None:
        await usecases.remember_turn(service.deps(), event)

    @service.subscriber(topics.DOCS_INDEXED)
    async def on_indexed(event: Envelope[DocsIndexed]) -> None:
        await usecases.forget_documents(service.deps(), event)

    return service.app
