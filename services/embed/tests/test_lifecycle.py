"""The service as deployed: it opens the store and model its settings name at startup (MiniLM and the
embedded Qdrant Edge shard by default) and releases them at shutdown."""

from __future__ import annotations

from pathlib import Path

import pytest
from faststream import TestApp
from faststream.kafka import TestKafkaBroker

from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import ChunkData, DocsChunked
from ragbus.common.ids import content_hash, record_id
from ragbus.common.topics import DOCS_CHUNKED, Topics
from ragbus.embed.app import create_app
from ragbus.embed.settings import EmbedSettings
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.errors import DimensionMismatch

pytestmark = pytest.mark.model


def settings(prefix: str) -> EmbedSettings:
    return EmbedSettings(telemetry={"enabled": False}).with_kafka(topic_prefix=prefix)  # type: ignore[no-any-return]


async def test_the_default_service_indexes_with_minilm_into_the_embedded_store(
    ragbus_home: Path, topic_prefix: str
) -> None:
    app = create_app(settings(topic_prefix))
    text = "The Eiffel Tower is 330 metres tall."
    chunk = ChunkData(
        chunk_id=record_id("acme", "eiffel", "0", content_hash(text)),
        index=0,
        text=text,
        content_hash=content_hash(text),
        token_count=9,
        char_start=0,
        char_end=len(text),
    )
    event = Envelope.new(
        DocsChunked(doc_id="eiffel", version="v1", chunks=[chunk]), source="test", tenant="acme"
    )
    async with TestKafkaBroker(app.kafka_broker) as br, TestApp(app):
        await br.publish(
            event.to_bytes(),
            Topics(topic_prefix)(DOCS_CHUNKED),
            key=event.key,
            headers={"content-type": CE_CONTENT_TYPE},
        )
        assert await app.health() == {"kafka": "ok", "vector_store": "ok", "embedder": "ok"}

    # Shut down: the shard directory is released, and holds the 384-d point.
    async with EdgeVectorStore(ragbus_home / "qdrant-edge" / "ragbus_chunks") as store:
        [hit] = await store.search("acme", [1.0] * 384, 1)
        assert (hit.doc_id, hit.text) == ("eiffel", text)
        with pytest.raises(DimensionMismatch):
            await store.ensure(385)


async def test_a_store_built_for_another_model_stops_the_service_at_startup(
    ragbus_home: Path, topic_prefix: str
) -> None:
    async with EdgeVectorStore(ragbus_home / "qdrant-edge" / "ragbus_chunks") as store:
        await store.ensure(768)
    app = create_app(settings(topic_prefix))
    with pytest.raises(DimensionMismatch, match="768-d"):
        async with TestKafkaBroker(app.kafka_broker), TestApp(app):
            pass
