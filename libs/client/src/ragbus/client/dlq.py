"""Dead letters on the bus: read them, and replay them to their topic once their cause is fixed.

Every service sends what it cannot process to `<topic>.dlq`: the original key and bytes unchanged, the
reason in `x-ragbus-dlq-*` headers. Replaying publishes those bytes to the original topic again, where
every consumer of the topic sees them; that is safe because consumers are idempotent (deterministic
ids, upserts, `ON CONFLICT DO NOTHING`). A message that several consumers dead-lettered sits in the
`.dlq` once per consumer and is replayed once.

Replays read the `.dlq` topics as the consumer group `ragbus-dlq-replay` and commit what they
replayed, so the next replay starts after it: a letter is replayed once, and one that fails again
comes back as a new letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from ragbus.client.plugins import plugged_in
from ragbus.common import topics
from ragbus.common.admin import ensure_topics
from ragbus.common.kafka import client_options
from ragbus.common.letters import Letter, replay_headers
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics

REPLAY_GROUP = "ragbus-dlq-replay"
# Where `--from-record` reads letters: a package (ragbus-monitor) names a function
# `async (dlq_topics) -> list[Letter]` under this entry point group; the client does not import it.
RECORD_GROUP = "ragbus.letters"


@dataclass(slots=True)
class Replayed:
    published: list[Letter] = field(default_factory=list)
    duplicates: int = 0  # letters of a message already replayed (several consumers dead-lettered it)


def dlq_topics(t: Topics, bases: Sequence[str] = ()) -> list[str]:
    """The `.dlq` topic of each base topic named (all of them when none is), prefix applied."""
    unknown = [b for b in bases if b not in topics.ALL]
    if unknown:
        raise ValueError(f"unknown topic {unknown[0]!r}; one of: {', '.join(topics.ALL)}")
    return [t.dlq(b) for b in (bases or topics.ALL)]


def _letter(record: Any) -> Letter:
    return Letter.of(
        record.topic, record.partition, record.offset, record.key, record.value or b"", record.headers or ()
    )


async def _read(consumer: AIOKafkaConsumer, names: Sequence[str], *, from_committed: bool) -> list[Letter]:
    """Every letter from the start (or the group's committed offsets) up to the end as of now."""
    await consumer.topics()
    partitions = [
        TopicPartition(name, p) for name in names for p in sorted(consumer.partitions_for_topic(name) or ())
    ]
    if not partitions:
        return []
    consumer.assign(partitions)
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    for tp in partitions:
        committed = await consumer.committed(tp) if from_committed else None
        consumer.seek(tp, max(committed, starts[tp]) if committed is not None else starts[tp])
    letters: list[Letter] = []
    pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, records in batch.items():
            letters += [_letter(r) for r in records if r.offset < ends[tp]]
        pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    order = {name: i for i, name in enumerate(names)}
    return sorted(letters, key=lambda x: (order[x.dlq_topic], x.partition, x.offset))


async def read_letters(settings: KafkaSettings, bases: Sequence[str] = ()) -> list[Letter]:
    """All dead letters still on the bus (within the topics' retention): by topic, partition, offset."""
    names = dlq_topics(Topics(settings.topic_prefix), bases)
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        return await _read(consumer, names, from_committed=False)
    finally:
        await consumer.stop()


async def record_letters(settings: KafkaSettings, bases: Sequence[str] = ()) -> list[Letter]:
    """The dead letters on the monitor's record (they outlive a broker that lost its log), oldest first.
    LookupError when no installed package provides the record."""
    names = dlq_topics(Topics(settings.topic_prefix), bases)
    hook = plugged_in(RECORD_GROUP).get("record")
    if hook is None:
        raise LookupError("the monitor's record is read by ragbus-monitor, which is not installed")
    letters: list[Letter] = await hook.load()(names)
    return letters


async def _publish(producer: AIOKafkaProducer, letters: Sequence[Letter], *, dry_run: bool) -> Replayed:
    """Each message once, to its original topic, however many consumers dead-lettered it."""
    result = Replayed()
    seen: set[tuple[str, int | None, int | None]] = set()
    for letter in letters:
        if letter.origin in seen:
            result.duplicates += 1
            continue
        seen.add(letter.origin)
        result.published.append(letter)
        if not dry_run:
            headers = replay_headers(letter)
            await producer.send_and_wait(letter.original_topic, letter.value, key=letter.key, headers=headers)
    return result


async def replay_letters(
    settings: KafkaSettings, letters: Sequence[Letter], *, dry_run: bool = False
) -> Replayed:
    """Publish letters read elsewhere (the monitor's record) to their original topics. Nothing marks
    them replayed: a second replay sends them again, which idempotent consumers take as redeliveries."""
    await ensure_topics(settings, sorted({letter.original_topic for letter in letters}))
    producer = AIOKafkaProducer(**client_options(settings), max_request_size=settings.max_request_size)
    await producer.start()
    try:
        return await _publish(producer, letters, dry_run=dry_run)
    finally:
        await producer.stop()


async def replay(settings: KafkaSettings, bases: Sequence[str] = (), *, dry_run: bool = False) -> Replayed:
    """Publish every letter not replayed before to its original topic, then commit them as replayed."""
    t = Topics(settings.topic_prefix)
    names = dlq_topics(t, bases)
    await ensure_topics(settings, names)
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=REPLAY_GROUP, enable_auto_commit=False)
    producer = AIOKafkaProducer(**client_options(settings), max_request_size=settings.max_request_size)
    await consumer.start()
    await producer.start()
    try:
        letters = await _read(consumer, names, from_committed=True)
        result = await _publish(producer, letters, dry_run=dry_run)
        if not dry_run and letters:
            last: dict[TopicPartition, int] = {}
            for letter in letters:
                tp = TopicPartition(letter.dlq_topic, letter.partition)
                last[tp] = max(last.get(tp, -1), letter.offset)
            await consumer.commit({tp: OffsetAndMetadata(off + 1, "") for tp, off in last.items()})
        return result
    finally:
        await producer.stop()
        await consumer.stop()
