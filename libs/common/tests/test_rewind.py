"""Taking a live log for a lost one: a partition is rewound only when it is behind at two looks in a
row, if the caller says so (Tansu's end offsets can trail what a fetch already returned)."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from ragbus.common.kafka import rewind_truncated, truncated

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class FakeConsumer:
    def __init__(self, positions: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> None:
        self.positions, self.ends = positions, ends
        self.rewound: list[TopicPartition] = []

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
