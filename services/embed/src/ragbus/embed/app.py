"""The embed service: `docs.chunked.v1` in, vectors into the store, `docs.indexed.v1` out.

Run it alone (`python -m ragbus.stack.serve embed`), or beside the orchestrator in one process
(`ragbus up`): both then open the same embedded store and the same model, shared within the process.
"""

from __future__ import annotations

from ragbus.common import topics
from ragbus.common.app import Clients, RagbusApp
from ragbus.common.bus import Bus, consumer_options, make_broker
from ragbus.common.envelope import Envelope
from ragbus.common.errors import DependencyUnavailable
from ragbus.common.events import DocsChunked, DocsIndexed
from ragbus.common.logging import get_logger, setup_logging
from ragbus.common.topics import Topics
from ragbus.embed.indexing import EmbedDeps, index_part
from ragbus.embed.settings import EmbedSettings

SERVICE = "embed"
log = get_logger("ragbus.embed")

__all__ = ["EmbedDeps", "create_app"]


def create_app(settings: EmbedSettings | None = None, deps: EmbedDeps | None = None) -> RagbusApp:
    settings = settings or EmbedSettings()
    setup_logging(settings.log)
    t = Topics(settings.kafka.topic_prefix)
    # The adapters raise VectorStoreUnavailable / EmbedderUnavailable (DependencyUnavailable) for
    # "down, try later", which the shared middleware retries with backoff without being told.
    broker = make_broker(SERVICE, settings)
    bus = Bus(broker, t, source=f"ragbus/{SERVICE}").declare(DocsIndexed)
    clients = Clients[EmbedDeps]("embed", deps)

    @broker.subscriber(t(topics.DOCS_CHUNKED), **consumer_options(SERVICE, settings.kafka))
    async def on_chunked(event: Envelope[DocsChunked]) -> None:
        part = event.data
        result = await index_part(part, event.tenantid, clients.get(), with_title=settings.with_title)
        # One result per part: `seq` keeps the parts' event ids apart, and a redelivery republishes
        # the very same id.
        await bus.reply(event, result, seq=part.part)
        log.info(
            "indexed",
            doc_id=part.doc_id,
            version=part.version,
            part=part.part,
            parts=part.parts,
            deleted=part.deleted,
            upserted=result.upserted,
            removed=result.removed,
            elapsed_ms=result.elapsed_ms,
        )

    app = RagbusApp(broker, service=SERVICE)
    app.health_check("vector_store", lambda: clients.get().store.ping())
    app.health_check("embedder", lambda: clients.get().embedder.ping())

    if deps is not None:
        return app  # the caller owns the clients (tests, or a runner sharing one store and model)

    @app.on_startup
    async def open_clients() -> None:
        # Imported here: the adapters load heavy libraries (torch, qdrant) only when configured.
        from ragbus.vectors.factory import open_embedder, open_vector_store

        opened = EmbedDeps(
            embedder=open_embedder(settings.embedder), store=open_vector_store(settings.vectors)
        )
        try:
            # Load the model now (seconds for MiniLM) rather than on the first document, and make sure
            # the store takes this model's vectors: a store built with another model stops the service
            # here, instead of dead-lettering every document.
            await opened.embedder.ping()
            await opened.store.ensure(opened.embedder.dim)
        except DependencyUnavailable as exc:
            # Not fatal: messages wait (retried with backoff) until the dependency is back.
            log.warning("a dependency is not reachable yet", error=str(exc), error_type=type(exc).__name__)
        except BaseException:
            await opened.store.aclose()
            await opened.embedder.aclose()
            raise
        clients.value = opened

    @app.after_shutdown
    async def close_clients() -> None:
        d = clients.take()
        if d is not None:
            await d.store.aclose()
            await d.embedder.aclose()

    return app
