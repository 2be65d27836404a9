"""Helpers for component tests on FastStream's in-memory `TestKafkaBroker`.

received = record(app.kafka_broker, t(topics.DOCS_CHUNKED))
dead = record(app.kafka_broker, t.dlq(topics.DOCS_SUBMITTED))
async with TestKafkaBroker(app.kafka_broker):
    await publish(app.kafka_broker, t, DocsSubmitted(doc_id="a", text="..."))
assert received[0].event().data.doc_id == "a"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber, DefaultSubscriber

from ragbus.common.bus import raw_decoder
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope, parse_event
from ragbus.common.events import DeadLetter, EventData
from ragbus.common.topics import Topics

PRODUCER = "urn:ragbus:test"


@dataclass(frozen=True, slots=True)
class Received:
    """One message as a consumer saw it: raw bytes, key and headers."""

    value: bytes
    key: bytes | None
    headers: dict[str, Any]

    def event(self) -> Envelope[Any]:
        return parse_event(self.value)

    def letter(self) -> DeadLetter:
        return DeadLetter.from_headers(self.headers)


def record(broker: KafkaBroker, *topic_names: str) -> list[Received]:
    """Subscribe a collector to the topics (before the test broker starts); the list fills as they arrive.

    Bodies are kept raw: a dead letter may not be JSON, which the services' JSON decoder would refuse.
    """
    into: list[Received] = []

    async def collect(msg: KafkaMessage) -> None:
        into.append(Received(msg.body, getattr(msg.raw_message, "key", None), dict(msg.headers)))

    broker.subscriber(*topic_names, decoder=raw_decoder)(collect)
    return into


async def publish_raw(broker: KafkaBroker, topic: str, value: bytes, *, key: bytes | None = None) -> None:
    """Publish bytes as any Kafka client would (with the CloudEvents content type)."""
    await broker.publish(value, topic, key=key, headers={"content-type": CE_CONTENT_TYPE})


async def publish(
    broker: KafkaBroker, topics: Topics, data: EventData, *, tenant: str = "acme", source: str = PRODUCER
) -> Envelope[Any]:
    """Publish a new event carrying `data` to its topic; returns the envelope sent."""
    event = Envelope.new(data, source=source, tenant=tenant)
    await publish_raw(broker, topics(type(data).topic), event.to_bytes(), key=event.key)
    return event


def consumer_record(
    topic: str,
    value: bytes | Envelope[Any],
    *,
    offset: int = 0,
    key: bytes | None = b"acme:doc",
    headers: Sequence[tuple[str, Any]] = (("content-type", CE_CONTENT_TYPE.encode()),),
) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka hands it to a subscriber, with any header bytes (TestKafkaBroker's are text)."""
    body = value if isinstance(value, bytes) else value.to_bytes()
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=1_780_000_000_000,
        timestamp_type=0,
        key=key,
        value=body,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(body),
        headers=list(headers),
    )


async def consume(broker: KafkaBroker, *records: ConsumerRecord[bytes, bytes]) -> None:
    """Hand records to the subscriber of their topic as its consumer would: one by one, or as one batch."""
    topic = records[0].topic
    for sub in broker.subscribers:
        if isinstance(sub, DefaultSubscriber | BatchSubscriber) and topic in sub.topic_names:
            if isinstance(sub, BatchSubscriber):
                await sub.consume(tuple(records))
            else:
                for r in records:
                    await sub.consume(r)
            return
    raise LookupError(f"no subscriber of {topic}")
