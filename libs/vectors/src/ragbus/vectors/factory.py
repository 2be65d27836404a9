"""Open the configured adapters. Nothing here does I/O: stores and models connect or load on first use
(or on `ping()`), so a service can build its dependencies before its event loop runs.
"""

from __future__ import annotations

from ragbus.vectors.ports import Embedder, VectorStore
from ragbus.vectors.settings import MINILM, EmbedderSettings, VectorStoreSettings


def open_vector_store(settings: VectorStoreSettings | None = None) -> VectorStore:
    """`QDRANT_URL` set: the Qdrant server (or `:memory:`); unset: the embedded Qdrant Edge shard."""
    settings = settings or VectorStoreSettings()
    if settings.url:
        from ragbus.vectors.adapters.qdrant_server import QdrantServerStore

        return QdrantServerStore(
            settings.url,
            collection=settings.collection,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout_s=settings.timeout_s,
            hnsw_ef=settings.hnsw_ef,
            upsert_batch=settings.upsert_batch,
        )
    from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore

    return EdgeVectorStore(settings.shard_path(), upsert_batch=settings.upsert_batch)


def open_embedder(settings: EmbedderSettings | None = None) -> Embedder:
    settings = settings or EmbedderSettings()
    if settings.provider == "openai":
        from ragbus.vectors.adapters.openai_embeddings import OpenAIEmbedder

        if not settings.model:
            raise ValueError("RAGBUS_EMBEDDINGS_MODEL is required with the openai provider")
        return OpenAIEmbedder(
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            dimensions=settings.dimensions,
            batch_size=settings.batch_size,
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
        )
    from ragbus.vectors.adapters.minilm import MiniLMEmbedder

    return MiniLMEmbedder(
        model_path=settings.model_path,
        name=settings.model or MINILM,
        batch_size=settings.batch_size,
        forward_batch=settings.forward_batch,
        threads=settings.threads,
        query_onnx=settings.query_onnx,
        process=settings.process,
        processes=settings.processes,
    )
