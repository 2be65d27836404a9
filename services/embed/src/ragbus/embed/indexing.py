"""Index one `docs.chunked` part through the ports: embed, write, drop stale chunks."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ragbus.common.errors import PoisonMessage
from ragbus.common.events import DocsChunked, DocsIndexed
from ragbus.embed import domain
from ragbus.vectors.errors import DimensionMismatch, InputRejected
from ragbus.vectors.ports import Embedder, VectorStore


@dataclass(frozen=True, slots=True)
class EmbedDeps:
    """The clients the embed service needs."""

    embedder: Embedder
    store: VectorStore


async def index_part(
    chunked: DocsChunked, tenant: str, deps: EmbedDeps, *, with_title: bool = True
) -> DocsIndexed:
    """Make one part searchable, idempotently: a redelivered part rewrites the same points.

    Order matters: the new chunks are written before the old version's go, so a document never
    disappears from search while it is being replaced. Chunks of the current version from other parts
    are kept (`delete_stale` removes other versions only), so parts may arrive one by one.
    """
    started = time.perf_counter()
    domain.check_part(chunked)
    if chunked.deleted:
        removed = await deps.store.delete_document(tenant, chunked.doc_id)
        return domain.deleted(chunked, removed=removed, elapsed_ms=_ms_since(started))
    upserted = 0
    if chunked.chunks:
        try:
            vectors = await deps.embedder.embed_documents(
                domain.embedding_inputs(chunked, with_title=with_title)
            )
            points = domain.chunk_points(chunked, tenant, vectors)
            await deps.store.ensure(len(points[0].vector))
            upserted = await deps.store.upsert(points)
        except InputRejected as exc:
            raise PoisonMessage(f"the embedding model refuses a chunk of this part: {exc}") from exc
        except DimensionMismatch as exc:
            # Every document would fail the same way until the store or the model changes; the dead
            # letters keep them whole for a replay once it is fixed.
            raise PoisonMessage(str(exc)) from exc
    removed = await deps.store.delete_stale(tenant, chunked.doc_id, chunked.version)
    return domain.indexed(
        chunked, upserted=upserted, removed=removed, model=deps.embedder.name, elapsed_ms=_ms_since(started)
    )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
