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

    # Parts worked on at once, in order per document (see the ingest's `workers`), at most
    # `partition_workers` of them from one partition. Their chunks share model calls (below); a part in
    # a running call holds its worker, so there must be more parts than the calls out take, or the model
    # waits between calls for the next parts to get through their store lookups: with 8 workers
    # (~18 chunks) bench/ingest.py ran ~10% slower. Three calls of 32 out (two running in the model's
    # two processes, one waiting) hold ~96 chunks, ~42 parts of SciFact abstracts. A tenant's bulk load
    # is keyed to two partitions (events.DOC_KEY_SHARDS), so it takes at most 48 of the 64 and another
    # tenant's part starts at once; its chunks then take their turn in the next call
    # (ragbus.vectors.batching's lanes).
    workers: int = Field(default=64, ge=1, le=64)
    partition_workers: int | None = Field(default=24, ge=1, le=64)
    # Micro-batching across messages: the workers' chunks share model calls of up to `batch_size`
    # chunks; one goes out when it is full, or when the model is free and its first chunk has waited
    # `batch_linger_ms` (ragbus.vectors.batching). A message is a few chunks; a model call pays a thread
    # or process hand-off (or, for a remote model, an HTTP round trip), and the local model sorts a
    # call's chunks by length and pads each pass of 8 to its longest, so a fuller call pads less:
    # bench/ingest.py (600 abstracts, 4 runs each, alternating) put the model's CPU at a median 62.1 ms
    # a chunk with calls of 32 against 68.1 with 16, and the pipeline at 0.83 of the raw model's rate
    # against 0.76. Another tenant's part waits for the calls out before its own, so while chunks of
    # more than one tenant wait (the batcher's lanes), calls hold at most `batch_size_shared`: under a
    # 300-document bulk load (bench/ingest_isolation.py, 2 runs each) the other tenants' median was
    # 7.2 and 7.3 s, against 7.6 and 6.9 s with calls of 16 throughout and 10.5 and 8.3 s with 32.
    batch_size: int = Field(default=32, ge=1, le=2048, description="chunks per model call, across messages")
    batch_size_shared: int = Field(
        default=16, ge=1, le=2048, description="chunks per model call while more than one tenant's wait"
    )
    batch_linger_ms: float = Field(
        default=5.0, ge=0, le=1000, description="how long a chunk may wait for others while the model is free"
    )
    # Model calls out at once; unset: one more than the model runs side by side (its worker processes,
    # RAGBUS_EMBEDDINGS_PROCESSES), so a full next call waits at the model while the others run, and
    # starts the moment one ends. With one call out per model process, the model waited for the event
    # loop, busy with the services, to settle the call and send the next: 10 ms a call (median; p90 22
    # ms), 2.0% of the model's time idle under bench/ingest.py, against 0.3 ms and 0.1% with one more.
    # Only the first calls go out less than full. Another tenant's part waits behind the calls out: under
    # a 300-document bulk load (bench/ingest_isolation.py, 2 runs each) the others' median was 4.9 and
    # 5.2 s with two processes and three calls out, against 4.7 and 4.9 s with one process and two.
    batch_in_flight: int | None = Field(
        default=None, ge=1, le=8, description="model calls out at once (unset: the model's processes + 1)"
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

    def calls_out(self, model_calls_at_once: int) -> int:
        """Model calls out at once: `batch_in_flight`, or one more than the model runs side by side."""
        return self.batch_in_flight or model_calls_at_once + 1
