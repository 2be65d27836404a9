"""Helpers for the orchestrator's tests and benchmarks: build hits, index texts, script a chat model.

The vector ports' doubles (a hashing embedder) live in `ragbus.vectors.testing`; qdrant-client's
`:memory:` mode serves as the store.
"""

from __future__ import annotations

import uuid
from typing import Any

from ragbus.common.ids import record_id
from ragbus.orchestrator.adapters.fake_chat import FakeChatModel
from ragbus.vectors.ports import ChunkPoint, Embedder, Hit, VectorStore
from ragbus.vectors.sparse import Bm25Encoder

__all__ = ["FakeChatModel", "index_texts", "make_hit"]


def make_hit(
    text: str, score: float = 0.8, *, doc_id: str = "doc", index: int = 0, title: str | None = None
) -> Hit:
    """A search hit as a store would return it (for tests of the pure domain)."""
    return Hit(
        chunk_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{doc_id}#{index}"),
        doc_id=doc_id,
        version="v1",
        index=index,
        score=score,
        text=text,
        title=title,
    )


async def index_texts(
    store: VectorStore,
    embedder: Embedder,
    tenant: str,
    docs: dict[str, list[str]],
    titles: dict[str, str] | None = None,
    metadata: dict[str, dict[str, Any]] | None = None,
    groups: dict[str, tuple[str, ...]] | None = None,
) -> int:
    """Index `{doc_id: [chunk text, ...]}` for `tenant` (dense and BM25 vectors, as the embed service
    does), `groups` naming who may read a document; returns how many points were written."""
    await store.ensure(embedder.dim)
    points = []
    for doc_id, chunks in docs.items():
        vectors = await embedder.embed_documents(chunks)
        for i, (text, vec) in enumerate(zip(chunks, vectors, strict=True)):
            points.append(
                ChunkPoint(
                    id=record_id(tenant, doc_id, str(i)),
                    vector=vec,
                    tenant=tenant,
                    doc_id=doc_id,
                    version="v1",
                    index=i,
                    text=text,
                    title=(titles or {}).get(doc_id),
                    metadata=(metadata or {}).get(doc_id, {}),
                    sparse=Bm25Encoder().document(text),
                    groups=(groups or {}).get(doc_id, ()),
                )
            )
    return await store.upsert(points)
