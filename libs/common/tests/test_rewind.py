"""Taking a live log for a lost one: a partition is rewound only when it is behind at two looks in a
row, if the caller says so (Tansu's end offsets can trail what a fetch already returned)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from ragbus.common.admin import ensure_topics
from ragbus.common.kafka import client_options, rewind_truncated, tail, truncated
from ragbus.common.settings import KafkaSettings

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class FakeConsumer:
    def __init__(
        self,
        positions: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        highwater: dict[TopicPartition, int] | None = None,
    ) -> None:
        self.positions, self.ends = positions, ends
        self.highwaters = highwater or {}
        self.rewound: list[TopicPartition] = []

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.rewound += tps
        for tp in tps:
            self.positions[tp] = 0


async def test_a_partition_behind_once_is_a_suspect_and_behind_twice_is_rewound() -> None:
    consumer: Any = FakeConsumer({A: 10, B: 5}, {A: 7, B: 9})
    assert await truncated(consumer) == [A]
    assert await rewind_truncated(consumer, suspects=[]) == []  # first look: only a suspect
    assert consumer.rewound == []
    assert await rewind_truncated(consumer, suspects=[A, B]) == [A]  # still behind: lost
    assert consumer.rewound == [A]
    assert consumer.positions[A] == 0


async def test_a_suspect_that_caught_up_is_not_rewound_and_one_look_is_enough_without_suspects() -> None:
    consumer: Any = FakeConsumer({A: 10}, {A: 12})  # the end offset caught up: the log is live
    assert await rewind_truncated(consumer, suspects=[A]) == []
    consumer.ends[A] = 3
    assert await rewind_truncated(consumer) == [A]


async def test_a_log_whose_end_reads_short_but_whose_fetches_reach_the_position_is_live() -> None:
    """Tansu gives a partition's end as its last batch's first offset + 1 (a batch of 3 at 7..9: 8)
    while its fetches say 10: the reader at 10 is at the end, not past a lost log."""
    consumer: Any = FakeConsumer({A: 10}, {A: 8}, highwater={A: 10})
    assert await truncated(consumer) == []
    assert await rewind_truncated(consumer, suspects=[A]) == []
    # The broker restarted empty: its fetches now say 2 as well, and the reader is rewound.
    consumer.ends[A], consumer.highwaters[A] = 2, 2
    assert await rewind_truncated(consumer, suspects=[A]) == [A]


@pytest.mark.integration
async def test_a_reader_at_the_end_of_a_batch_written_at_once_is_not_taken_for_truncated(
    kafka_settings: KafkaSettings,
) -> None:
    topic = f"{kafka_settings.topic_prefix}rewind"
    await ensure_topics(kafka_settings, [topic])
    reader = await tail(kafka_settings, [topic])
    producer = AIOKafkaProducer(**client_options(kafka_settings), linger_ms=50)  # one batch of three
    await producer.start()
    try:
        sent = await asyncio.gather(*[await producer.send(topic, b"x", partition=0) for _ in range(3)])
        assert [m.offset for m in sent] == [0, 1, 2]
        got = 0
        while got < 3:
            got += sum(len(v) for v in (await reader.getmany(timeout_ms=5000)).values())
        await reader.getmany(timeout_ms=200)  # one more fetch: its answer carries the end
        assert await truncated(reader) == []
    finally:
        await producer.stop()
        await reader.stop()
