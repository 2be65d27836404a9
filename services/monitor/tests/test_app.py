"""The monitor service through FastStream's in-memory TestKafkaBroker, with real envelopes, against the
in-memory store and (marked `integration`) the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from faststream import TestApp
from faststream.kafka import TestKafkaBroker
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from ragbus.common.app import RagbusApp
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.errors import DependencyUnavailable, PoisonMessage
from ragbus.common.events import (
    EVENT_TYPES,
    AnswersDelta,
    ChunkData,
    DeadLetter,
    DocsChunked,
    DocsDeleted,
    DocsIndexed,
    DocsSubmitted,
    FeedbackRecorded,
    FeedbackSubmitted,
    QueriesEscalated,
    QueriesRejected,
)
from ragbus.common.ids import record_id
from ragbus.common.testing import consume, consumer_record
from ragbus.common.testing import publish_event as publish
from ragbus.common.topics import Topics
from ragbus.monitor.adapters.memory import InMemoryEventStore
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.app import create_app
from ragbus.monitor.ports import DeadLetterRecord, EventRecord, EventStore
from ragbus.monitor.settings import MonitorSettings
from ragbus.monitor.usecases import MonitorDeps

HEADERS = {"content-type": CE_CONTENT_TYPE}


def one_of_each(request_of: Callable[..., Any]) -> list[Envelope[Any]]:
    """An event of every type on the bus, each as its service would publish it."""
    req = request_of()
    doc = Envelope.new(
        DocsSubmitted(doc_id="doc-1", text="Vitamin D trials."), source="ragbus/cli", tenant="acme"
    )
    chunk = ChunkData(
        chunk_id=record_id("acme", "doc-1", "0", "h"),
        index=0,
        text="Vitamin D trials.",
        content_hash="h",
        token_count=4,
        char_start=0,
        char_end=17,
    )
    chunked = doc.follow(
        DocsChunked(doc_id="doc-1", version="v1", chunks=[chunk], total_chunks=1), source="ragbus/ingest"
    )
    indexed = chunked.follow(
        DocsIndexed(doc_id="doc-1", version="v1", chunk_ids=[chunk.chunk_id], upserted=1),
        source="ragbus/embed",
    )
    deleted = Envelope.new(DocsDeleted(doc_id="doc-2"), source="ragbus/cli", tenant="acme")
    rejected = Envelope.new(
        QueriesRejected(query_id="q-2", reason="prompt injection"), source="ragbus/guard", tenant="acme"
    )
    feedback = req.completed.follow(FeedbackSubmitted(query_id="q-1", rating="up"), source="ragbus/client")
    recorded = feedback.follow(
        FeedbackRecorded(query_id="q-1", rating="up", known=True), source="ragbus/monitor"
    )
    # A streamed piece of the answer: what the user was shown is on record too, withdrawn or not.
    delta = req.accepted.follow(
        AnswersDelta(query_id="q-1", seq=0, tier=1, text="It was built for"),
        source="ragbus/orchestrator",
        seq=0,
    )
    escalated = req.accepted.follow(QueriesEscalated(**dict(req.accepted.data)), source="ragbus/orchestrator")
    return [doc, chunked, indexed, deleted, *req.all, escalated, delta, rejected, feedback, recorded]


async def test_every_event_type_is_stored_once_even_when_delivered_twice(
    settings: MonitorSettings, store: EventStore, request_of: Callable[..., Any]
) -> None:
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)
    events = one_of_each(request_of)
    assert {type(e.data) for e in events} == set(EVENT_TYPES)

    async with TestKafkaBroker(app.kafka_broker) as br:
        for event in events + events:
            await publish(br, t, event)

    for event in events:
        stored = [
            r for r in await store.events(event.tenantid, event.correlationid) if r.event_id == event.id
        ]
        assert len(stored) == 1, event.type
        assert stored[0].topic == t(type(event.data).topic)
        assert stored[0].type == event.type


async def test_a_non_event_on_a_topic_is_dead_lettered_and_recorded_as_such(
    settings: MonitorSettings, store: EventStore
) -> None:
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)

    async with TestKafkaBroker(app.kafka_broker) as br:
        await br.publish(b'{"question": "not an envelope"}', t("queries.submitted.v1"), key=b"acme:q-1")

    # The shared middleware sent it to the .dlq topic; the monitor read it back from there.
    [letter] = await store.dead_letters(t.dlq("queries.submitted.v1"))
    assert letter.body == b'{"question": "not an envelope"}'
    assert (letter.service, letter.original_topic) == ("monitor", t("queries.submitted.v1"))
    assert "not a valid ragbus event" in letter.reason
    assert letter.kafka_key == "acme:q-1"


async def test_a_dead_letter_with_non_json_bytes_is_stored_raw_with_its_reason(
    settings: MonitorSettings, store: EventStore
) -> None:
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)
    letter = DeadLetter(
        original_topic=t("docs.submitted.v1"),
        partition=0,
        offset=12,
        service="ingest",
        error_type="UnicodeDecodeError",
        reason="'utf-8' codec can't decode byte 0xff",
        attempts=1,
        failed_at=datetime(2026, 5, 1, 9, 30, tzinfo=UTC),
    )
    body = b"\xff\xd8\xff\xe0 a JPEG someone sent as a document"

    async with TestKafkaBroker(app.kafka_broker) as br:
        for _ in range(2):  # redelivered after a crash before the commit
            await br.publish(body, t.dlq("docs.submitted.v1"), headers=letter.to_headers())

    [stored] = await store.dead_letters(t.dlq("docs.submitted.v1"))
    assert stored.body == body
    assert (stored.reason, stored.error_type, stored.service) == (
        letter.reason,
        "UnicodeDecodeError",
        "ingest",
    )
    assert (stored.original_topic, stored.original_offset, stored.failed_at) == (
        t("docs.submitted.v1"),
        12,
        letter.failed_at,
    )


async def test_request_summary_of_a_request_that_went_through_the_bus(
    settings: MonitorSettings, store: EventStore, request_of: Callable[..., Any]
) -> None:
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)
    req = request_of(latency_ms=2150)

    async with TestKafkaBroker(app.kafka_broker) as br:
        for event in req.all:
            await publish(br, t, event)

    s = await store.request_summary("acme", "q-1")
    assert s is not None
    assert s.question == "Does vitamin D lower the risk of fractures in older adults?"
    assert (s.status, s.answer) == ("answered", req.completed.data.answer)
    assert (s.tier, s.prompt_tokens, s.completion_tokens, s.citations) == (1, 412, 57, 1)
    assert s.latency_ms == pytest.approx(2150.0)


async def test_the_trace_of_the_producer_is_recorded(
    settings: MonitorSettings, store: EventStore, request_of: Callable[..., Any]
) -> None:
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)
    req = request_of()
    tracer = TracerProvider().get_tracer("test-client")

    async with TestKafkaBroker(app.kafka_broker) as br:
        with tracer.start_as_current_span("client request") as span:
            await publish(br, t, req.submitted)
    trace_id = format(span.get_span_context().trace_id, "032x")

    [stored] = await store.events("acme", "q-1")
    assert stored.trace_id == trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked out of the block


class FlakyStore:
    """A store whose writes fail `failures` times with a dropped connection, then work."""

    def __init__(self, inner: EventStore, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts = 0

    async def record_batch(
        self, events: Sequence[EventRecord], letters: Sequence[DeadLetterRecord]
    ) -> list[int]:
        self.attempts += 1
        if self.attempts <= self.failures:
            # What the PostgreSQL adapter raises for a dropped connection.
            raise DependencyUnavailable(
                "PostgreSQL unreachable: connection was closed in the middle of operation"
            )
        return await self.inner.record_batch(events, letters)

    async def record_dead_letter(self, record: DeadLetterRecord) -> bool:
        return await self.inner.record_dead_letter(record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_dropped_connection_is_retried_not_dropped_or_dead_lettered(
    settings: MonitorSettings, memory_store: InMemoryEventStore, request_of: Callable[..., Any]
) -> None:
    flaky = FlakyStore(memory_store, failures=3)
    app = create_app(settings, MonitorDeps(store=flaky))
    t = Topics(settings.kafka.topic_prefix)
    req = request_of()

    async with TestKafkaBroker(app.kafka_broker) as br:
        await publish(br, t, req.submitted)

    assert flaky.attempts == 4
    assert [r.event_id for r in await memory_store.events("acme", "q-1")] == [req.submitted.id]
    assert await memory_store.dead_letters(t.dlq("queries.submitted.v1")) == []


@pytest.mark.integration
async def test_the_database_going_away_mid_stream_makes_the_monitor_wait_then_catch_up(
    settings: MonitorSettings,
    pg_schema: str,
    pg_proxy: Any,
    database_url: str,
    request_of: Callable[..., Any],
) -> None:
    through_proxy = settings.model_copy(
        update={"db_schema": pg_schema, "database_url": SecretStr(pg_proxy.url(database_url))}
    )
    store = await PostgresEventStore.open(through_proxy)
    app = create_app(through_proxy, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)
    req = request_of()
    direct = await asyncpg.connect(database_url)
    try:
        async with TestKafkaBroker(app.kafka_broker) as br:
            await publish(br, t, req.submitted)
            await pg_proxy.stop()  # the database restarts: open connections cut, new ones refused

            delivery = asyncio.create_task(publish(br, t, req.accepted))
            await asyncio.sleep(0.6)
            assert not delivery.done()  # the handler is still retrying: nothing committed, nothing lost

            await pg_proxy.start()
            await asyncio.wait_for(delivery, 10)

        rows = await direct.fetch(f'SELECT event_id FROM "{pg_schema}".events ORDER BY event_time')
        assert [r["event_id"] for r in rows] == [req.submitted.id, req.accepted.id]
        assert await direct.fetchval(f'SELECT count(*) FROM "{pg_schema}".dead_letters') == 0
    finally:
        await direct.close()
        await store.aclose()


@pytest.mark.integration
async def test_a_database_down_at_startup_is_reported_and_waited_for(
    settings: MonitorSettings,
    pg_schema: str,
    pg_proxy: Any,
    database_url: str,
    request_of: Callable[..., Any],
) -> None:
    await pg_proxy.stop()
    own = settings.model_copy(
        update={"db_schema": pg_schema, "database_url": SecretStr(pg_proxy.url(database_url))}
    )
    app = create_app(own)
    t = Topics(settings.kafka.topic_prefix)
    req = request_of()
    async with TestKafkaBroker(app.kafka_broker) as br, TestApp(app):
        # The service is up and says what it waits for; a message waits with it, nothing is lost.
        down = await app.health()
        delivery = asyncio.create_task(publish(br, t, req.submitted))
        await asyncio.sleep(0.4)
        assert not delivery.done()

        await pg_proxy.start()
        await asyncio.wait_for(delivery, 10)
        up = await app.health()

    assert down["kafka"] == "ok"
    assert down["dependencies"].startswith("error")
    assert "PostgreSQL unreachable" in down["dependencies"]
    assert up["database"] == "ok"
    direct = await asyncpg.connect(database_url)
    try:
        stored = await direct.fetchval(f'SELECT count(*) FROM "{pg_schema}".events')
        assert stored == 1
    finally:
        await direct.close()


@pytest.mark.integration
async def test_the_app_opens_migrates_and_closes_its_own_database_pool(
    settings: MonitorSettings, pg_schema: str, request_of: Callable[..., Any], database_url: str
) -> None:
    own = settings.model_copy(update={"db_schema": pg_schema})
    app = create_app(own)
    assert isinstance(app, RagbusApp)
    t = Topics(settings.kafka.topic_prefix)
    req = request_of()

    async with TestKafkaBroker(app.kafka_broker) as br, TestApp(app):
        health = await app.health()
        await publish(br, t, req.submitted)
    assert health["database"] == "ok"

    direct = await asyncpg.connect(database_url)
    try:
        stored = await direct.fetchval(f"SELECT data->>'question' FROM \"{pg_schema}\".events")
        assert stored == req.submitted.data.question
    finally:
        await direct.close()
    assert (await app.health())["database"].startswith("error")  # closed with the app


class CountingStore:
    """Counts batch writes; refuses (as PostgreSQL would a bad value) the events in `refuse`."""

    def __init__(self, inner: EventStore, refuse: frozenset[Any] = frozenset()) -> None:
        self.inner, self.refuse, self.batches = inner, refuse, 0

    async def record_batch(
        self, events: Sequence[EventRecord], letters: Sequence[DeadLetterRecord]
    ) -> list[int]:
        self.batches += 1
        if any(e.event_id in self.refuse for e in events):
            raise PoisonMessage("PostgreSQL cannot store this record: value out of range")
        return await self.inner.record_batch(events, letters)

    async def record_event(self, record: EventRecord) -> bool:
        if record.event_id in self.refuse:
            raise PoisonMessage("PostgreSQL cannot store this record: value out of range")
        return await self.inner.record_event(record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_batch_is_one_write_and_its_poison_record_alone_is_dead_lettered(
    settings: MonitorSettings, store: EventStore, request_of: Callable[..., Any]
) -> None:
    counting = CountingStore(store)
    app = create_app(settings, MonitorDeps(store=counting))
    t = Topics(settings.kafka.topic_prefix)
    req = request_of()
    topic = t("queries.submitted.v1")
    junk = b'{"question": "not an envelope"}'
    other = request_of(query_id="q-9").submitted

    async with TestKafkaBroker(app.kafka_broker):
        await consume(
            app.kafka_broker,
            *[
                consumer_record(topic, req.submitted, offset=1),
                consumer_record(topic, junk, offset=2),
                consumer_record(topic, other, offset=3),
            ],
        )

    assert [r.event_id for r in await store.events("acme", "q-1")] == [req.submitted.id]
    assert [r.event_id for r in await store.events("acme", "q-9")] == [other.id]
    [letter] = await store.dead_letters(t.dlq("queries.submitted.v1"))
    assert (letter.body, letter.original_offset, letter.service) == (junk, 2, "monitor")
    assert "not a valid ragbus event" in letter.reason
    assert counting.batches == 2  # the batch in one write, then the dead letter read back


async def test_a_question_under_a_reused_event_id_is_dead_lettered_and_both_answers_stored(
    settings: MonitorSettings, store: EventStore, request_of: Callable[..., Any]
) -> None:
    """Issue 13, case 3: an event id reused for a different question left 0 audit rows for it (the
    question dropped as a "redelivery", its answer too, under the first answer's ids)."""
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)
    first = request_of(query_id="q-1")
    asked = first.submitted.data.model_copy(update={"question": "Who wrote this?", "query_id": "q-2"})
    again = first.submitted.model_copy(update={"data": asked, "correlationid": "q-2"})  # the same id
    second_answer = again.follow(first.completed.data.model_copy(update={"query_id": "q-2"}), source="x")
    topic = t("queries.submitted.v1")

    async with TestKafkaBroker(app.kafka_broker):
        await consume(
            app.kafka_broker,
            consumer_record(topic, first.submitted, offset=1),
            consumer_record(topic, first.submitted, offset=1),  # a redelivery: no dead letter
            consumer_record(topic, again, offset=2),
            consumer_record(t("answers.completed.v1"), first.completed, offset=1),
            consumer_record(t("answers.completed.v1"), second_answer, offset=2),
        )

    assert second_answer.id != first.completed.id  # follow-up ids depend on what the cause said
    assert [r.event_id for r in await store.events("acme", "q-2")] == [second_answer.id]
    [letter] = await store.dead_letters(t.dlq("queries.submitted.v1"))
    assert (letter.event_id, letter.correlation_id, letter.original_offset) == (first.submitted.id, "q-2", 2)
    assert "already on record for different content" in letter.reason
    assert b"Who wrote this?" in letter.body  # the question is on record, as it was sent


async def test_a_message_nested_100000_deep_is_dead_lettered_and_its_batch_stored(
    settings: MonitorSettings, store: EventStore, request_of: Callable[..., Any]
) -> None:
    # Issue 13: one such message used to fail the whole batch with RecursionError (20 of 20 valid
    # events beside it lost), its dead letter too.
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)
    topic = t("queries.submitted.v1")
    deep = b"[" * 100_000 + b"]" * 100_000
    valid = [request_of(query_id=f"q-{i}").submitted for i in range(20)]
    records = [consumer_record(topic, e, offset=i) for i, e in enumerate(valid[:10])]
    records += [consumer_record(topic, deep, offset=10)]
    records += [consumer_record(topic, e, offset=11 + i) for i, e in enumerate(valid[10:])]

    async with TestKafkaBroker(app.kafka_broker):
        await consume(app.kafka_broker, *records)

    stored = [r.event_id for i in range(20) for r in await store.events("acme", f"q-{i}")]
    assert stored == [e.id for e in valid]
    [letter] = await store.dead_letters(t.dlq("queries.submitted.v1"))
    assert letter.body == deep
    assert "nested 100000 levels deep" in letter.reason


async def test_a_row_the_database_refuses_is_found_and_dead_lettered_the_rest_stored(
    settings: MonitorSettings, memory_store: InMemoryEventStore, request_of: Callable[..., Any]
) -> None:
    req = request_of()
    refusing = CountingStore(memory_store, refuse=frozenset({req.accepted.id}))
    app = create_app(settings, MonitorDeps(store=refusing))
    t = Topics(settings.kafka.topic_prefix)
    records = [
        consumer_record(t(type(e.data).topic), e, offset=offset) for offset, e in enumerate(req.all, start=10)
    ]

    async with TestKafkaBroker(app.kafka_broker):
        await consume(app.kafka_broker, *records)

    stored = [r.event_id for r in await memory_store.events("acme", "q-1")]
    assert stored == [e.id for e in req.all if e.id != req.accepted.id]
    [letter] = await memory_store.dead_letters(t.dlq("queries.accepted.v1"))
    assert letter.event_id == req.accepted.id
    assert letter.reason == "PostgreSQL cannot store this record: value out of range"
