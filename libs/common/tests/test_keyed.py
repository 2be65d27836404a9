"""A concurrent subscription on a real broker (ragbus.common.keyed): one consumer, several messages at
once, in order per key, commits never past a message still in work, partitions in turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import DocsSubmitted
from ragbus.common.kafka import client_options
from ragbus.common.keyed import KeyedSubscriber, subject_key
from ragbus.common.service import Service
from ragbus.common.settings import KafkaSettings, ServiceSettings
from ragbus.common.topics import DOCS_SUBMITTED, Topics

pytestmark = pytest.mark.integration

WAIT_S = 30.0


@dataclass
class Recorder:
    """The handler's side: which documents started and finished, in order; a document whose text is
    `hold` waits for its gate."""

    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def gate(self, label: str) -> asyncio.Event:
        return self.gates.setdefault(label, asyncio.Event())

    async def handle(self, event: Envelope[DocsSubmitted]) -> None:
        label = f"{event.data.doc_id}/{event.data.text}"
        self.started.append(label)
        self.changed.set()
        if label in self.gates:
            await self.gates[label].wait()
        self.finished.append(label)
        self.changed.set()

    async def until(self, check: object, what: str) -> None:
        async def wait() -> None:
            while not check():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), WAIT_S)
        except TimeoutError:
            raise AssertionError(f"{what}: started {self.started}, finished {self.finished}") from None


def make_service(
    kafka: KafkaSettings, recorder: Recorder, *, workers: int, partition_workers: int | None = None
) -> Service[object]:
    settings = ServiceSettings(kafka=kafka, telemetry={"enabled": False}).model_copy(
        update={"workers": workers, "partition_workers": partition_workers}
    )
    service: Service[object] = Service("keyedtest", settings, deps=object())
    service.broker.config.broker_config.graceful_timeout = 0.5  # a held message is not waited for long
    service.subscriber(DOCS_SUBMITTED, concurrent=True, order_by=subject_key)(recorder.handle)
    return service


@pytest.fixture
async def send(kafka_settings: KafkaSettings) -> AsyncIterator[object]:
    t = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, t.all_with_dlq)
    producer = AIOKafkaProducer(**client_options(kafka_settings))
    await producer.start()

    async def publish(doc_id: str, text: str, *, partition: int) -> None:
        event = Envelope.new(DocsSubmitted(doc_id=doc_id, text=text), source="test", tenant="acme")
        await producer.send_and_wait(
            t(DOCS_SUBMITTED),
            event.to_bytes(),
            key=event.key,
            partition=partition,
            headers=[("content-type", CE_CONTENT_TYPE.encode())],
        )

    yield publish
    await producer.stop()


async def committed(kafka: KafkaSettings, partition: int) -> int | None:
    tp = TopicPartition(Topics(kafka.topic_prefix)(DOCS_SUBMITTED), partition)
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(kafka.group_id("keyedtest"), partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return found.offset if found is not None and found.offset >= 0 else None


async def committed_when(
    kafka: KafkaSettings, partition: int, offset: int, *, wait_s: float = 10.0
) -> int | None:
    """The partition's committed offset once it is `offset` (a commit goes out after the work, in the
    background), or as it is after `wait_s`."""
    for _ in range(int(wait_s / 0.1)):
        if (found := await committed(kafka, partition)) == offset:
            return found
        await asyncio.sleep(0.1)
    return await committed(kafka, partition)


async def test_other_keys_go_on_while_one_waits_and_a_keys_messages_keep_their_order(
    kafka_settings: KafkaSettings, send: object
) -> None:
    recorder = Recorder()
    held = recorder.gate("a/1")
    service = make_service(kafka_settings, recorder, workers=4)
    # All on one partition (as a tenant's documents are): a, a again, then two other documents.
    for doc_id, text in [("a", "1"), ("a", "2"), ("b", "1"), ("c", "1")]:
        await send(doc_id, text, partition=0)  # type: ignore[operator]
    await service.app.start()
    try:
        await recorder.until(lambda: {"b/1", "c/1"} <= set(recorder.finished), "b and c beside a held a/1")
        assert "a/2" not in recorder.started  # behind a/1, its own document's earlier message
        # Nothing is committed past the message still in work: offset 0 is read again after a restart.
        assert await committed(kafka_settings, 0) in (None, 0)
        held.set()
        await recorder.until(lambda: "a/2" in recorder.finished, "a/2 once a/1 is done")
        assert recorder.finished.index("a/1") < recorder.started.index("a/2")
        await recorder.until(lambda: len(recorder.finished) == 4, "all four")
        assert await committed_when(kafka_settings, 0, 4) == 4
    finally:
        held.set()
        await service.app.stop()


async def test_a_message_still_in_work_at_a_stop_is_read_again_and_those_done_before_it_are_not(
    kafka_settings: KafkaSettings, send: object
) -> None:
    first = Recorder()
    first.gate("b/1")  # never opened: in work when the service stops
    for doc_id in ("a", "b", "c"):
        await send(doc_id, "1", partition=0)  # type: ignore[operator]
    service = make_service(kafka_settings, first, workers=4)
    await service.app.start()
    try:
        await first.until(lambda: {"a/1", "c/1"} <= set(first.finished), "a and c beside a held b")
    finally:
        await service.app.stop()
    assert await committed(kafka_settings, 0) == 1  # a's offset is behind, b's is not

    again = Recorder()
    service = make_service(kafka_settings, again, workers=4)
    await service.app.start()
    try:
        # b was never done; c was, but after b: at-least-once reads it again (its handler is idempotent).
        await again.until(lambda: {"b/1", "c/1"} <= set(again.finished), "b and c again")
        assert "a/1" not in again.started
    finally:
        await service.app.stop()


async def test_commits_while_working_wait_for_the_interval_and_a_stop_commits_what_is_done(
    kafka_settings: KafkaSettings, send: object
) -> None:
    recorder = Recorder()
    gates = [recorder.gate(f"d{n}/1") for n in range(5)]
    for n in range(5):
        await send(f"d{n}", "1", partition=0)  # type: ignore[operator]
    lingering = kafka_settings.model_copy(update={"commit_interval_ms": 60_000})
    service = make_service(lingering, recorder, workers=8)
    await service.app.start()
    try:
        await recorder.until(lambda: len(recorder.started) == 5, "all five in work")
        gates[0].set()
        assert await committed_when(kafka_settings, 0, 1) == 1  # the first commit goes out at once
        for n, gate in enumerate(gates[1:], start=2):
            gate.set()
            await recorder.until(lambda n=n: len(recorder.finished) == n, f"d{n - 1} done")
            await asyncio.sleep(0.3)  # time enough for a commit that did not wait for the interval
        # The rest waits for the interval: one request for all of them, not one each.
        assert await committed(kafka_settings, 0) == 1
    finally:
        for gate in gates:
            gate.set()
        await service.app.stop()
    assert await committed(kafka_settings, 0) == 5  # the stop commits what was done, at once


async def test_a_backlog_on_one_partition_does_not_hold_up_another_partitions_message(
    kafka_settings: KafkaSettings, send: object
) -> None:
    recorder = Recorder()
    for n in range(20):
        await send(f"bulk{n}", "1", partition=0)  # type: ignore[operator]
    await send("other", "1", partition=1)  # type: ignore[operator]
    service = make_service(kafka_settings, recorder, workers=2)
    await service.app.start()
    try:
        await recorder.until(lambda: len(recorder.finished) == 21, "all 21")
    finally:
        await service.app.stop()
    # Partitions take turns: the other partition's message is among the first few, not after 20.
    assert recorder.started.index("other/1") <= 3
    assert [x for x in recorder.started if x != "other/1"] == [f"bulk{n}/1" for n in range(20)]


async def test_a_partitions_share_of_the_workers_leaves_room_for_another_partitions_message(
    kafka_settings: KafkaSettings, send: object
) -> None:
    recorder = Recorder()
    gates = [recorder.gate(f"bulk{n}/1") for n in range(5)]
    for n in range(5):
        await send(f"bulk{n}", "1", partition=0)  # type: ignore[operator]
    service = make_service(kafka_settings, recorder, workers=4, partition_workers=2)
    await service.app.start()
    try:
        await recorder.until(lambda: len(recorder.started) == 2, "two of partition 0")
        await asyncio.sleep(0.5)
        assert recorder.started == ["bulk0/1", "bulk1/1"]  # its share, though two workers are free
        await send("other", "1", partition=1)  # type: ignore[operator]
        # Starts at once on a free worker, while partition 0's two are still held.
        await recorder.until(lambda: "other/1" in recorder.finished, "the other partition's message")
        assert recorder.finished == ["other/1"]
        gates[0].set()
        await recorder.until(lambda: "bulk2/1" in recorder.started, "partition 0 goes on")
        for gate in gates:
            gate.set()
        await recorder.until(lambda: len(recorder.finished) == 6, "all six")
    finally:
        for gate in gates:
            gate.set()
        await service.app.stop()


async def test_a_rebalance_lets_a_partition_go_without_committing_past_a_message_still_in_work(
    kafka_settings: KafkaSettings, send: object
) -> None:
    first = Recorder()
    second = Recorder(changed=first.changed)  # one wake-up for both
    held = first.gate("x/1")
    # The same gate on the second: if it takes partition 0 it reads x again (never committed), and
    # must not finish and commit it before the assertion below has looked.
    second.gates["x/1"] = held
    one = make_service(kafka_settings, first, workers=4)
    two = make_service(kafka_settings, second, workers=4)
    await one.app.start()
    try:
        await send("x", "1", partition=0)  # type: ignore[operator]
        await first.until(lambda: "x/1" in first.started, "x in work on the first instance")
        # A second instance joins: the first lets go of its partitions while x is still in work.
        await two.app.start()
        [joined] = cast(list[KeyedSubscriber], two.broker.subscribers)
        for _ in range(300):
            if joined.consumer is not None and joined.consumer.assignment():
                break
            await asyncio.sleep(0.1)
        assert joined.consumer is not None
        assert joined.consumer.assignment(), "the second instance never got partitions"
        assert await committed(kafka_settings, 0) in (None, 0)  # x is not behind the commit point
        held.set()
        # Whoever holds partition 0 now reads x again (never committed) and commits it once done.
        assert await committed_when(kafka_settings, 0, 1, wait_s=30.0) == 1
        assert "x/1" in first.finished + second.finished
    finally:
        held.set()
        await two.app.stop()
        await one.app.stop()
