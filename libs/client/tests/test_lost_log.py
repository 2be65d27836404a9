"""A reader whose broker lost its log (the local Tansu restarted): it must not wait past the new end."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ragbus.common.admin import ensure_topics
from ragbus.common.kafka import client_options, rewind_truncated, tail
from ragbus.common.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def test_a_reader_past_the_end_of_a_new_log_reads_it_from_the_start(
    kafka_settings: KafkaSettings,
) -> None:
    topic = f"{kafka_settings.topic_prefix}lost-log"
    settings = kafka_settings.model_copy(update={"partitions": 1})
    await ensure_topics(settings, [topic])
    producer = AIOKafkaProducer(**client_options(settings))
    await producer.start()
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"old-{i}".encode(), partition=0)
        reader = await tail(settings, [topic])
        tp = TopicPartition(topic, 0)
        try:
            assert await reader.position(tp) == 5
            assert await rewind_truncated(reader) == []  # at the end, not past it: nothing to do

            # The log is lost and a new one starts: the topic as a restarted in-memory broker has it.
            await admin.delete_topics([topic])
            await ensure_topics(settings, [topic])
            for i in range(2):
                await producer.send_and_wait(topic, f"new-{i}".encode(), partition=0)
            assert (await reader.getmany(tp, timeout_ms=1000)).get(tp) is None  # Tansu: no error, no records

            assert await rewind_truncated(reader) == [tp]
            got: list[bytes] = []
            for _ in range(10):
                got += [r.value for r in (await reader.getmany(tp, timeout_ms=500)).get(tp, [])]
                if len(got) >= 2:
                    break
            assert got == [b"new-0", b"new-1"]
        finally:
            await reader.stop()
    finally:
        await admin.close()
        await producer.stop()
