"""The ingest service: `docs.submitted` / `docs.deleted` in, `docs.chunked` out."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import Discriminator, Tag

from ragbus.common import topics
from ragbus.common.app import RagbusApp
from ragbus.common.bus import Bus, consumer_options, make_broker
from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsChunked, DocsDeleted, DocsSubmitted
from ragbus.common.logging import setup_logging
from ragbus.common.topics import Topics
from ragbus.ingest.service import IngestDeps, Ingestor, build_deps
from ragbus.ingest.settings import IngestSettings

SERVICE = "ingest"


def _event_type(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


# One subscriber reads both topics, choosing the payload model by the CloudEvents `type`: a document's
# submissions and deletions go through one consumer, one message at a time, and an unknown type is
# dead-lettered with a one-line reason rather than a validation error per union member.
DocsEvent = Annotated[
    Annotated[Envelope[DocsSubmitted], Tag(DocsSubmitted.event_type())]
    | Annotated[Envelope[DocsDeleted], Tag(DocsDeleted.event_type())],
    Discriminator(_event_type),
]


def create_app(settings: IngestSettings | None = None, deps: IngestDeps | None = None) -> RagbusApp:
    settings = settings or IngestSettings()
    setup_logging(settings.log)
    t = Topics(settings.kafka.topic_prefix)
    broker = make_broker(SERVICE, settings)
    bus = Bus(broker, t, source=f"ragbus/{SERVICE}").declare(DocsChunked)
    ingestor = Ingestor(settings, source=bus.source, deps=deps)

    consumer = consumer_options(SERVICE, settings.kafka)

    @broker.subscriber(t(topics.DOCS_SUBMITTED), t(topics.DOCS_DELETED), **consumer)
    async def on_docs(event: DocsEvent) -> None:
        if isinstance(event.data, DocsDeleted):
            await bus.reply(event, ingestor.deleted(event))
            return
        # Each part gets its own deterministic id: a redelivered submission republishes the same events.
        for part in await ingestor.submitted(event):
            await bus.reply(event, part, seq=part.part)

    app = RagbusApp(broker, service=SERVICE)

    if deps is None:

        @app.on_startup
        async def load_dependencies() -> None:
            ingestor.deps = await asyncio.to_thread(build_deps, settings)

    return app
