"""Ports of the vector memory: an Embedder turns text into vectors, a VectorStore keeps chunk points.

Both the embed service (writes) and the orchestrator (reads) use them, so they live in a library rather
than in either service. Every adapter passes the same contract tests (tests/test_*_contract.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from ragbus.vectors.sparse import SparseVector

# The names of a point's vectors in a hybrid collection: the embedding and the BM25 terms.
DENSE = "dense"
SPARSE = "bm25"


@dataclass(frozen=True, slots=True)
class ChunkPoint:
    """One chunk of one document version, with its vector. `id` is the chunk id (deterministic)."""

    id: UUID
    vector: Sequence[float]
    tenant: str
    doc_id: str
    version: str
    index: int
    text: str
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # What ingest's scan found in the chunk (`injection`), its score, and where in `text` (start, end).
    flags: tuple[str, ...] = ()
    injection_score: float | None = None
    injection_spans: tuple[tuple[int, int], ...] = ()
    # The chunk's BM25 term weights (ragbus.vectors.sparse), for the lexical leg of hybrid search.
    sparse: SparseVector | None = None
    # What the point was made from (text, payload, embedding model), as its writer hashes it: a writer
    # that finds the same digest stored (`stored_digests`) need not write the point again.
    digest: str | None = None
    # What its vectors alone were made from (the text embedded, the model): a writer that finds the same
    # content digest stored need not embed the chunk again, only rewrite its payload (`rewrite_payloads`).
    content_digest: str | None = None
    # The groups that may read the document (empty: everyone of the tenant); see SearchFilter.groups.
    groups: tuple[str, ...] = ()
    # Written hidden from searches until its version is published (VectorStore.publish): the embed
    # service writes a document version's parts this way, so a search never sees half a new version.
    pending: bool = False
    # The document's MinHash signature (ragbus.common.near_duplicates), kept on its first chunk's point
    # only, with its band keys indexed: how a later document finds out that it nearly repeats this one.
    minhash: tuple[int, ...] = ()
    # Where the chunk is in its document: characters [start, end) of the normalised text, the headings
    # it is under, and the pages it starts and ends on (paged formats): what a citation points at.
    char_span: tuple[int, int] | None = None
    section: tuple[str, ...] = ()
    page: int | None = None
    last_page: int | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found by a search. `score` is its cosine similarity to the question (higher is closer)
    whichever leg found it; `lexical` its BM25 score when the lexical leg found it; `fused` the score
    fusion ranked it by (`ragbus.vectors.fusion`), when it was fused."""

    chunk_id: UUID
    doc_id: str
    version: str
    index: int
    score: float
    text: str
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    injection_score: float | None = None
    injection_spans: tuple[tuple[int, int], ...] = ()
    lexical: float | None = None
    fused: float | None = None
    char_span: tuple[int, int] | None = None
    section: tuple[str, ...] = ()
    page: int | None = None
    last_page: int | None = None

    @property
    def flagged(self) -> bool:
        """Ingest flagged the chunk (its text may carry instructions aimed at the model)."""
        return bool(self.flags)


@dataclass(frozen=True, slots=True)
class StoredDigests:
    """What a stored point was made from, as its writer hashed it (None: written without that digest):
    `point` covers its payload and vectors, `content` its vectors alone."""

    point: str | None
    content: str | None = None
    # Written pending and not published yet (`VectorStore.publish`): not searchable.
    pending: bool = False


@dataclass(frozen=True, slots=True)
class DocumentFields:
    """What every point of a document says about the document: its title, metadata and readers."""

    title: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()


Scalar = str | int


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Which of a tenant's points a search may return; every condition given must hold, on both legs.

    - `doc_ids`: only these documents (None: any; empty: none).
    - `metadata`: per key of the document's metadata, the values it may have (any of them); a list
      in the metadata (e.g. `groups: ["legal", "hr"]`) matches when any of its items does. A key's
      values are all strings or all integers (Qdrant's keyword and integer matches; Qdrant Edge 0.9
      matches no boolean, so a yes/no field is filtered as the strings it is written as).
    - `after` / `before`: the ISO date or datetime in metadata `date_field` is on/after, before.
    - `groups`: the asker's groups, the access check: only points open to the whole tenant (no groups)
      or to one of these. None skips the check (the store's own tools, evaluations); a question always
      sets it, `()` for an asker in no group.
    """

    doc_ids: Sequence[str] | None = None
    metadata: Mapping[str, Sequence[Scalar]] = field(default_factory=dict)
    date_field: str = "date"
    after: datetime | None = None
    before: datetime | None = None
    groups: Sequence[str] | None = None

    def __post_init__(self) -> None:
        for key, values in self.metadata.items():
            kinds = {bool if isinstance(v, bool) else type(v) for v in values}
            if len(kinds) > 1 or kinds - {str, int}:
                raise ValueError(f"metadata filter {key!r}: give strings or integers, not {list(values)!r}")

    @property
    def matches_nothing(self) -> bool:
        return (self.doc_ids is not None and not self.doc_ids) or any(
            not values for values in self.metadata.values()
        )


ANY = SearchFilter()


@dataclass(frozen=True, slots=True)
class Legs:
    """What a hybrid search found: each leg's best points, best first. Every hit carries its cosine
    `score`; the lexical leg's hits carry their BM25 score in `lexical` too."""

    dense: list[Hit]
    sparse: list[Hit]


@runtime_checkable
class Embedder(Protocol):
    """Text to vectors. Vectors are L2-normalised, so cosine similarity is a dot product."""

    @property
    def name(self) -> str:
        """The model's name, recorded in events (e.g. `sentence-transformers/all-MiniLM-L6-v2`)."""
        ...

    @property
    def dim(self) -> int: ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for passages, in order; batches internally."""
        ...

    async def embed_query(self, text: str) -> list[float]:
        """The vector of a question."""
        ...

    async def ping(self) -> None:
        """Raise if the model cannot serve (health check)."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class VectorStore(Protocol):
    """Chunk points per tenant. Every read and delete is scoped to one tenant."""

    async def ensure(self, dim: int) -> None:
        """Create the collection / shard if missing; raise if it exists with another dimension."""
        ...

    async def upsert(self, points: Sequence[ChunkPoint]) -> int:
        """Insert or replace points by id (same id twice = one point). Returns how many were written."""
        ...

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> int:
        """Remove the document's points of any version other than `keep_version`. Returns how many."""
        ...

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        """Remove every point of the document. Returns how many."""
        ...

    async def delete_where(self, tenant: str, where: SearchFilter) -> int:
        """Remove the tenant's points that pass `where` (`ANY`: all of the tenant's). Returns how many."""
        ...

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        top_k: int,
        where: SearchFilter = ANY,
    ) -> list[Hit]:
        """The `top_k` points of `tenant` closest to `vector` that pass `where`, best first."""
        ...

    async def search_hybrid(
        self,
        tenant: str,
        vector: Sequence[float],
        sparse: SparseVector,
        top_k: int,
        where: SearchFilter = ANY,
    ) -> Legs:
        """Both legs at once: the `top_k` closest to `vector` and the `top_k` best BM25 matches of
        `sparse` (IDF applied by the store), under the same `where`. A store without sparse vectors
        (a collection made before hybrid search) returns an empty lexical leg."""
        ...

    async def count(
        self, tenant: str | None = None, doc_id: str | None = None, version: str | None = None
    ) -> int:
        """How many points (of a tenant, of a document, of one of its versions; pending ones too)."""
        ...

    async def publish(self, tenant: str, doc_id: str, version: str) -> None:
        """Make a document version's pending points searchable, all in one store operation, stamped
        `published_at`; until its older versions are removed (`delete_stale`), a search returns the
        hits of the version published last, so a reader sees one version of a document, never both
        and never neither."""
        ...

    async def stored_digests(self, tenant: str, ids: Sequence[UUID]) -> dict[UUID, StoredDigests]:
        """The digests of each of these points the tenant has; an id the store does not hold for this
        tenant is left out."""
        ...

    async def rewrite_payloads(self, points: Sequence[ChunkPoint]) -> int:
        """Replace the payload of these stored points with the points' own, keeping the vectors they
        have (`vector` and `sparse` are not read): what a point says changes, not what it was embedded
        from. A point that stays in the version it is stored in keeps its publication (a live point
        stays live, with its `published_at`; `pending` is not read); one that moves to another version
        is written as it says. A point the tenant does not hold is skipped. All in one call of the
        store; returns how many were rewritten."""
        ...

    async def set_document_fields(
        self, tenant: str, doc_id: str, version: str, fields: DocumentFields
    ) -> None:
        """Set the title, metadata and groups of every point of the document's version in one store
        operation: a reader sees all of them with the old values or all with the new, so a change of
        who may read the document holds for all its chunks at once, however many parts it came in."""
        ...

    async def similar_documents(
        self, tenant: str, bands: Sequence[str], exclude_doc_id: str, limit: int = 50
    ) -> dict[str, list[int]]:
        """Other documents of the tenant that share a MinHash band with these (`near_duplicates.bands`),
        each with its stored signature: the candidates for a near-duplicate check."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot serve (health check)."""
        ...

    async def aclose(self) -> None: ...


def nothing_to_search(top_k: int, where: SearchFilter) -> bool:
    """No point can be a hit: `top_k` under 1, or a filter that admits nothing (e.g. `doc_ids=[]`)."""
    return top_k <= 0 or where.matches_nothing
