"""What a handler publishes with: the broker, the topic names, and the service's own `source`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faststream.kafka import KafkaBroker

from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import EventData
from ragbus.common.topics import Topics


@dataclass(frozen=True, slots=True)
class Bus:
    """Publishes events to their topics; `declare` lists them in the service's AsyncAPI document."""

    broker: KafkaBroker
    topics: Topics
    source: str
    _publishers: dict[str, Any] = field(default_factory=dict)

    def declare(self, *event_types: type[EventData]) -> Bus:
        """Declare what this service publishes, so its AsyncAPI document shows it (call in create_app)."""
        for cls in event_types:
            topic = self.topics(cls.topic)
            if topic not in self._publishers:
                self._publishers[topic] = self.broker.publisher(
                    topic,
                    title=f"{topic}:publish",
                    schema=Envelope[cls],  # type: ignore[valid-type]
                    description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None,
                )
        return self

    async def publish(self, event: Envelope[Any]) -> None:
        # An explicit publish inside the handler (rather than a returned value) makes the next hop's
        # span a child of this handler's span, so a trace reads as a chain, not a flat fan.
        topic = self.topics(type(event.data).topic)
        publisher = self._publishers.get(topic)
        options: dict[str, Any] = {"key": event.key, "headers": {"content-type": CE_CONTENT_TYPE}}
        if publisher is not None:
            await publisher.publish(event.to_bytes(), **options)
        else:
            await self.broker.publish(event.to_bytes(), topic, **options)

    async def reply(self, cause: Envelope[Any], data: EventData, *, seq: int | str = "") -> Envelope[Any]:
        """Publish the event `cause` led to (same tenant and correlation, deterministic id)."""
        event = cause.follow(data, source=self.source, seq=seq)
        await self.publish(event)
        return event
