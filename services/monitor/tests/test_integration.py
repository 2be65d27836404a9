"""The monitor as it runs: a real Kafka-protocol broker (KAFKA_BOOTSTRAP, a Kafka container, or Tansu),
the real PostgreSQL, the app opening and migrating its own pool, an outside producer publishing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import CE_CONTENT_TYPE
from ragbus.common.kafka import client_options
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import QUERIES_SUBMITTED, Topics
from ragbus.monitor.app import create_app
from ragbus.monitor.settings import MonitorSettings

pytestmark = pytest.mark.integration

CE = [("content-type", CE_CONTENT_TYPE.encode())]


async def wait_for_rows(conn: asyncpg.Connection, sql: str, expected: int, timeout: float = 30) -> int:
    """Poll a count until it reaches `expected` (the monitor consumes asynchronously) or time runs out."""
    for _ in range(int(timeout / 0.1)):
        if (count := int(await conn.fetchval(sql))) >= expected:
            return count
        await asyncio.sleep(0.1)
    return int(await conn.fetchval(sql))


async def test_the_monitor_records_a_request_and_dead_letters_from_a_real_broker(
    kafka_settings: KafkaSettings,
    pg_schema: str,
    database_url: str,
    request_of: Callable[..., Any],
    ragbus_home: Any,
) -> None:
    t = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, t.all_with_dlq)  # as the runner does before any service starts
    settings = MonitorSettings(
        kafka=kafka_settings, database_url=database_url, db_schema=pg_schema, telemetry={"enabled": False}
    )
    app = create_app(settings)
    req = request_of()
    producer = AIOKafkaProducer(**client_options(kafka_settings))
    conn = await asyncpg.connect(database_url)
    await producer.start()
    await app.start()
    try:
        for event in [*req.all, req.submitted]:  # the question twice: a producer's retry
            await producer.send_and_wait(
                t(type(event.data).topic), event.to_bytes(), key=event.key, headers=CE
            )
        await producer.send_and_wait(t(QUERIES_SUBMITTED), b"{not json", key=b"acme:q-9")

        q = f'"{pg_schema}"'
        assert await wait_for_rows(conn, f"SELECT count(*) FROM {q}.events", 4) == 4
        # The garbage went to queries.submitted.v1.dlq via the middleware, and came back from there.
        assert await wait_for_rows(conn, f"SELECT count(*) FROM {q}.dead_letters", 1) == 1
        summary = await conn.fetchrow(f"SELECT * FROM {q}.request_summary WHERE correlation_id = 'q-1'")
        letter = await conn.fetchrow(f"SELECT * FROM {q}.dead_letters")
        kafka_keys = await conn.fetch(f"SELECT DISTINCT kafka_key FROM {q}.events")
    finally:
        await app.stop()
        await producer.stop()
        await conn.close()

    assert (summary["status"], summary["tier"], summary["latency_ms"]) == ("answered", 1, 1234.0)
    assert (letter["body"], letter["service"], letter["kafka_key"]) == (b"{not json", "monitor", "acme:q-9")
    assert letter["original_topic"] == t(QUERIES_SUBMITTED)
    assert [r["kafka_key"] for r in kafka_keys] == ["acme:c-9"]  # keyed by conversation
    assert (await app.health())["database"].startswith("error")  # the pool closed with the app
