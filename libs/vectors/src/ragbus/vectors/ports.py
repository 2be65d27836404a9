"""Ports of the vector memory: an Embedder turns text into vectors, a VectorStore keeps chunk points.

Both the embed service (writes) and the orchestrator (reads) use them, so they live in a library rather
than in either service. Every adapter passes the same contract tests (tests/test_*_contract.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from uuid import UUID


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


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found by a search, best first; `score` is cosine similarity (higher is closer)."""

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

    @property
    def flagged(self) -> bool:
        """Ingest flagged the chunk (its text may carry instructions aimed at the model)."""
        return bool(self.flags)


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

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        top_k: int,
        doc_ids: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The `top_k` points of `tenant` closest to `vector` (optionally within `doc_ids`), best first."""
        ...

    async def count(self, tenant: str | None = None, doc_id: str | None = None) -> int:
        """How many points (of a tenant, of a document)."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot serve (health check)."""
        ...

    async def aclose(self) -> None: ...


def nothing_to_search(top_k: int, doc_ids: Sequence[str] | None) -> bool:
    """No point can be a hit: `top_k` under 1, or `doc_ids` given but empty (None means any document)."""
    return top_k <= 0 or (doc_ids is not None and not doc_ids)
