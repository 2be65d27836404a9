"""Helpers for component tests on FastStream's in-memory `TestKafkaBroker`.

received = record(app.kafka_broker, t(topics.DOCS_CHUNKED))
dead = record(app.kafka_broker, t.dlq(topics.DOCS_SUBMITTED))
async with TestKafkaBroker(app.kafka_broker):
    await publish(app.kafka_broker, t, DocsSubmitted(doc_id="a", text="..."))
assert received[0].event().data.doc_id == "a"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker, KafkaMessage

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
