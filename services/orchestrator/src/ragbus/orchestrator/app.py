"""The orchestrator service: `queries.accepted.v1` in, `answers.drafted.v1` out.

`python -m ragbus.stack.serve orchestrator` runs it alone (a container); `all` hosts it beside the other
services in one process, where it shares the embedded vector store with the embed service. Tests and
embedding runners pass `deps` to hand it clients they own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ragbus.common import topics
from ragbus.common.app import Clients, RagbusApp
from ragbus.common.bus import Bus, consumer_options, make_broker
from ragbus.common.envelope import Envelope
from ragbus.common.errors import DependencyUnavailable, PoisonMessage
from ragbus.common.events import AnswersDrafted, QueriesAccepted
from ragbus.common.logging import get_logger, setup_logging
from ragbus.common.topics import Topics
from ragbus.orchestrator.adapters.chat_openai import RETRYABLE_ERRORS, OpenAIChatModel
from ragbus.orchestrator.answering import SERVICE, AnswerPolicy, draft_answer
from ragbus.orchestrator.cascade import CascadePolicy, ChatTier
from ragbus.orchestrator.prompts import get_prompt
from ragbus.orchestrator.settings import ChatTierSettings, OrchestratorSettings
from ragbus.vectors.errors import InputRejected
from ragbus.vectors.ports import Embedder, VectorStore

log = get_logger("ragbus.orchestrator")
_UNREACHABLE: tuple[type[BaseException], ...] = (DependencyUnavailable, *RETRYABLE_ERRORS)


@dataclass(frozen=True, slots=True)
class OrchestratorDeps:
    """The clients the orchestrator needs; `chat_tiers[0]` is tier 1."""

    embedder: Embedder
    store: VectorStore
    chat_tiers: Sequence[ChatTier] = ()


def chat_tier(tier: ChatTierSettings) -> ChatTier:
    """A cascade tier over the OpenAI-compatible endpoint `tier` names."""
    return ChatTier(
        model=OpenAIChatModel.from_settings(tier),
        prompt=get_prompt(tier.prompt),
        max_tokens=tier.max_tokens,
        temperature=tier.temperature,
        max_source_chars=tier.max_source_chars,
        price_prompt_per_1k=tier.price_prompt_per_1k,
        price_completion_per_1k=tier.price_completion_per_1k,
        label=tier.name,
    )


def answer_policy(settings: OrchestratorSettings) -> AnswerPolicy:
    return AnswerPolicy(
        top_k=settings.top_k,
        min_score=settings.min_score,
        cascade=CascadePolicy(
            extractive=settings.extractive,
            max_sentences=settings.extractive_max_sentences,
            accept_min_score=settings.accept_min_score,
            accept_min_coverage=settings.accept_min_coverage,
        ),
    )


def _chat_ping(clients: Clients[OrchestratorDeps], n: int) -> Callable[[], Awaitable[None]]:
    async def ping() -> None:
        await clients.get().chat_tiers[n - 1].model.ping()

    return ping


def create_app(
    settings: OrchestratorSettings | None = None, deps: OrchestratorDeps | None = None
) -> RagbusApp:
    settings = settings or OrchestratorSettings()
    setup_logging(settings.log)
    t = Topics(settings.kafka.topic_prefix)
    broker = make_broker(SERVICE, settings, retryable=RETRYABLE_ERRORS)
    bus = Bus(broker, t, source=f"ragbus/{SERVICE}").declare(AnswersDrafted)
    policy = answer_policy(settings)
    clients = Clients[OrchestratorDeps]("orchestrator", deps)

    @broker.subscriber(t(topics.QUERIES_ACCEPTED), **consumer_options(SERVICE, settings.kafka))
    async def on_accepted(event: Envelope[QueriesAccepted]) -> None:
        d = clients.get()
        try:
            drafted = await draft_answer(
                event.tenantid,
                event.data,
                embedder=d.embedder,
                store=d.store,
                tiers=d.chat_tiers,
                policy=policy,
            )
        except InputRejected as exc:  # the embedder will never take this question
            raise PoisonMessage(f"the question cannot be embedded: {exc}") from exc
        await bus.reply(event, drafted)
        log.info(
            "answer drafted",
            tier=drafted.cascade.tier,
            reason=drafted.cascade.reason,
            retrieved=len(drafted.retrieved),
            citations=len(drafted.citations),
        )

    app = RagbusApp(broker, service=SERVICE)
    app.health_check("vector_store", lambda: clients.get().store.ping())
    app.health_check("embedder", lambda: clients.get().embedder.ping())
    for n in range(1, len(deps.chat_tiers if deps else settings.chat_tiers()) + 1):
        app.health_check(f"chat_tier_{n}", _chat_ping(clients, n))

    if deps is not None:
        return app  # the caller owns the clients (tests, or a runner sharing one store and model)

    @app.on_startup
    async def open_clients() -> None:
        # Imported here: the adapters load heavy libraries (torch, qdrant) only when configured.
        from ragbus.vectors.factory import open_embedder, open_vector_store

        embedder = open_embedder(settings.embedder)
        store = open_vector_store(settings.vectors)
        # Creates the collection on a fresh deployment (a search then finds nothing instead of failing),
        # and a store built with another embedding model stops the service here, not on every query.
        await store.ensure(embedder.dim)
        tiers = [chat_tier(s) for s in settings.chat_tiers()]
        for n, tier in enumerate(tiers, start=1):
            try:
                await tier.model.ping()
            except _UNREACHABLE as exc:
                # Not fatal: tier 0 still answers, and questions that need this tier wait for it.
                log.warning("chat tier not reachable yet", tier=n, model=tier.name, error=str(exc))
        clients.value = OrchestratorDeps(embedder=embedder, store=store, chat_tiers=tiers)

    @app.after_shutdown
    async def close_clients() -> None:
        d = clients.take()
        if d is None:
            return
        for tier in d.chat_tiers:
            await tier.model.aclose()
        await d.store.aclose()
        await d.embedder.aclose()

    return app
