"""The embed use case: one `docs.chunked` part in, its `docs.indexed` result out, through the ports.

No Kafka here: `app.py` hands each event in and publishes what comes back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from ragbus.common import near_duplicates
from ragbus.common.envelope import Envelope
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import DocsChunked, DocsIndexed
from ragbus.common.logging import get_logger
from ragbus.common.telemetry import tracer
from ragbus.embed import domain
from ragbus.vectors.batching import lane
from ragbus.vectors.errors import DimensionMismatch, InputRejected
from ragbus.vectors.ports import Embedder, VectorStore
from ragbus.vectors.sparse import Bm25Encoder

SERVICE = "embed"
log = get_logger("ragbus.embed")


@dataclass(frozen=True, slots=True)
class EmbedDeps:
    """What indexing needs: the embedding model, the vector store, and how to embed."""

    embedder: Embedder
    store: VectorStore
    # Embed "title\\ntext" (see EmbedSettings.with_title); the stored text stays the chunk's own.
    with_title: bool = True
    # BM25 terms of the same text, for hybrid search's lexical leg (None: dense vectors only).
    bm25: Bm25Encoder | None = field(default_factory=Bm25Encoder)
    # Near-duplicate documents (EmbedSettings.near_duplicates): keep and say so, skip, or do not look.
    near_duplicates: Literal["keep", "skip", "off"] = "keep"
    near_duplicate_threshold: float = 0.8


async def index_part(deps: EmbedDeps, event: Envelope[DocsChunked]) -> DocsIndexed:
    """Index one part, idempotently: a redelivered part rewrites the same points.

    A reader sees one version of a document, whole: a part's points are written pending (not
    searchable); the part that completes the version (the store then holds `total_chunks` points of
    it) publishes them all in one operation, and only then are older versions removed. Between the two,
    searches return the version published last (VectorStore.publish). Parts may arrive one by one, and
    a redelivered part finds the version complete and publishes it again, unless it holds the version
    whole and every point of it is stored as it is and searchable already (an unchanged re-send).

    A change of what a document says but not of what is embedded (its metadata, groups, or title when
    the title is not embedded; the same text cut the same way, so the same version) embeds nothing: the
    stored vectors still hold, and the points' payloads are rewritten (`updated` in the result). What a
    reader sees meanwhile: the document stays live throughout (never hidden), and its title, metadata
    and groups change on every point of the version in one store operation while the first part
    carrying the change is handled; so a reader sees the document with the old values or with the new,
    never a mix of chunks, and once that part's `docs.indexed` is out no point of it is readable by a
    group it no longer names. Each chunk's own payload (its digest and flags) is then rewritten whole,
    chunk by chunk.
    """
    chunked, tenant = event.data, event.tenantid
    started = time.perf_counter()
    domain.check_part(chunked)
    if chunked.deleted:
        removed = await deps.store.delete_document(tenant, chunked.doc_id)
        result = domain.deleted(chunked, removed=removed, elapsed_ms=_ms_since(started))
    elif (duplicate := await _near_duplicate(deps, chunked, tenant)) and deps.near_duplicates == "skip":
        # Left out of the index, and whatever an earlier version of it left there goes too.
        removed = await deps.store.delete_document(tenant, chunked.doc_id)
        result = domain.skipped(chunked, duplicate, removed=removed, elapsed_ms=_ms_since(started))
    else:
        written = await _write(deps, chunked, tenant) if chunked.chunks else _Written()
        removed = 0
        if await _complete(deps, chunked, tenant):
            # A version this part holds whole, stored as it is and searchable already (an unchanged
            # re-send), is not published again: that would restamp every point for nothing. Its older
            # versions still go, in case a crash left them after an earlier publish.
            if not (written.live and domain.carries_whole_version(chunked)):
                await deps.store.publish(tenant, chunked.doc_id, chunked.version)
            removed = await deps.store.delete_stale(tenant, chunked.doc_id, chunked.version)
        result = domain.indexed(
            chunked,
            upserted=written.embedded,
            removed=removed,
            unchanged=written.unchanged,
            updated=written.updated,
            replaced=written.replaced,
            model=deps.embedder.name,
            elapsed_ms=_ms_since(started),
            duplicate=duplicate,
        )
    log.info(
        "indexed",
        doc_id=chunked.doc_id,
        version=chunked.version,
        part=chunked.part,
        parts=chunked.parts,
        deleted=chunked.deleted,
        upserted=result.upserted,
        updated=result.updated,
        unchanged=result.unchanged,
        removed=result.removed,
        duplicate_of=result.duplicate_of,
        skipped=result.skipped,
        elapsed_ms=result.elapsed_ms,
    )
    return result


async def _complete(deps: EmbedDeps, part: DocsChunked, tenant: str) -> bool:
    """The store holds every chunk of the part's version (just written, when the part carries them
    all: `domain.carries_whole_version`)."""
    if domain.carries_whole_version(part):
        return True
    return await deps.store.count(tenant, part.doc_id, part.version) >= part.total_chunks


async def _near_duplicate(deps: EmbedDeps, part: DocsChunked, tenant: str) -> domain.Duplicate | None:
    """The tenant's document this part's document nearly repeats, if any (and if looking is on)."""
    if deps.near_duplicates == "off" or not part.minhash:
        return None
    candidates = await deps.store.similar_documents(tenant, near_duplicates.bands(part.minhash), part.doc_id)
    return domain.nearest_duplicate(part.minhash, candidates, deps.near_duplicate_threshold)


@dataclass(frozen=True, slots=True)
class _Written:
    embedded: int = 0  # chunks embedded and written
    updated: int = 0  # chunks whose payload alone was rewritten
    unchanged: int = 0  # chunks stored as they are
    replaced: int = 0  # of the embedded, those whose id was stored already
    live: bool = False  # every chunk stored as it is, and searchable (Writes.live)


async def _write(deps: EmbedDeps, part: DocsChunked, tenant: str) -> _Written:
    """Store the part's chunks that are not stored as they are: a new payload for those whose stored
    vectors still hold (the same text embedded by the same model: a change of metadata, groups or
    version only), embedding for the others."""
    model, with_title, sparse = deps.embedder.name, deps.with_title, deps.bm25 is not None
    digests = domain.point_digests(part, tenant, model=model, with_title=with_title, sparse=sparse)
    contents = domain.content_digests(part, model=model, with_title=with_title, sparse=sparse)
    stored = await deps.store.stored_digests(tenant, [c.chunk_id for c in part.chunks])
    plan = domain.plan_writes(part, digests, contents, stored)
    if plan.outdated:
        # The document's own fields first, on every point of the version in one operation: a change of
        # readers holds for all its chunks at once, not part by part.
        await deps.store.set_document_fields(tenant, part.doc_id, part.version, domain.document_fields(part))
    updated = 0
    if plan.rewrite.chunks:
        points = domain.payload_points(plan.rewrite, tenant, plan.rewrite_digests)
        with _tracer().start_as_current_span(
            "rewrite payloads", attributes={"ragbus.embed.points": len(points)}
        ):
            updated = await deps.store.rewrite_payloads(points)
    embedded = await _embed(deps, plan.embed, tenant, plan.embed_digests) if plan.embed.chunks else 0
    return _Written(embedded, updated, plan.unchanged, plan.replaced, plan.live)


async def _embed(deps: EmbedDeps, todo: DocsChunked, tenant: str, digests: list[tuple[str, str]]) -> int:
    """Embed the chunks and write their points (pending); how many were written."""
    try:
        inputs = domain.embedding_inputs(todo, with_title=deps.with_title)
        attributes: dict[str, AttributeValue] = {
            "ragbus.embed.model": deps.embedder.name,
            "ragbus.embed.chunks": len(inputs),
        }
        # The tenant's lane: its chunks take turns with other tenants' in shared model calls.
        with _tracer().start_as_current_span("embed batch", attributes=attributes), lane(tenant):
            vectors = await deps.embedder.embed_documents(inputs)
            sparse = [deps.bm25.document(text) for text in inputs] if deps.bm25 is not None else None
        # Pending: searchable once the whole version is in and published (index_part).
        points = domain.chunk_points(todo, tenant, vectors, sparse, digests, pending=True)
        with _tracer().start_as_current_span("upsert", attributes={"ragbus.embed.points": len(points)}):
            await deps.store.ensure(len(points[0].vector))
            return await deps.store.upsert(points)
    except InputRejected as exc:
        raise PoisonMessage(f"the embedding model refuses a chunk of this part: {exc}") from exc
    except DimensionMismatch as exc:
        # Every document would fail the same way until the store or the model changes; the dead
        # letters keep them whole for a replay once it is fixed.
        raise PoisonMessage(str(exc)) from exc


def _tracer() -> trace.Tracer:
    return tracer(SERVICE)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
