"""The monitor service: every ragbus topic, dead-letter topics included, into PostgreSQL.

Records are consumed in batches and each batch is written in one transaction: events to `events` once
each (a redelivery is a no-op), dead letters to `dead_letters` with their original bytes. A message on
a normal topic that is not a valid ragbus event of that topic is poison: it is dead-lettered on its own
while the rest of its batch is stored, and the monitor reads it back from the `.dlq` topic. While the
database is down the write fails with a retryable error and the shared middleware retries the whole
batch with backoff, committing nothing meanwhile: the monitor waits, it neither drops nor dead-letters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from faststream.kafka import KafkaMessage

from ragbus.common.app import Clients, RagbusApp
from ragbus.common.bus import consumer_options, make_broker, raw_decoder
from ragbus.common.errors import PoisonMessage
from ragbus.common.logging import setup_logging
from ragbus.common.middleware import backoff_delay, dead_letter
from ragbus.common.topics import Topics
from ragbus.monitor.adapters.postgres import RETRYABLE_ERRORS, PostgresEventStore
from ragbus.monitor.domain import RawMessage, split_batch
from ragbus.monitor.ports import EventStore
from ragbus.monitor.settings import MonitorSettings

log = structlog.stdlib.get_logger("ragbus.monitor")


@dataclass(slots=True)
class MonitorDeps:
    """What the handler needs; tests (or a runner sharing clients) pass their own to `create_app`."""

    store: EventStore


async def record(
    store: EventStore, messages: Sequence[RawMessage], topics: Topics
) -> list[tuple[int, PoisonMessage]]:
    """Store a batch; return the positions of its poison records and why, for the caller to dead-letter.

    The batch goes in one transaction. Should the database refuse a row (one bad value aborts the
    transaction), every row is written on its own to tell the refused ones apart; redeliveries stay
    no-ops, so rows of the failed attempt are not doubled.
    """
    batch = split_batch(messages, topics)
    poison = list(batch.poison)
    try:
        await store.record_batch([r for _, r in batch.events], [r for _, r in batch.letters])
    except PoisonMessage:
        for i, event in batch.events:
            try:
                await store.record_event(event)
            except PoisonMessage as exc:
                poison.append((i, exc))
        for i, letter in batch.letters:
            try:
                await store.record_dead_letter(letter)
            except PoisonMessage as exc:
                poison.append((i, exc))
    return sorted(poison, key=lambda p: p[0])


async def open_store(settings: MonitorSettings) -> PostgresEventStore:
    """Connect (and migrate), waiting with backoff for as long as the database is unreachable."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await PostgresEventStore.open(settings)
        except RETRYABLE_ERRORS as exc:
            delay = backoff_delay(attempt, settings.retry)
            log.warning(
                "database unavailable, waiting",
                attempt=attempt,
                delay_s=round(delay, 2),
                error=str(exc) or type(exc).__name__,
                error_type=type(exc).__name__,
            )
            await asyncio.sleep(delay)


def create_app(settings: MonitorSettings | None = None, deps: MonitorDeps | None = None) -> RagbusApp:
    settings = settings or MonitorSettings()
    setup_logging(settings.log)
    t = Topics(settings.kafka.topic_prefix)
    broker = make_broker("monitor", settings, retryable=RETRYABLE_ERRORS)
    consumer = consumer_options("monitor", settings.kafka)
    consumer["fetch_max_wait_ms"] = settings.fetch_max_wait_ms
    clients = Clients[MonitorDeps]("monitor", deps)

    def store() -> EventStore:
        return clients.get().store

    # One subscriber over the explicit topic list rather than a `pattern=`: the topics are a closed set
    # (ragbus.common.topics), so the consumer names each of them, `.dlq` ones included, from the start.
    # A pattern subscription matches only topics it has seen in cluster metadata: a topic created later
    # (the first dead letter of a topic) is picked up at the next refresh (`metadata_max_age_ms`,
    # 5 minutes by default) and costs a rebalance then; it also fetches the metadata of every topic in
    # the cluster, which needs Describe rights on all of them where ACLs are on. And the AsyncAPI
    # document then lists the real topics, not a regex.
    # `raw_decoder` replaces the broker's JSON decoder for this subscriber (FastStream 0.7 takes the
    # handler's, else the subscriber's, else the broker's decoder, it does not chain them): a `.dlq`
    # body may be anything and must reach the handler, which does its own parsing.
    @broker.subscriber(
        *t.all_with_dlq,
        **consumer,
        decoder=raw_decoder,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
    )
    async def on_batch(msg: KafkaMessage) -> None:
        raw = msg.raw_message
        records = tuple(raw) if isinstance(raw, tuple | list) else (raw,)  # a list in TestKafkaBroker
        poison = await record(store(), [RawMessage.from_record(r) for r in records], t)
        for i, exc in poison:
            await dead_letter(broker, records[i], exc, service="monitor")

    app = RagbusApp(broker, service="monitor")

    async def ping() -> None:
        await store().ping()

    app.health_check("database", ping)

    if deps is not None:
        return app  # the caller owns the clients (tests, or a runner sharing them)

    @app.on_startup
    async def open_clients() -> None:
        clients.value = MonitorDeps(store=await open_store(settings))

    @app.after_shutdown
    async def close_clients() -> None:
        if (d := clients.take()) is not None:
            await d.store.aclose()

    return app
