"""Pure rules of the embed service: a `docs.chunked` part in, points and the `docs.indexed` result out.

No Kafka, no I/O: `indexing.py` runs these against the Embedder and VectorStore ports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ragbus.common import near_duplicates
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import ChunkData, DocsChunked, DocsIndexed, MetadataValue
from ragbus.vectors.ports import ChunkPoint, DocumentFields, StoredDigests
from ragbus.vectors.sparse import SparseVector


def check_part(chunked: DocsChunked) -> None:
    """Refuse a part that breaks the `docs.chunked` contract (it can never be indexed correctly)."""
    if chunked.part >= chunked.parts:
        raise PoisonMessage(
            f"part {chunked.part} of a document in {chunked.parts} parts (parts count from 0)"
        )
    ids = [c.chunk_id for c in chunked.chunks]
    if len(set(ids)) != len(ids):
        raise PoisonMessage("the part lists the same chunk id twice")


def embedding_inputs(chunked: DocsChunked, *, with_title: bool) -> list[str]:
    """The text to embed for each chunk, in order: the chunk, after the document title and the headings
    it is under (heading-aware chunking) if asked. A chunk from the middle of a section seldom names
    its subject; its headings do."""
    title = (chunked.title or "").strip()
    if not with_title:
        return [_embedded(c) for c in chunked.chunks]
    out = []
    for c in chunked.chunks:
        # The innermost heading starts the chunk's own text when the chunk opens its section.
        headings = [h for h in c.section if h != title]
        context = " > ".join([title, *headings] if title else headings)
        text = _embedded(c)
        out.append(f"{context}\n{text}" if context else text)
    return out


def _embedded(chunk: ChunkData) -> str:
    """What of a chunk is embedded: its focus (a sentence window's sentence), else all of it."""
    return chunk.text[chunk.focus.start : chunk.focus.end] if chunk.focus else chunk.text


def point_metadata(chunked: DocsChunked) -> dict[str, MetadataValue]:
    """What a search hit carries about its document besides text and title: the document's own
    metadata, plus where it came from (`uri`, `content_type`) unless the metadata already says."""
    metadata = dict(chunked.metadata)
    if chunked.uri is not None:
        metadata.setdefault("uri", chunked.uri)
    if chunked.content_type is not None:
        metadata.setdefault("content_type", chunked.content_type)
    return metadata


def point_digests(
    chunked: DocsChunked, tenant: str, *, model: str, with_title: bool, sparse: bool
) -> list[str]:
    """Per chunk, a digest of everything its point is made from: the text embedded and the model that
    embeds it, the chunk as ingest sent it (text, span, flags), the document's title, version,
    metadata and groups, and whether BM25 terms go with it. A point stored with the same digest is the
    point this part would write, so nothing need be written (an unchanged re-ingest costs a lookup); a
    change to any of these writes the point anew: embedded again only if its `content_digests` moved
    too (`plan_writes`)."""
    shared: dict[str, Any] = {
        "tenant": tenant,
        "doc_id": chunked.doc_id,
        "version": chunked.version,
        "title": chunked.title,
        "metadata": point_metadata(chunked),
        "model": model,
        "sparse": sparse,
    }
    if chunked.groups:  # only when set: points of documents open to all keep the digests they had
        shared["groups"] = sorted(chunked.groups)
    digests = []
    for chunk, text in zip(chunked.chunks, embedding_inputs(chunked, with_title=with_title), strict=True):
        made_of = shared | {"input": text, "chunk": _chunk_fields(chunk)}
        if chunk.index == 0 and chunked.minhash:  # its point carries the signature (chunk_points)
            made_of["minhash"] = chunked.minhash
        encoded = json.dumps(made_of, sort_keys=True, separators=(",", ":"), default=str).encode()
        digests.append(hashlib.sha256(encoded).hexdigest())
    return digests


def content_digests(chunked: DocsChunked, *, model: str, with_title: bool, sparse: bool) -> list[str]:
    """Per chunk, a digest of what its vectors alone are made from: the text embedded (with the title and
    headings, when they are embedded), the model, and whether BM25 terms of the same text go with it.
    Everything else a point carries (metadata, groups, version, flags, the title when it is not
    embedded) is payload: a change there keeps the vectors and rewrites the payload."""
    return [
        hashlib.sha256(
            json.dumps({"input": text, "model": model, "sparse": sparse}, sort_keys=True).encode()
        ).hexdigest()
        for text in embedding_inputs(chunked, with_title=with_title)
    ]


# ChunkData fields added after digests were first stored: left out of the digest while they are empty,
# so the points of chunks without them keep their digests (and are not embedded again on an upgrade).
_LATER_FIELDS = ("section", "page", "last_page", "focus")


def _chunk_fields(chunk: ChunkData) -> dict[str, Any]:
    fields = chunk.model_dump(mode="json")
    for name in _LATER_FIELDS:
        if not fields.get(name):
            fields.pop(name, None)
    return fields


@dataclass(frozen=True, slots=True)
class Writes:
    """What a part needs written, each with its chunks' (point, content) digests: the chunks to embed
    (no stored point holds their vectors), the chunks whose stored vectors hold but whose payload is
    out of date (a metadata-only change: rewritten, not embedded), and how many are stored as they are."""

    embed: DocsChunked
    embed_digests: list[tuple[str, str]]
    rewrite: DocsChunked
    rewrite_digests: list[tuple[str, str]]
    unchanged: int
    # Chunks stored with another point digest (rewritten or embedded again): the document's fields
    # are out of date on the points of this version the store holds.
    outdated: int = 0
    # Every chunk stored as it is and none of them pending: the part's points are searchable already.
    live: bool = False

    @property
    def replaced(self) -> int:
        """Chunks to embed whose id the store holds already (their vectors no longer hold)."""
        return self.outdated - len(self.rewrite.chunks)


def carries_whole_version(chunked: DocsChunked) -> bool:
    """The part holds every chunk of its version (a document in one part, or an event from before parts
    were counted): once its chunks are written the version is complete, with no need to count the
    store's points (most documents come in one part, and that count is a store call each)."""
    return not chunked.total_chunks or (chunked.parts == 1 and len(chunked.chunks) == chunked.total_chunks)


def plan_writes(
    chunked: DocsChunked,
    digests: Sequence[str],
    contents: Sequence[str],
    stored: Mapping[UUID, StoredDigests],
) -> Writes:
    """Sort a part's chunks by what their stored points need: nothing (same point digest), a new payload
    (same content digest: the same text embedded by the same model), or embedding (missing, or made from
    another text or model; a point stored without a content digest, from before they existed, too)."""
    embed: list[tuple[ChunkData, tuple[str, str]]] = []
    rewrite: list[tuple[ChunkData, tuple[str, str]]] = []
    unchanged = 0
    pending = False
    for chunk, digest, content in zip(chunked.chunks, digests, contents, strict=True):
        have = stored.get(chunk.chunk_id)
        if have is not None and have.point == digest:
            unchanged += 1
            pending = pending or have.pending
        elif have is not None and have.content is not None and have.content == content:
            rewrite.append((chunk, (digest, content)))
        else:
            embed.append((chunk, (digest, content)))

    def cut(picked: list[tuple[ChunkData, tuple[str, str]]]) -> DocsChunked:
        if len(picked) == len(chunked.chunks):
            return chunked
        return chunked.model_copy(update={"chunks": [c for c, _ in picked]})

    outdated = sum(c.chunk_id in stored for c, _ in embed) + len(rewrite)
    live = bool(chunked.chunks) and unchanged == len(chunked.chunks) and not pending
    return Writes(
        cut(embed), [d for _, d in embed], cut(rewrite), [d for _, d in rewrite], unchanged, outdated, live
    )


def document_fields(chunked: DocsChunked) -> DocumentFields:
    """What every point of the part's document says about it (set on all of them at once)."""
    return DocumentFields(chunked.title, point_metadata(chunked), tuple(sorted(chunked.groups)))


def chunk_points(
    chunked: DocsChunked,
    tenant: str,
    vectors: Sequence[Sequence[float]] | None,
    sparse: Sequence[SparseVector] | None = None,
    digests: Sequence[tuple[str, str]] | None = None,
    *,
    pending: bool = False,
) -> list[ChunkPoint]:
    """One point per chunk; the point id is the chunk id, so the same chunk always lands on one point.
    The point keeps what ingest's scan found (flags, score, spans), for retrieval to hand on, its BM25
    terms (`sparse`, in chunk order) for the lexical leg, and its (point, content) digests.

    `vectors` None: points without vectors, for a payload rewrite (`payload_points`)."""
    if vectors is None:
        vectors = [()] * len(chunked.chunks)
    if len(vectors) != len(chunked.chunks):
        raise ValueError(f"{len(vectors)} vectors for {len(chunked.chunks)} chunks")
    if sparse is not None and len(sparse) != len(chunked.chunks):
        raise ValueError(f"{len(sparse)} sparse vectors for {len(chunked.chunks)} chunks")
    metadata = point_metadata(chunked)
    return [
        ChunkPoint(
            id=chunk.chunk_id,
            vector=vector,
            tenant=tenant,
            doc_id=chunked.doc_id,
            version=chunked.version,
            index=chunk.index,
            text=chunk.text,
            title=chunked.title,
            metadata=metadata,
            flags=tuple(chunk.flags),
            injection_score=chunk.injection_score,
            injection_spans=tuple((s.start, s.end) for s in chunk.injection_spans),
            sparse=sparse[i] if sparse is not None else None,
            digest=digests[i][0] if digests is not None else None,
            content_digest=digests[i][1] if digests is not None else None,
            groups=tuple(chunked.groups),
            pending=pending,
            # The document's signature rides on its first chunk's point: one copy per document.
            minhash=tuple(chunked.minhash) if chunk.index == 0 else (),
            char_span=(chunk.char_start, chunk.char_end),
            section=tuple(chunk.section),
            page=chunk.page,
            last_page=chunk.last_page,
        )
        for i, (chunk, vector) in enumerate(zip(chunked.chunks, vectors, strict=True))
    ]


def payload_points(chunked: DocsChunked, tenant: str, digests: Sequence[tuple[str, str]]) -> list[ChunkPoint]:
    """The points of chunks whose stored vectors hold, without vectors: what `rewrite_payloads` writes.
    Pending, like any point of a version being written; a point staying in its version stays live."""
    return chunk_points(chunked, tenant, None, digests=digests, pending=True)


def indexed(
    chunked: DocsChunked,
    *,
    upserted: int,
    removed: int,
    model: str | None,
    elapsed_ms: float,
    unchanged: int = 0,
    updated: int = 0,
    replaced: int = 0,
    duplicate: Duplicate | None = None,
) -> DocsIndexed:
    """The result of one part: its chunks are searchable, older versions' chunks are gone (and, when
    it nearly repeats another document, which)."""
    return DocsIndexed(
        doc_id=chunked.doc_id,
        version=chunked.version,
        part=chunked.part,
        parts=chunked.parts,
        chunk_ids=[c.chunk_id for c in chunked.chunks],
        upserted=upserted,
        removed=removed,
        unchanged=unchanged,
        updated=updated,
        replaced=replaced,
        duplicate_of=duplicate.doc_id if duplicate else None,
        similarity=duplicate.similarity if duplicate else None,
        embedding_model=model,
        elapsed_ms=round(elapsed_ms, 3),
    )


def skipped(chunked: DocsChunked, duplicate: Duplicate, *, removed: int, elapsed_ms: float) -> DocsIndexed:
    """The result of a near duplicate left out of the index: nothing of it is searchable."""
    return DocsIndexed(
        doc_id=chunked.doc_id,
        version=chunked.version,
        part=chunked.part,
        parts=chunked.parts,
        removed=removed,
        duplicate_of=duplicate.doc_id,
        similarity=duplicate.similarity,
        skipped=True,
        elapsed_ms=round(elapsed_ms, 3),
    )


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The document a part's document nearly repeats, and how closely (Jaccard, by MinHash)."""

    doc_id: str
    similarity: float


def nearest_duplicate(
    signature: Sequence[int], candidates: Mapping[str, Sequence[int]], threshold: float
) -> Duplicate | None:
    """The candidate most similar to `signature`, if at or over `threshold` (ties: the smallest id)."""
    scored = sorted(
        ((near_duplicates.similarity(signature, sig), doc_id) for doc_id, sig in candidates.items()),
        key=lambda pair: (-pair[0], pair[1]),
    )
    if scored and scored[0][0] >= threshold:
        return Duplicate(scored[0][1], round(scored[0][0], 4))
    return None


def deleted(chunked: DocsChunked, *, removed: int, elapsed_ms: float) -> DocsIndexed:
    """The result of a deletion: no point of the document is left."""
    return DocsIndexed(
        doc_id=chunked.doc_id,
        version=chunked.version,
        part=chunked.part,
        parts=chunked.parts,
        removed=removed,
        deleted=True,
        elapsed_ms=round(elapsed_ms, 3),
    )
