"""The embed service on a real Kafka-protocol broker (KAFKA_BOOTSTRAP, a Kafka container, or Tansu) and
the embedded Qdrant Edge store: a `docs.chunked` event in, a `docs.indexed` event out, points stored.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope, parse_event
from ragbus.common.events import ChunkData, DocsChunked, DocsIndexed
from ragbus.common.ids import content_hash, record_id
from ragbus.common.kafka import client_options
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import DOCS_CHUNKED, DOCS_INDEXED, Topics
from ragbus.embed.app import create_app
from ragbus.embed.settings import EmbedSettings
from ragbus.embed.usecases import EmbedDeps
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.testing import HashingEmbedder

pytestmark = pytest.mark.integration


async def test_a_chunked_document_is_indexed_over_a_real_broker(
    kafka_settings: KafkaSettings, tmp_path: Path, ragbus_home: Path
) -> None:
    t = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, t.all_with_dlq)
    store = EdgeVectorStore(tmp_path / "shard")
    settings = EmbedSettings(kafka=kafka_settings, telemetry={"enabled": False})
    app = create_app(settings, EmbedDeps(embedder=HashingEmbedder(dim=32), store=store))

    texts = ["The tower is 330 metres tall.", "It opened in 1889."]
    chunks = [
        ChunkData(
            chunk_id=record_id("acme", "eiffel", str(i), content_hash(x)),
            index=i,
            text=x,
            content_hash=content_hash(x),
            token_count=5,
            char_start=0,
            char_end=len(x),
        )
        for i, x in enumerate(texts)
    ]
    event = Envelope.new(
        DocsChunked(doc_id="eiffel", version="v1", chunks=chunks), source="test", tenant="acme"
    )

    consumer = AIOKafkaConsumer(
        t(DOCS_INDEXED), auto_offset_reset="earliest", **client_options(kafka_settings)
    )
    producer = AIOKafkaProducer(**client_options(kafka_settings))
    await consumer.start()
    await producer.start()
    await app.start()
    try:
        await producer.send_and_wait(
            t(DOCS_CHUNKED),
            event.to_bytes(),
            key=event.key,
            headers=[("content-type", CE_CONTENT_TYPE.encode())],
        )
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await app.stop()
        await producer.stop()
        await consumer.stop()
        await store.aclose()

    result = parse_event(record.value)
    assert isinstance(result.data, DocsIndexed)
    assert result.causationid == event.id
    assert result.data.upserted == 2
    assert dict(record.headers).get("traceparent")  # the trace goes on to the next hop
    async with EdgeVectorStore(tmp_path / "shard") as reopened:
        assert await reopened.count("acme", "eiffel") == 2
