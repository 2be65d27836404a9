"""The whole stack in this test process, on real parts: the Tansu broker (or KAFKA_BOOTSTRAP), the
machine's PostgreSQL, the embedded Qdrant Edge store, MiniLM, and the local model server.

The services (the gateway too, on a free port) run as `ragbus up` runs them (`ragbus.stack.runner.Host`),
under a topic prefix, database schemas and RAGBUS_HOME of this module's own, so other tests never see
their data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from aiokafka import AIOKafkaProducer

from ragbus.common import telemetry, trust
from ragbus.common.envelope import CE_CONTENT_TYPE, EnvelopeAttributes
from ragbus.common.kafka import client_options, tail
from ragbus.common.settings import KafkaSettings, TelemetrySettings
from ragbus.common.topics import Topics
from ragbus.stack.testing import local_kafka_settings


@dataclass
class Record:
    topic: str
    value: bytes
    headers: dict[str, bytes]
    attrs: EnvelopeAttributes | None


@dataclass
class BusTap:
    """Reads chosen topics from "now" on, so a test can wait for what the stack publishes."""

    kafka: KafkaSettings
    names: list[str]
    records: list[Record] = field(default_factory=list)
    _consumer: Any = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._consumer = await tail(self.kafka, self.names)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for r in self._consumer:
            self.records.append(Record(r.topic, r.value, dict(r.headers), EnvelopeAttributes.peek(r.value)))
            self._changed.set()

    async def wait_for(
        self, match: Callable[[Record], bool], *, count: int = 1, timeout: float = 60
    ) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records if match(r)]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(r.topic, r.attrs.type if r.attrs else None) for r in self.records[-20:]]
                raise AssertionError(f"waited {timeout}s for {count} matching record(s); last seen {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()


@dataclass
class Stack:
    kafka: KafkaSettings
    topics: Topics
    schema: str
    home: Path
    database_url: str
    producer: AIOKafkaProducer
    telemetry: TelemetrySettings
    gateway_url: str = ""  # the hosted gateway's, on a free port

    @property
    def gateway_schema(self) -> str:
        return f"{self.schema}_gateway"

    @property
    def trust_dir(self) -> Path:
        return self.home / "trust"

    def signer(self, principal: str = trust.OPERATOR) -> trust.Signer:
        return trust.Signer.load(principal, self.trust_dir / f"{principal}.key")

    async def publish_raw(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        signer: trust.Signer | Literal["operator"] | None = "operator",
    ) -> None:
        """Publish bytes as any Kafka client would (the topic name given without the prefix), signed as
        the stack's operator (the stack enforces trust, as under `ragbus up`), by `signer`, or not."""
        signer = self.signer() if signer == "operator" else signer
        name = self.topics(topic)
        signed = signer.headers(name, key, value) if signer else {}
        await self.producer.send_and_wait(
            name,
            value,
            key=key,
            headers=[
                ("content-type", CE_CONTENT_TYPE.encode()),
                *headers,
                *((k, v.encode()) for k, v in signed.items()),
            ],
        )

    async def tap(self, *bases: str, dlq: bool = False) -> BusTap:
        names = [self.topics.dlq(b) if dlq else self.topics(b) for b in bases]
        tap = BusTap(self.kafka, names)
        await tap.start()
        return tap

    async def sql(self, query: str, *args: Any) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(self.database_url, server_settings={"search_path": self.schema})
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def wait_rows(self, query: str, *args: Any, expect: int, timeout: float = 30) -> int:
        """Poll until the query's first value reaches `expect` (the monitor is asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            value = (await self.sql(query, *args))[0][0]
            if value >= expect or time.monotonic() > deadline:
                return int(value)
            await asyncio.sleep(0.2)

    def spans(self, trace_id: str) -> list[dict[str, Any]]:
        telemetry.flush()
        return list(telemetry.read_spans(self.telemetry.span_file, trace_id))


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, chat_base_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    pytest.importorskip("asyncpg")
    from ragbus.stack.runner import Host

    unique = "e" + uuid.uuid4().hex[:10]
    home = tmp_path_factory.mktemp("ragbus-home")
    kafka = local_kafka_settings(kafka_bootstrap, f"{unique}.")
    env = {
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
        "KAFKA_HEARTBEAT_INTERVAL_MS": str(kafka.heartbeat_interval_ms),
        "KAFKA_FETCH_MAX_WAIT_MS": str(kafka.fetch_max_wait_ms),
        "KAFKA_METADATA_MAX_AGE_MS": str(kafka.metadata_max_age_ms),
        "RAGBUS_HOME": str(home),
        "MONITOR_DATABASE_URL": database_url,
        "MONITOR_DB_SCHEMA": unique,
        # The gateway on a free port (0: it binds one and says which), its keys in a schema of ours.
        "GATEWAY_PORT": "0",
        "GATEWAY_DB_SCHEMA": f"{unique}_gateway",
        "GATEWAY_DATABASE_URL": database_url,
        "ORCHESTRATOR_CHAT_BASE_URL": chat_base_url,
        "RAGBUS_TELEMETRY_ENABLED": "true",
        # As under `ragbus up`: every record signed and checked (the tests' client signs as operator).
        "RAGBUS_TRUST_MODE": "enforce",
        "RAGBUS_TRUST_DIR": str(home / "trust"),
    }
    trust.init(home / "trust")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        host = Host(["all"])
        await host.start()
        producer = AIOKafkaProducer(**client_options(kafka))
        await producer.start()
        try:
            http = getattr(host.apps.get("gateway"), "http", None)
            yield Stack(
                kafka,
                Topics(kafka.topic_prefix),
                unique,
                home,
                database_url,
                producer,
                TelemetrySettings(),
                http.url if http is not None else "",
            )
        finally:
            await producer.stop()
            await host.stop()
            import asyncpg

            conn = await asyncpg.connect(database_url)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{unique}", "{unique}_gateway" CASCADE')
            await conn.close()
    assert os.environ.get("MONITOR_DB_SCHEMA") != unique
