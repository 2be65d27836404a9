"""The monitor service: every ragbus topic, dead-letter topics included, into PostgreSQL.

Events go to `events` once each (a redelivery is a no-op), dead letters to `dead_letters` with their
original bytes. A message on a normal topic that is not a valid ragbus event of that topic is poison:
the shared middleware dead-letters it, and the monitor reads it back from the `.dlq` topic. While the
database is down the handler's write fails with a retryable error and the middleware retries it with
backoff, committing nothing meanwhile: the monitor waits, it neither drops nor dead-letters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from faststream.kafka import KafkaMessage

from ragbus.common.app import Clients, RagbusApp
from ragbus.common.bus import consumer_options, make_broker, raw_decoder
from ragbus.common.logging import setup_logging
from ragbus.common.middleware import backoff_delay
from ragbus.common.topics import Topics
from ragbus.monitor.adapters.postgres import RETRYABLE_ERRORS, PostgresEventStore
from ragbus.monitor.domain import RawMessage, dead_letter_record, event_record
from ragbus.monitor.ports import EventStore
from ragbus.monitor.settings import MonitorSettings

log = structlog.stdlib.get_logger("ragbus.monitor")


@dataclass(slots=True)
class MonitorDeps:
    """What the handler needs; tests (or a runner sharing clients) pass their own to `create_app`."""

    store: EventStore


def raw_message(msg: KafkaMessage) -> RawMessage:
    record = msg.raw_message
    assert not isinstance(record, tuple), "a per-message subscriber gets one record at a time"
    return RawMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        value=bytes(msg.body),
        key=record.key,
        headers=dict(msg.headers),
        timestamp_ms=record.timestamp,
    )


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
    @broker.subscriber(*t.all_with_dlq, **consumer, decoder=raw_decoder)
    async def on_message(msg: KafkaMessage) -> None:
        raw = raw_message(msg)
        if raw.is_dead_letter:
            stored = await store().record_dead_letter(dead_letter_record(raw))
        else:
            stored = await store().record_event(event_record(raw, t))
        if not stored:
            log.debug("duplicate ignored")

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
