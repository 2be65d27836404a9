"""The monitor service: every ragbus topic, dead-letter topics included, into PostgreSQL.

Records are consumed in batches and each batch is written in one transaction: events to `events` once
each (a redelivery is a no-op), dead letters to `dead_letters` with their original bytes. A message on
a normal topic that is not a valid ragbus event of that topic is poison: it is dead-lettered on its own
while the rest of its batch is stored, and the monitor reads it back from the `.dlq` topic. While the
database is down the write fails with DependencyUnavailable and the shared middleware retries the
whole batch with backoff, committing nothing meanwhile: the monitor waits, it neither drops nor
dead-letters. For every `feedback.submitted` event it stores, it publishes `feedback.recorded`, saying
whether a question with that query id is on record for the tenant (the client waits for it).
"""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaMessage

from ragbus.common import topics
from ragbus.common.app import RagbusApp
from ragbus.common.broker import raw_decoder
from ragbus.common.events import FeedbackRecorded
from ragbus.common.logging import get_logger
from ragbus.common.service import Clients, Service
from ragbus.monitor import retention, usecases
from ragbus.monitor.adapters.pii import ShieldsPersonalData
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.settings import MonitorSettings
from ragbus.monitor.usecases import MonitorDeps

SERVICE = "monitor"
log = get_logger("ragbus.monitor")


async def open_deps(settings: MonitorSettings, clients: Clients) -> MonitorDeps:
    # Connects and migrates; DependencyUnavailable while the database is down (retried in the background).
    store = clients.add("database", await PostgresEventStore.open(settings))
    personal = ShieldsPersonalData() if settings.redact_pii else None
    return MonitorDeps(store, personal, frozenset(settings.redact_pii), retention=store)


def create_app(settings: MonitorSettings | None = None, deps: MonitorDeps | None = None) -> RagbusApp:
    settings = settings or MonitorSettings()
    service = Service(
        SERVICE, settings, deps=deps, open_deps=partial(open_deps, settings), publishes=[FeedbackRecorded]
    )

    # One subscriber over the explicit topic list rather than a `pattern=`: the topics are a closed set,
    # so the consumer names each of them, `.dlq` ones included, from the start. A pattern matches only
    # topics it has seen in cluster metadata (a topic created later is picked up at the next refresh,
    # minutes, and costs a rebalance), needs Describe rights on every topic where ACLs are on, and the
    # AsyncAPI document would list a regex, not the topics. `raw_decoder`: a `.dlq` body may be anything
    # and must reach the handler, which does its own parsing. The monitor is off the request path, so
    # it polls less often than the services (`MONITOR_FETCH_MAX_WAIT_MS`).
    @service.subscriber(
        *topics.ALL_WITH_DLQ,
        decoder=raw_decoder,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    async def on_batch(msg: KafkaMessage) -> None:
        records = msg.raw_message if isinstance(msg.raw_message, tuple | list) else (msg.raw_message,)
        recorded = await usecases.record_batch(service.deps(), records, service.topics, service.trust)
        for record, exc in recorded.poison:
            await service.dead_letter(record, exc)
        for event in recorded.events:
            await service.bus.publish(event)

    # Retention: the rules are read here, so a policy the monitor cannot read stops it at startup.
    rules = retention.parse(settings.retention)
    if rules and settings.purge_interval_s:
        key = settings.audit_signing_key

        async def purge() -> None:
            purged = await usecases.purge_expired(service.deps(), rules, key)
            if purged:
                log.info("retention purge", service=SERVICE, rows=purged)

        service.every(settings.purge_interval_s, purge, name="retention-purge")

    return service.app
