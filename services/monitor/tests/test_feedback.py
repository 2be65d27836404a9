"""Feedback: the monitor stores every `feedback.submitted` event and answers each with
`feedback.recorded`, saying whether the rated question is on record for the tenant (the client waits
for it, and `ragbus feedback` refuses an unknown id). One look-up per batch, none without feedback."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from faststream.kafka import TestKafkaBroker

from ragbus.common.envelope import Envelope
from ragbus.common.events import FeedbackRecorded, FeedbackSubmitted
from ragbus.common.testing import consume, consumer_record, record
from ragbus.common.topics import FEEDBACK_RECORDED, Topics
from ragbus.monitor.app import create_app
from ragbus.monitor.ports import EventStore
from ragbus.monitor.settings import MonitorSettings
from ragbus.monitor.usecases import MonitorDeps


class LookupCountingStore:
    """Counts `known_queries` calls and the keys each asked about."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.lookups: list[set[tuple[str, str]]] = []

    async def known_queries(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        self.lookups.append(set(keys))
        return await self.inner.known_queries(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def rating(query_id: str, tenant: str = "acme", value: str = "up") -> Envelope[FeedbackSubmitted]:
    data = FeedbackSubmitted.model_validate({"query_id": query_id, "rating": value})
    return Envelope.new(data, source="ragbus/cli", tenant=tenant, correlation_id=query_id)


async def test_feedback_is_answered_with_whether_its_question_is_on_record(
    settings: MonitorSettings, store: EventStore, request_of: Callable[..., Any]
) -> None:
    counting = LookupCountingStore(store)
    app = create_app(settings, MonitorDeps(store=counting))
    t = Topics(settings.kafka.topic_prefix)
    replies = record(app.kafka_broker, t(FEEDBACK_RECORDED))
    earlier = request_of(query_id="q-old").submitted  # stored by an earlier batch
    same_batch = request_of(query_id="q-new").submitted
    ratings = [
        rating("q-old"),
        rating("q-new", value="down"),  # its question comes in the same batch
        rating("q-old", tenant="globex"),  # the id is another tenant's
        rating("q-404"),
    ]

    async with TestKafkaBroker(app.kafka_broker):
        await consume(app.kafka_broker, consumer_record(t("queries.submitted.v1"), earlier))
        await consume(
            app.kafka_broker,
            consumer_record(t("queries.submitted.v1"), same_batch, offset=1),
            *(consumer_record(t("feedback.submitted.v1"), r, offset=i) for i, r in enumerate(ratings)),
        )
        lookups_of_the_feedback_batch = list(counting.lookups)

    events = [r.event() for r in replies]
    assert [(e.tenantid, e.data.query_id, e.data.rating, e.data.known) for e in events] == [
        ("acme", "q-old", "up", True),
        ("acme", "q-new", "down", True),
        ("globex", "q-old", "up", False),
        ("acme", "q-404", "up", False),
    ]
    assert all(isinstance(e.data, FeedbackRecorded) for e in events)
    # Each reply follows its feedback: same correlation (the query id), caused by it.
    assert [(e.correlationid, e.causationid) for e in events] == [(r.correlationid, r.id) for r in ratings]
    # The batch without feedback asked nothing; the one with four ratings asked once.
    assert lookups_of_the_feedback_batch == [
        {("acme", "q-old"), ("acme", "q-new"), ("globex", "q-old"), ("acme", "q-404")}
    ]
    # The replies are events like any other: the monitor reads them back and records them.
    stored = [r.type for r in await store.events("acme", "q-404")]
    assert stored == [FeedbackSubmitted.event_type(), FeedbackRecorded.event_type()]


async def test_a_redelivered_feedback_is_answered_with_the_same_event(
    settings: MonitorSettings, store: EventStore
) -> None:
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics(settings.kafka.topic_prefix)
    replies = record(app.kafka_broker, t(FEEDBACK_RECORDED))
    feedback = rating("q-404")

    async with TestKafkaBroker(app.kafka_broker):
        for _ in range(2):
            await consume(app.kafka_broker, consumer_record(t("feedback.submitted.v1"), feedback))

    first, again = (r.event() for r in replies)
    assert first.id == again.id  # a duplicate the monitor (and the client) ignore
    assert len([r for r in await store.events("acme", "q-404") if r.event_id == first.id]) == 1
