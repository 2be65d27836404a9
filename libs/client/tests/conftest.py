"""A stand-in for the services on a real broker: it reads the requests a client publishes and answers
as each test tells it, so the client and the CLI are tested against the bus without the whole stack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner, Result

from ragbus.client.cli import main
from ragbus.common import topics
from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope, parse_event
from ragbus.common.events import DeadLetter, EventData
from ragbus.common.kafka import client_options, tail
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics

REQUESTS = (topics.DOCS_SUBMITTED, topics.DOCS_DELETED, topics.QUERIES_SUBMITTED, topics.FEEDBACK_SUBMITTED)


class FakeStack:
    """Reads the request topics from "now" on; a test takes each request and publishes the replies."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.t = Topics(kafka.topic_prefix)
        self.env = {"KAFKA_BOOTSTRAP": kafka.bootstrap, "KAFKA_TOPIC_PREFIX": kafka.topic_prefix}
        self._queues: dict[str, asyncio.Queue[Envelope[Any]]] = {t: asyncio.Queue() for t in REQUESTS}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await ensure_topics(self.kafka, self.t.all_with_dlq)
        self._producer = AIOKafkaProducer(**client_options(self.kafka))
        await self._producer.start()
        self._consumer = await tail(self.kafka, [self.t(name) for name in REQUESTS])
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            self._queues[self.t.strip(record.topic)].put_nowait(parse_event(record.value or b""))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()

    async def request(self, topic: str, timeout: float = 30) -> Envelope[Any]:
        """The next request a client published on `topic` (a base name)."""
        return await asyncio.wait_for(self._queues[topic].get(), timeout)

    async def publish(self, event: Envelope[Any]) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.t(type(event.data).topic),
            event.to_bytes(),
            key=event.key,
            headers=[("content-type", CE_CONTENT_TYPE.encode())],
        )

    async def reply(self, cause: Envelope[Any], data: EventData, *, seq: int | str = "") -> None:
        """Publish what a service would answer `cause` with."""
        await self.publish(cause.follow(data, source="ragbus/fake", seq=seq))

    async def dead_letter(
        self, topic: str, event: Envelope[Any], *, service: str, error_type: str, reason: str, attempts: int
    ) -> None:
        """Publish `event` to `<topic>.dlq` (a base name) as `service` would after failing on it."""
        letter = DeadLetter(
            original_topic=self.t(topic),
            service=service,
            error_type=error_type,
            reason=reason,
            attempts=attempts,
            failed_at=datetime.now(UTC),
        )
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.t.dlq(topic),
            event.to_bytes(),
            key=event.key,
            headers=[(k, v.encode()) for k, v in letter.to_headers().items()],
        )

    async def cli(self, *args: str) -> Result:
        """`ragbus ARGS` against this broker; the CLI runs its own loop, in a thread beside the test's."""
        return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=self.env)


@pytest.fixture
async def fake_stack(kafka_settings: KafkaSettings) -> AsyncIterator[FakeStack]:
    stack = FakeStack(kafka_settings)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()
