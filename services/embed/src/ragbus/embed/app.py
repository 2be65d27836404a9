"""The embed service: `docs.chunked.v1` in, vectors into the store, `docs.indexed.v1` out.

Run it alone (`ragbus serve embed`), or beside the orchestrator in one process (`ragbus up`): both
then open the same embedded store and the same model, shared within the process.
"""

from __future__ import annotations

from functools import partial

from ragbus.common import topics
from ragbus.common.app import RagbusApp
from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsChunked, DocsIndexed
from ragbus.common.keyed import subject_key
from ragbus.common.service import Clients, Service
from ragbus.embed import usecases
from ragbus.embed.settings import EmbedSettings
from ragbus.embed.usecases import EmbedDeps
from ragbus.vectors.sparse import Bm25Encoder

SERVICE = usecases.SERVICE


async def open_deps(settings: EmbedSettings, clients: Clients) -> EmbedDeps:
    # Imported here: the adapters load heavy libraries (torch, qdrant) only when configured.
    from ragbus.vectors.batching import BatchingEmbedder
    from ragbus.vectors.factory import open_embedder, open_vector_store

    model = open_embedder(settings.embedder)
    # A model that says nothing runs one call at a time (a remote endpoint: one request per call).
    parallel = getattr(model, "calls_at_once", 1)
    in_flight = settings.calls_out(parallel)
    embedder = clients.add(
        "embedder",
        BatchingEmbedder(
            model,
            max_batch=settings.batch_size,
            shared_batch=settings.batch_size_shared,
            linger=settings.batch_linger_ms / 1000,
            in_flight=in_flight,
            parallel=parallel,
        ),
    )
    store = clients.add("vector_store", open_vector_store(settings.vectors.for_embedder(settings.embedder)))
    # Load the model now (seconds for MiniLM) rather than on the first document, and make sure the
    # store takes this model's vectors: a store built with another model stops the service here,
    # instead of dead-lettering every document.
    await embedder.ping()
    await store.ensure(embedder.dim)
    bm25 = Bm25Encoder(settings.bm25_avg_length) if settings.bm25 else None
    return EmbedDeps(
        embedder=embedder,
        store=store,
        with_title=settings.with_title,
        bm25=bm25,
        near_duplicates=settings.near_duplicates,
        near_duplicate_threshold=settings.near_duplicate_threshold,
    )


def create_app(settings: EmbedSettings | None = None, deps: EmbedDeps | None = None) -> RagbusApp:
    settings = settings or EmbedSettings()
    service = Service(
        SERVICE, settings, deps=deps, open_deps=partial(open_deps, settings), publishes=[DocsIndexed]
    )

    # Several parts at once (EMBED_WORKERS), in order per document: a document's parts, versions and
    # deletion one after the other, other documents beside them (their chunks share model calls).
    @service.subscriber(topics.DOCS_CHUNKED, concurrent=True, bulk=True, order_by=subject_key)
    async def on_chunked(event: Envelope[DocsChunked]) -> None:
        # One result per part: `seq` keeps the parts' event ids apart; a redelivery republishes the same.
        result = await usecases.index_part(service.deps(), event)
        await service.bus.reply(event, result, seq=event.data.part)

    return service.app
