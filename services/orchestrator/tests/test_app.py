"""The service over FastStream's in-memory broker, with a hashing embedder, qdrant-client `:memory:`
and a scripted chat model: what a user of the bus sees on `answers.drafted.v1` and the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDelta,
    AnswersDrafted,
    DocsIndexed,
    QueriesAccepted,
    QueriesEscalated,
    QueryOptions,
    StageTiming,
)
from ragbus.common.settings import RetrySettings
from ragbus.common.telemetry import recording
from ragbus.common.testing import Harness, Received, component_settings
from ragbus.common.topics import ANSWERS_DELTA, ANSWERS_DRAFTED, QUERIES_ACCEPTED, QUERIES_ESCALATED, Topics
from ragbus.orchestrator.adapters.answer_cache import VectorAnswerCache
from ragbus.orchestrator.adapters.memory_store import VectorConversationMemory
from ragbus.orchestrator.app import create_app
from ragbus.orchestrator.cascade import NOT_FOUND, ChatTier
from ragbus.orchestrator.prompts import RAG_ANSWER_V1
from ragbus.orchestrator.semantic_cache import CachePolicy
from ragbus.orchestrator.settings import OrchestratorSettings
from ragbus.orchestrator.testing import FakeChatModel
from ragbus.orchestrator.usecases import OrchestratorDeps
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.testing import HashingEmbedder

HEADERS = {"content-type": CE_CONTENT_TYPE}


class Service:
    """The orchestrator app on the in-memory broker, with a scripted chat model as tier 1."""

    def __init__(
        self,
        prefix: str,
        embedder: HashingEmbedder,
        store: QdrantServerStore,
        cache: VectorAnswerCache | None = None,
        memory: VectorConversationMemory | None = None,
        **settings_fields: Any,
    ) -> None:
        settings = component_settings(
            OrchestratorSettings,
            prefix,
            retry=RetrySettings(initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts_unknown=3),
            # The hashing embedder's cosines are lower than a real model's: thresholds to match.
            min_score=0.05,
            accept_min_score=0.3,
            **settings_fields,
        )
        self.model = FakeChatModel(
            "It was built for the 1889 World's Fair by the company of Gustave Eiffel [1]."
        )
        tiers = [ChatTier(model=self.model, prompt=RAG_ANSWER_V1)]
        deps = OrchestratorDeps(
            embedder=embedder,
            store=store,
            policy=settings.answer_policy(),
            chat_tiers=tiers,
            cache=cache,
            memory=memory,
        )
        self.harness = Harness(create_app(settings, deps), watch=[QUERIES_ESCALATED])

    @property
    def drafted(self) -> list[Envelope[AnswersDrafted]]:
        return self.harness.events(ANSWERS_DRAFTED)

    @property
    def dead(self) -> list[Received]:
        return self.harness.letters(QUERIES_ACCEPTED)

    async def ask(
        self,
        question: str,
        *,
        tenant: str = "acme",
        conversation: str | None = None,
        groups: tuple[str, ...] = (),
        **options: Any,
    ) -> Envelope[AnswersDrafted]:
        earlier = StageTiming(
            stage="input_guard",
            service="guard",
            started_at=datetime(2026, 1, 1, tzinfo=UTC),
            finished_at=datetime(2026, 1, 1, 0, 0, 0, 10_000, tzinfo=UTC),
        )
        query = QueriesAccepted(
            query_id=f"q{len(self.drafted)}",
            conversation_id=conversation,
            question=question,
            groups=list(groups),
            options=QueryOptions(**options),
            stages=[earlier],
        )
        event = await self.harness.send(query, tenant=tenant, source="test")
        # Answered by the fast lane, or by the model lane after an escalation (docs/cascade.md).
        causes = {event.id, *(e.id for e in self.escalated if e.causationid == event.id)}
        [answer] = [d for d in self.drafted if d.causationid in causes]
        return answer

    @property
    def escalated(self) -> list[Envelope[QueriesEscalated]]:
        return self.harness.events(QUERIES_ESCALATED)


@pytest.fixture
def service(topic_prefix: str, embedder: HashingEmbedder, store: QdrantServerStore) -> Service:
    return Service(topic_prefix, embedder, store)


async def test_a_lookup_is_answered_at_tier_0_with_citations_and_no_model_call(service: Service) -> None:
    async with service.harness:
        event = await service.ask("When was construction of the Eiffel Tower completed?")

    answer = event.data
    assert service.model.calls == []
    assert answer.cascade.tier == 0
    assert answer.cascade.attempts[0].accepted
    assert "completed in 1889" in answer.answer
    assert "[1]" in answer.answer
    assert answer.citations[0].doc_id == "eiffel"
    assert answer.citations[0].n == 1
    assert answer.retrieved[0].chunk_id == answer.citations[0].chunk_id
    assert event.tenantid == "acme"
    assert event.source == "ragbus/orchestrator"
    assert [s.stage for s in answer.stages] == ["input_guard", "retrieval", "generation"]
    assert all(s.service == "orchestrator" for s in answer.stages[1:])
    assert service.escalated == []  # answered in the fast lane: no model lane involved


async def test_a_why_question_escalates_to_the_model_and_the_event_says_why(service: Service) -> None:
    async with service.harness:
        answer = (await service.ask("Why was the Eiffel Tower built?")).data

    assert len(service.model.calls) == 1
    prompt = service.model.calls[0][1].content
    assert "[1] Eiffel Tower. " in prompt
    assert "Question: Why was the Eiffel Tower built?" in prompt
    assert answer.cascade.tier == 1
    assert "asks 'why'" in answer.cascade.attempts[0].reason
    assert "asks 'why'" in answer.cascade.reason
    assert answer.answer.endswith("Gustave Eiffel [1].")
    assert answer.citations[0].doc_id == "eiffel"
    assert answer.cascade.attempts[1].prompt_tokens > 0


async def test_a_question_that_needs_the_model_is_handed_to_the_model_lane_once(service: Service) -> None:
    """The fast lane (queries.accepted) stops before the model and escalates; the model lane
    (queries.escalated) answers. The escalation is the accepted question as it was, and the answer
    follows it, so a redelivery of either repeats the same ids (docs/cascade.md, "Two lanes")."""
    async with service.harness:
        drafted = await service.ask("Why was the Eiffel Tower built?")
        [escalated] = service.escalated
        asked = escalated.data
        await service.harness.send_event(escalated)  # the model lane's input delivered again

    assert escalated.source == "ragbus/orchestrator"
    assert asked.question == "Why was the Eiffel Tower built?"
    assert [s.stage for s in asked.stages] == ["input_guard"]  # the fast lane's work is not carried over
    assert drafted.causationid == escalated.id
    assert len(service.drafted) == 2
    assert service.drafted[1].id == drafted.id  # the redelivery answers under the same id
    assert len(service.model.calls) == 2  # a model called again on redelivery, as before the lanes


async def test_max_tier_0_never_calls_the_model(service: Service) -> None:
    async with service.harness:
        answer = (await service.ask("Why was the Eiffel Tower built?", max_tier=0)).data

    assert service.model.calls == []
    assert answer.cascade.tier == 0
    assert "options.max_tier=0" in answer.cascade.reason


async def test_query_expansion_asks_the_cheapest_tier_first_and_counts_its_cost(
    topic_prefix: str, embedder: HashingEmbedder, store: QdrantServerStore
) -> None:
    service = Service(topic_prefix, embedder, store, expansion="multi-query", expansion_variants=2)
    rewrites = "1. Eiffel Tower construction purpose\n2. reason the Eiffel Tower was erected"
    answer_text = service.model.reply
    service.model.reply = lambda messages: rewrites if "Rewrite" in messages[-1].content else str(answer_text)
    async with service.harness:
        answer = (await service.ask("Why was the Eiffel Tower built?")).data
        capped = (await service.ask("Why was the Eiffel Tower built?", max_tier=0)).data

    assert len(service.model.calls) == 2  # the rewrites, then the answer; none for the capped request
    expansion, *cascade = answer.cascade.attempts
    assert (expansion.prompt, expansion.accepted) == ("expansion-multi-query@v1", False)
    assert expansion.reason == "query expansion (multi-query): 2 used"
    assert answer.cascade.tier == 1
    assert [a.tier for a in cascade] == [0, 1]
    assert answer.cascade.prompt_tokens == sum(a.prompt_tokens for a in answer.cascade.attempts)
    assert [s.stage for s in answer.stages] == ["input_guard", "expansion", "retrieval", "generation"]
    assert answer.citations[0].doc_id == "eiffel"
    assert [s.stage for s in capped.stages] == ["input_guard", "retrieval", "generation"]
    assert all(a.prompt is None or not a.prompt.startswith("expansion") for a in capped.cascade.attempts)


async def test_another_tenant_finds_nothing_of_acme(service: Service) -> None:
    async with service.harness:
        answer = (await service.ask("When was the Eiffel Tower completed?", tenant="globex")).data

    assert answer.answer == NOT_FOUND
    assert answer.citations == []
    assert answer.retrieved == []
    assert service.model.calls == []


async def test_a_document_shared_with_a_group_reaches_only_askers_in_it_and_never_through_the_cache(
    topic_prefix: str, embedder: HashingEmbedder, store: QdrantServerStore
) -> None:
    from ragbus.orchestrator.testing import index_texts

    memo = "The Eiffel Tower repaint budget for 2027 is 60 million euros."
    await index_texts(store, embedder, "acme", {"budget": [memo]}, groups={"budget": ("finance",)})
    answers = QdrantServerStore(":memory:", collection=f"{topic_prefix}-answers")
    service = Service(
        topic_prefix, embedder, store, cache=VectorAnswerCache(answers, CachePolicy(min_similarity=0.75))
    )
    question = "What is the Eiffel Tower repaint budget for 2027?"
    async with service.harness:
        finance = (await service.ask(question, groups=("finance",), max_tier=0)).data
        again = (await service.ask(question, groups=("finance",), max_tier=0)).data
        outsider = (await service.ask(question, max_tier=0)).data
        other_group = (await service.ask(question, groups=("marketing",), max_tier=0)).data

    assert "budget" in {r.doc_id for r in finance.retrieved}
    assert again.cascade.cache is not None  # the same asker's groups: the cache may answer
    for answer in (outsider, other_group):
        assert answer.cascade.cache is None  # a cached answer never crosses groups
        assert "budget" not in {r.doc_id for r in answer.retrieved}
        assert "budget" not in {c.doc_id for c in answer.citations}
        assert "60 million" not in answer.answer
    # The documents open to the whole tenant stay visible to everyone.
    assert "eiffel" in {r.doc_id for r in outsider.retrieved}
    await answers.aclose()


async def test_a_model_outage_falls_back_without_holding_the_queue_and_recovers(
    topic_prefix: str, embedder: HashingEmbedder, store: QdrantServerStore
) -> None:
    service = Service(
        topic_prefix,
        embedder,
        store,
        chat_retries=1,
        chat_retry_backoff_s=0.01,
        chat_breaker_failures=2,
        # Long enough that the third question reaches the open breaker even on a loaded CI machine
        # (0.5 s was not: the question itself took longer, and found the breaker half open).
        chat_breaker_cooldown_s=3.0,
    )
    service.model.down = True
    async with service.harness:
        first = (await service.ask("Why was the Eiffel Tower built?")).data
        second = (await service.ask("Why was the Eiffel Tower built?")).data
        calls = len(service.model.calls)
        skipped = (await service.ask("Why was the Eiffel Tower built?")).data  # the breaker is open
        service.model.down = False
        await asyncio.sleep(3.1)  # past the cooldown: the next question probes the model, which is back
        back = (await service.ask("Why was the Eiffel Tower built?")).data

    assert calls == 4  # two questions, a call and a retry each; the third question made none
    assert len(service.model.calls) == 5
    for answer in (first, second, skipped):
        assert answer.cascade.tier == 0  # answered from the documents, and says why
        assert "kept the answer of tier 0" in answer.cascade.reason
    assert first.cascade.attempts[1].error == "ChatUnavailable: fake-chat: connection refused"
    assert skipped.cascade.attempts[1].error == "unavailable (circuit open)"
    assert back.cascade.tier == 1
    assert back.citations
    assert service.dead == []


async def test_a_malformed_message_goes_to_the_dead_letter_topic(service: Service) -> None:
    bad = Envelope.new(QueriesAccepted(query_id="q1", question="x"), source="test").model_dump(mode="json")
    del bad["data"]["question"]  # breaks the contract: a query without a question
    async with service.harness as h:
        await h.send_raw(QUERIES_ACCEPTED, json.dumps(bad).encode())
        await h.send_raw(QUERIES_ACCEPTED, b"not json at all")

    assert service.drafted == []
    assert [r.value for r in service.dead][1] == b"not json at all"
    letters = [r.letter() for r in service.dead]
    assert [letter.original_topic for letter in letters] == [h.topics(QUERIES_ACCEPTED)] * 2
    assert letters[0].error_type == "ValidationError"
    assert "question" in letters[0].reason
    assert all(letter.service == "orchestrator" for letter in letters)


async def test_without_deps_the_app_opens_its_clients_from_settings_and_closes_them(
    monkeypatch: pytest.MonkeyPatch, topic_prefix: str, embedder: HashingEmbedder, store: QdrantServerStore
) -> None:
    import ragbus.vectors.factory as factory

    closed: list[str] = []
    monkeypatch.setattr(factory, "open_embedder", lambda _settings: embedder)
    # The semantic cache and conversation memory have stores of their own.
    answers = QdrantServerStore(":memory:", collection="answers")
    turns = QdrantServerStore(":memory:", collection="turns")
    stores = {"__answer-cache": answers, "__conversations": turns}
    monkeypatch.setattr(
        factory,
        "open_vector_store",
        lambda settings: next((s for k, s in stores.items() if settings.collection.endswith(k)), store),
    )
    monkeypatch.setattr(store, "aclose", lambda: _note(closed, "store"))
    monkeypatch.setattr(answers, "aclose", lambda: _note(closed, "answer cache"))
    monkeypatch.setattr(turns, "aclose", lambda: _note(closed, "conversations"))
    # Tier 1 at a port nobody serves: startup only warns, tier 0 still answers.
    settings = OrchestratorSettings(
        telemetry={"enabled": False},
        min_score=0.05,
        accept_min_score=0.3,
        chat_base_url="http://127.0.0.1:9/v1",
    ).with_kafka(topic_prefix=topic_prefix)
    app = create_app(settings)
    t = Topics(topic_prefix)
    drafted: list[Envelope[AnswersDrafted]] = []

    @app.kafka_broker.subscriber(t(ANSWERS_DRAFTED), group_id="collector")
    async def collect(event: Envelope[AnswersDrafted]) -> None:
        drafted.append(event)

    async with TestKafkaBroker(app.kafka_broker) as br:
        await app.start()
        health = await app.health(timeout=1)
        query = QueriesAccepted(
            query_id="q1", question="When was construction of the Eiffel Tower completed?"
        )
        event = Envelope.new(query, source="test", tenant="acme")
        await br.publish(event.to_bytes(), t(QUERIES_ACCEPTED), headers=HEADERS)
        await app.stop()

    assert drafted[0].data.cascade.tier == 0
    assert "completed in 1889" in drafted[0].data.answer
    assert health["vector_store"] == "ok"
    assert health["chat_tier_1"].startswith("error")  # reported, not fatal
    assert health["answer_cache"] == health["conversations"] == "ok"
    assert sorted(closed) == ["answer cache", "conversations", "store"]


async def _note(log: list[str], what: str) -> None:
    log.append(what)


async def test_a_model_answer_its_sources_do_not_support_is_not_accepted(service: Service) -> None:
    # An answer from the model's memory: the sources say nothing of an entrance arch or of 7,300 tonnes.
    service.model.reply = "It was built as the entrance arch of the fair and weighs 7,300 tonnes [1]."
    async with service.harness:
        answer = (await service.ask("Why was the Eiffel Tower built?")).data
    assert answer.cascade.tier == 0, answer.cascade
    [model] = [a for a in answer.cascade.attempts if a.tier == 1]
    assert not model.accepted
    assert "not supported by the sources they cite" in model.reason
    assert "kept the answer of tier 0" in answer.cascade.reason


async def test_the_trace_shows_retrieval_each_tier_and_their_cost(service: Service) -> None:
    with recording("orchestrator") as exporter:
        async with service.harness:
            answer = (await service.ask("Why was the Eiffel Tower built?")).data
    spans = {s.name: s for s in exporter.get_finished_spans()}

    retrieval, generation = spans["retrieval"], spans["generation"]
    assert retrieval.attributes is not None
    assert generation.attributes is not None
    assert retrieval.attributes["ragbus.retrieval.hits"] == len(answer.retrieved) > 0
    assert retrieval.attributes["ragbus.retrieval.top_score"] == pytest.approx(
        max(c.score for c in answer.retrieved), abs=1e-3
    )
    assert generation.attributes["ragbus.cascade.tier"] == 1
    tier0, tier1 = spans["cascade tier 0 (extractive)"], spans["cascade tier 1 (fake-chat)"]
    for tier in (tier0, tier1):  # children of the generation stage, in the message's trace
        assert tier.parent is not None
        assert tier.parent.span_id == generation.context.span_id
        assert tier.context.trace_id == generation.context.trace_id
    assert tier0.attributes is not None
    assert tier1.attributes is not None
    assert tier0.attributes["ragbus.tier.accepted"] is False
    assert "asks 'why'" in str(tier0.attributes["ragbus.tier.reason"])
    assert tier1.attributes["ragbus.tier.accepted"] is True
    assert tier1.attributes["ragbus.tier.prompt_tokens"] == answer.cascade.attempts[1].prompt_tokens > 0
    assert tier1.attributes["ragbus.prompt"] == "rag-answer@v1"


async def test_the_cache_answers_a_question_asked_again_until_a_source_changes(
    topic_prefix: str, embedder: HashingEmbedder, store: QdrantServerStore
) -> None:
    answers = QdrantServerStore(":memory:", collection=f"{topic_prefix}-answers")
    cache = VectorAnswerCache(answers, CachePolicy(min_similarity=0.75))
    service = Service(topic_prefix, embedder, store, cache=cache)
    async with service.harness as h:
        first = (await service.ask("Why was the Eiffel Tower built?")).data
        again = (await service.ask("why was the eiffel tower built")).data
        negated = (await service.ask("Why was the Eiffel Tower not built?")).data
        capped = (await service.ask("Why was the Eiffel Tower built?", max_tier=0)).data
        uncached = (await service.ask("Why was the Eiffel Tower built?", cache=False)).data
        calls = len(service.model.calls)
        # The Eiffel Tower's document is re-indexed: the answers that used it are forgotten.
        changed = DocsIndexed(doc_id="eiffel", version="v2", upserted=2)
        await h.send(changed, tenant="acme", source="test")
        after = (await service.ask("Why was the Eiffel Tower built?")).data
        # Deleted, and asked about before its docs.indexed is consumed: the cache never cites it again.
        await store.delete_document("acme", "eiffel")
        gone = (await service.ask("Why was the Eiffel Tower built?")).data

    assert (first.cascade.tier, first.cascade.cache) == (1, None)
    assert again.cascade.cache is not None
    assert again.cascade.cache.query_id == "q0"
    assert again.cascade.cache.similarity >= 0.75
    assert (again.answer, again.citations) == (first.answer, first.citations)
    assert again.retrieved == first.retrieved  # the output guard checks the answer against them
    assert "semantic cache" in again.cascade.reason
    assert [s.stage for s in again.stages] == ["input_guard", "cache lookup"]
    assert negated.cascade.cache is None
    assert capped.cascade.cache is None  # another scope: a tier cap shapes the answer
    assert uncached.cascade.cache is None
    assert calls == 3  # first, negated, uncached; the repeat asked no model
    assert after.cascade.cache is None
    assert len(service.model.calls) == 5  # `after` and `gone` asked the model afresh
    assert gone.cascade.cache is None
    assert "eiffel" not in {c.doc_id for c in gone.citations}
    await answers.aclose()


async def test_a_follow_up_sees_the_conversation_as_the_user_saw_it(
    topic_prefix: str, embedder: HashingEmbedder, store: QdrantServerStore
) -> None:
    turns = QdrantServerStore(":memory:", collection=f"{topic_prefix}-turns")
    memory = VectorConversationMemory(turns, dim=embedder.dim, max_turns=4)
    service = Service(topic_prefix, embedder, store, memory=memory)
    async with service.harness as h:
        first = await service.ask("Why was the Eiffel Tower built?", conversation="c1")
        # What the guard publishes: the answer as the user saw it; a blocked one is not remembered.
        seen = AnswersCompleted(
            query_id=first.data.query_id, conversation_id="c1", status="answered",
            question=first.data.question, answer="It was built for the World's Fair [1].",
        )  # fmt: skip
        blocked = AnswersCompleted(
            query_id="q-blocked", conversation_id="c1", status="blocked", question="Who paid?", answer="…"
        )
        await h.send(seen, tenant="acme", source="test")
        await h.send(blocked, tenant="acme", source="test")
        follow_up = (await service.ask("Why is it so tall?", conversation="c1")).data
        elsewhere = (await service.ask("Why is it so tall?", conversation="c2")).data

    assert [t.query_id for t in await memory.turns("acme", "c1")] == [first.data.query_id]
    prompt = service.model.calls[-2]  # the follow-up's: the earlier exchange, then the new question
    assert [m.role for m in prompt[-3:]] == ["user", "assistant", "user"]
    assert prompt[-3].content == "Why was the Eiffel Tower built?"
    assert prompt[-2].content == "It was built for the World's Fair."
    assert "Why is it so tall?" in prompt[-1].content
    # Retrieval searched the follow-up with the question before it, which names the tower.
    assert follow_up.retrieved[0].doc_id == "eiffel"
    assert follow_up.retrieved[0].score > elsewhere.retrieved[0].score
    assert len(service.model.calls[-1]) == len(prompt) - 2  # another conversation has no history
    assert elsewhere.question == "Why is it so tall?"
    await turns.aclose()


def deltas_of(service: Service, query_id: str) -> list[AnswersDelta]:
    return [e.data for e in service.harness.events(ANSWERS_DELTA) if e.data.query_id == query_id]


async def test_a_streaming_request_gets_the_text_as_it_is_generated_in_order(service: Service) -> None:
    service.model.reply = (
        "It was built as the entrance to the 1889 World's Fair, by the company of Gustave Eiffel [1]."
    )
    async with service.harness:
        streamed = (await service.ask("Why was the Eiffel Tower built?", stream=True)).data
        lookup = (await service.ask("When was construction of the Eiffel Tower completed?", stream=True)).data
        quiet = (await service.ask("Why was the Eiffel Tower built?", cache=False)).data

    pieces = deltas_of(service, streamed.query_id)
    assert [d.seq for d in pieces] == list(range(len(pieces)))
    assert len(pieces) >= 3  # the model's words, grouped into pieces of ~48 characters, then the end
    assert "".join(d.text for d in pieces) == service.model.reply
    assert all(d.tier == 1 for d in pieces)
    assert [d.final for d in pieces] == [False] * (len(pieces) - 1) + [True]
    assert streamed.cascade.attempts[-1].ttft_ms is not None
    assert streamed.cascade.attempts[-1].ttft_ms <= streamed.cascade.attempts[-1].latency_ms

    # Tier 0 quotes at once: its whole answer is one piece.
    [text, end] = deltas_of(service, lookup.query_id)
    assert (text.tier, text.text, end.final) == (0, lookup.answer, True)
    assert deltas_of(service, quiet.query_id) == []  # not asked to stream


async def test_a_streamed_answer_the_cascade_rejects_is_withdrawn_and_replaced(service: Service) -> None:
    service.model.reply = "It was built as the entrance arch of the fair and weighs 7,300 tonnes [1]."
    async with service.harness:
        answer = (await service.ask("Why was the Eiffel Tower built?", stream=True)).data

    pieces = deltas_of(service, answer.query_id)
    reset = next(i for i, d in enumerate(pieces) if d.reset)
    shown = "".join(d.text for d in pieces[:reset])  # what had gone out when tier 1 was judged
    assert shown
    assert service.model.reply.startswith(shown)
    assert [(d.tier, d.text) for d in pieces[reset + 1 :]] == [(0, answer.answer), (0, "")]
    assert pieces[-1].final
    assert answer.cascade.tier == 0
