"""Embed settings, from `EMBED_*` environment variables. The vector store (`QDRANT_*`) and the embedding
model (`RAGBUS_EMBEDDINGS_*`) read their own variables, shared with the orchestrator so both always use
the same store and model; bus, traces and logs: see ServiceSettings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ragbus.common.settings import ServiceSettings
from ragbus.vectors.settings import EmbedderSettings, VectorStoreSettings
from ragbus.vectors.sparse import DEFAULT_AVG_LENGTH


class EmbedSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EMBED_", extra="ignore")

    # Parts worked on at once, in order per document (see the ingest's `workers`): their chunks share
    # model calls (below), and another tenant's part waits behind a few batches, not behind a bulk load.
    workers: int = Field(default=8, ge=1, le=64)
    # Micro-batching across messages: the workers' chunks share model calls of up to `batch_size`
    # chunks; one goes out when it is full, or when the model is free and its first chunk has waited
    # `batch_linger_ms` (ragbus.vectors.batching). A message is a few chunks; a model call pays a thread
    # hand-off (or, for a remote model, an HTTP round trip), so fewer, fuller calls go faster.
    batch_size: int = Field(default=32, ge=1, le=2048, description="chunks per model call, across messages")
    batch_linger_ms: float = Field(
        default=5.0, ge=0, le=1000, description="how long a chunk may wait for others while the model is free"
    )

    # A document whose text nearly repeats another of its tenant's (MinHash Jaccard at or over the
    # threshold): `keep` indexes it and says so in docs.indexed (`duplicate_of`), `skip` leaves it out of
    # the index (a mirror, a re-export under another name), `off` does not look.
    near_duplicates: Literal["keep", "skip", "off"] = Field(
        default="keep", description="what to do with a near-duplicate document: keep, skip or off"
    )
    near_duplicate_threshold: float = Field(
        default=0.8, gt=0, le=1, description="the Jaccard similarity (3-word shingles) that makes one"
    )

    vectors: VectorStoreSettings = Field(default_factory=VectorStoreSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    # A chunk from the middle of a document often never names its subject; the title says what it is
    # about. Embedding "title\ntext" is how BEIR scores sentence-transformers models on title+text corpora
    # (SciFact included); questions are embedded as they are. The stored text stays the chunk's own.
    with_title: bool = Field(default=True, description="prepend the document title to each chunk embedded")
    # Hybrid search's lexical leg: each chunk's BM25 term weights, stored beside its embedding.
    bm25: bool = Field(default=True, description="store BM25 sparse vectors for hybrid retrieval")
    bm25_avg_length: float = Field(
        default=DEFAULT_AVG_LENGTH, gt=0, description="BM25's average chunk length, in index terms"
    )
