"""Exactly once under failure: the real monitor (`create_app`) on a real Kafka-protocol broker, writing
to a PostgreSQL server the test owns (`own_postgres`), which it stops and starts again.

- A restart of the monitor, and a redelivery of every record (the group's offsets moved back to the
  start, as after a crash between the write and the commit; a producer's retry), store nothing twice.
- PostgreSQL stopped mid-stream: the monitor keeps retrying the batch it holds and commits nothing past
  what is stored; once the server is back, every event is stored exactly once, nothing lost. Also when
  the outage outlasts the consumer's max.poll.interval, and when the monitor is stopped during it and
  another one started after.

Counts are exact, and checked against the broker's own positions: the consumer group's committed
offsets and the partitions' end offsets.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import FeedbackSubmitted
from ragbus.common.kafka import client_options
from ragbus.common.settings import KafkaSettings, RetrySettings, TelemetrySettings
from ragbus.common.testing import TempPostgres, read_topic_until
from ragbus.common.topics import QUERIES_SUBMITTED, Topics
from ragbus.monitor.app import create_app
from ragbus.monitor.domain import feedback_recorded
from ragbus.monitor.settings import MonitorSettings

pytestmark = pytest.mark.integration

CE = [("content-type", CE_CONTENT_TYPE.encode())]
SCHEMA = "ragbus"
Positions = dict[TopicPartition, int]


def monitor_settings(kafka: KafkaSettings, pg: TempPostgres) -> MonitorSettings:
    return MonitorSettings(
        kafka=kafka,
        database_url=pg.url,
        db_schema=SCHEMA,
        connect_timeout_s=2,
        command_timeout_s=5,
        telemetry=TelemetrySettings(enabled=False),
        retry=RetrySettings(initial_backoff_s=0.05, max_backoff_s=0.5),
    )


def requests(request_of: Callable[..., Any], first: int, count: int) -> list[Envelope[Any]]:
    """`count` whole requests (question to answer) and a rating of each, over three tenants (so over
    several partitions)."""
    out: list[Envelope[Any]] = []
    for i in range(first, first + count):
        req = request_of(tenant=f"t{i % 3}", query_id=f"q-{i}")
        rating = FeedbackSubmitted(query_id=f"q-{i}", rating="up" if i % 2 else "down")
        feedback = Envelope.new(rating, source="ragbus/client", tenant=f"t{i % 3}", correlation_id=f"q-{i}")
        out += [*req.all, feedback]
    return out


def expected_ids(events: list[Envelope[Any]]) -> set[UUID]:
    """The event ids the record must hold: those sent, and the monitor's reply to each rating."""
    replies = {feedback_recorded(e, known=True).id for e in events if isinstance(e.data, FeedbackSubmitted)}
    return {e.id for e in events} | replies


async def send(producer: AIOKafkaProducer, t: Topics, events: list[Envelope[Any]]) -> None:
    for event in events:
        await producer.send_and_wait(t(type(event.data).topic), event.to_bytes(), key=event.key, headers=CE)


async def positions(kafka: KafkaSettings, t: Topics) -> tuple[Positions, Positions]:
    """The monitor group's committed offsets and the end offsets, for every partition that holds records
    of the topics it reads (a partition the group never committed counts as 0)."""
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=kafka.group_id("monitor"))
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(n, p) for n in t.all_with_dlq for p in consumer.partitions_for_topic(n) or ()]
        ends = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end > 0}
        committed = {tp: await consumer.committed(tp) or 0 for tp in ends}
        return committed, ends
    finally:
        await consumer.stop()


async def caught_up(kafka: KafkaSettings, t: Topics, timeout: float = 60) -> Positions:
    """Wait until the group has committed every partition to its end, and return the offsets. The
    monitor publishes (dead letters, feedback replies) only while it handles a batch, before it
    commits, so committed == end means it is idle with nothing left to read."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        committed, ends = await positions(kafka, t)
        if committed == ends or asyncio.get_running_loop().time() > deadline:
            assert committed == ends, "the monitor did not catch up"
            return committed
        await asyncio.sleep(0.3)


async def reset_group(kafka: KafkaSettings, t: Topics) -> None:
    """Move the monitor group's offsets back to the start of every partition (no member running): the
    next monitor reads everything again, as after a crash between its writes and its commits."""
    consumer = AIOKafkaConsumer(
        **client_options(kafka), group_id=kafka.group_id("monitor"), enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(n, p) for n in t.all_with_dlq for p in consumer.partitions_for_topic(n) or ()]
        consumer.assign(tps)
        await consumer.commit(dict.fromkeys(tps, 0))
    finally:
        await consumer.stop()


async def on_record(pg: TempPostgres) -> dict[str, Any]:
    conn = await asyncpg.connect(pg.url)
    try:
        rows = await conn.fetch(f"SELECT event_id FROM {SCHEMA}.events")
        letters = await conn.fetch(f"SELECT id, original_topic FROM {SCHEMA}.dead_letters")
    finally:
        await conn.close()
    return {
        "events": len(rows),
        "ids": {r["event_id"] for r in rows},
        "letters": len(letters),
        "letter_ids": {r["id"] for r in letters},
    }


@asynccontextmanager
async def running(settings: MonitorSettings) -> AsyncIterator[None]:
    app = create_app(settings)
    await app.start()
    try:
        yield
    finally:
        await app.stop()


@asynccontextmanager
async def producing(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**client_options(kafka))
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


class Retries(logging.Handler):
    """Counts the middleware's "retrying" lines: the monitor holds a batch it cannot store yet."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict) and record.msg.get("event") == "retrying":
            self.count += 1


async def test_a_restart_and_a_redelivery_of_everything_store_nothing_twice(
    kafka_settings: KafkaSettings, own_postgres: TempPostgres, request_of: Callable[..., Any]
) -> None:
    t = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, t.all_with_dlq)
    settings = monitor_settings(kafka_settings, own_postgres)
    first, second = requests(request_of, 0, 6), requests(request_of, 6, 6)
    poison = b"{not json"

    async with producing(kafka_settings) as producer:
        async with running(settings):
            await send(producer, t, first)
            await producer.send_and_wait(t(QUERIES_SUBMITTED), poison, key=b"t0:q-x")
            await caught_up(kafka_settings, t)
        before = await on_record(own_postgres)

        # A restart: the new monitor resumes from the committed offsets. A producer's retry sends a
        # question and a rating again (the same events at new offsets).
        async with running(settings):
            await send(producer, t, [*second, first[0], first[4]])
            await caught_up(kafka_settings, t)
        after_restart = await on_record(own_postgres)

    # Every record read again: the events, the poison message (dead-lettered a second time, at a new
    # offset of the .dlq topic), the dead letters and the monitor's own replies.
    await reset_group(kafka_settings, t)
    async with running(settings):
        await caught_up(kafka_settings, t)
    after_redelivery = await on_record(own_postgres)

    # 6 requests x (4 events + 1 rating) + a reply to each rating; one dead letter, the poison message.
    assert (before["events"], before["letters"]) == (36, 1)
    assert before["ids"] == expected_ids(first)
    assert (after_restart["events"], after_restart["letters"]) == (72, 1)
    assert after_restart["ids"] == expected_ids(first + second)
    assert after_redelivery == after_restart


# The outage outlasts the consumer's max.poll.interval or not: past it, the consumer leaves its group
# while it retries, the commit after the write fails, and the batch comes back after the rejoin.
@pytest.mark.parametrize("max_poll_interval_ms", [None, 3000], ids=["short-outage", "past-max-poll-interval"])
async def test_postgres_stopped_mid_stream_pauses_the_monitor_and_nothing_is_lost(
    kafka_settings: KafkaSettings,
    own_postgres: TempPostgres,
    request_of: Callable[..., Any],
    max_poll_interval_ms: int | None,
) -> None:
    t = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, t.all_with_dlq)
    settings = monitor_settings(kafka_settings, own_postgres)
    if max_poll_interval_ms is not None:
        kafka = kafka_settings.model_copy(update={"max_poll_interval_ms": max_poll_interval_ms})
        settings = settings.model_copy(update={"kafka": kafka})
    first, during = requests(request_of, 0, 5), requests(request_of, 5, 10)
    retries = Retries()
    middleware_log = logging.getLogger("ragbus.middleware")
    middleware_log.addHandler(retries)

    try:
        async with producing(kafka_settings) as producer, running(settings):
            await send(producer, t, first)
            stored = await caught_up(kafka_settings, t)

            await asyncio.to_thread(own_postgres.stop, "immediate")  # as a crash would
            await send(producer, t, during)
            # The monitor fetched the new records and retries its batch, again and again.
            for _ in range(300):
                if retries.count >= 3:
                    break
                await asyncio.sleep(0.1)
            assert retries.count >= 3
            if max_poll_interval_ms is not None:
                await asyncio.sleep(2 * max_poll_interval_ms / 1000)
            committed_while_down, ends_while_down = await positions(kafka_settings, t)

            await asyncio.to_thread(own_postgres.start)
            final = await caught_up(kafka_settings, t)
    finally:
        middleware_log.removeHandler(retries)
    record = await on_record(own_postgres)

    # While the database was down, nothing was committed past what was stored before it went.
    assert {tp: n for tp, n in committed_while_down.items() if n} == stored
    assert sum(ends_while_down.values()) == sum(stored.values()) + len(during)
    # Once it was back: every event once (5 + 10 requests x 5 events, and a reply to each rating) ...
    assert record["events"] == 90
    assert record["ids"] == expected_ids(first + during)
    assert record["letters"] == 0
    # ... and every record of the log is on record. (Past max.poll.interval the batch was handled twice,
    # so the log holds the monitor's replies to it twice, each copy under the id of the first.)
    on_the_log = []
    for name in t.all:
        count = sum(end for tp, end in final.items() if tp.topic == name)
        on_the_log += [json.loads(r.value)["id"] for r in await read_topic_until(kafka_settings, name, count)]
    assert len(on_the_log) == sum(final.values())
    assert {UUID(i) for i in on_the_log} == record["ids"]


async def test_a_monitor_stopped_during_an_outage_commits_nothing_and_the_next_one_stores_it_all(
    kafka_settings: KafkaSettings, own_postgres: TempPostgres, request_of: Callable[..., Any]
) -> None:
    t = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, t.all_with_dlq)
    settings = monitor_settings(kafka_settings, own_postgres)
    first, during = requests(request_of, 0, 2), requests(request_of, 2, 4)
    retries = Retries()
    middleware_log = logging.getLogger("ragbus.middleware")
    middleware_log.addHandler(retries)
    try:
        async with producing(kafka_settings) as producer:
            app = create_app(settings)
            await app.start()
            try:
                await send(producer, t, first)
                stored = await caught_up(kafka_settings, t)
                await asyncio.to_thread(own_postgres.stop, "immediate")
                await send(producer, t, during)
                for _ in range(300):
                    if retries.count >= 3:
                        break
                    await asyncio.sleep(0.1)
                assert retries.count >= 3
            finally:
                # Stopped while its handler waits for the database: FastStream lets the handler run for
                # its graceful timeout (15 s), then cancels it, and a cancelled handler is not committed.
                await asyncio.wait_for(app.stop(), 60)
            committed_after_stop, _ = await positions(kafka_settings, t)

            await asyncio.to_thread(own_postgres.start)
            async with running(settings):
                await caught_up(kafka_settings, t)
    finally:
        middleware_log.removeHandler(retries)
    record = await on_record(own_postgres)

    assert {tp: n for tp, n in committed_after_stop.items() if n} == stored
    assert record["events"] == 36
    assert record["ids"] == expected_ids(first + during)
