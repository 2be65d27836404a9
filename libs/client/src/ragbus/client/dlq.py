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

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from ragbus.common import topics
from ragbus.common.admin import ensure_topics
from ragbus.common.events import DLQ_HEADER_PREFIX, DeadLetter
from ragbus.common.kafka import client_options
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics
from ragbus.common.trust import PRINCIPAL_HEADER, SIGNATURE_HEADER

REPLAY_GROUP = "ragbus-dlq-replay"


@dataclass(frozen=True, slots=True)
class Letter:
    """One message of a `.dlq` topic."""

    dlq_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    letter: DeadLetter | None  # None: the x-ragbus-dlq-* headers are missing or incomplete

    @property
    def original_topic(self) -> str:
        return self.letter.original_topic if self.letter else self.dlq_topic.removesuffix(topics.DLQ_SUFFIX)

    @property
    def origin(self) -> tuple[str, int | None, int | None]:
        """Where the message was first published: the same for every consumer that dead-lettered it."""
        if self.letter is None:
            return (self.dlq_topic, self.partition, self.offset)
        return (self.letter.original_topic, self.letter.partition, self.letter.offset)


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
    headers = tuple((k, v or b"") for k, v in record.headers or ())
    try:
        letter: DeadLetter | None = DeadLetter.from_headers(dict(headers))
    except (pydantic.ValidationError, UnicodeDecodeError):
        letter = None
    return Letter(
        record.topic, record.partition, record.offset, record.key, record.value or b"", headers, letter
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


_SIGNATURE = (PRINCIPAL_HEADER, SIGNATURE_HEADER)


async def read_letters(settings: KafkaSettings, bases: Sequence[str] = ()) -> list[Letter]:
    """All dead letters still on the bus (within the topics' retention): by topic, partition, offset."""
    names = dlq_topics(Topics(settings.topic_prefix), bases)
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        return await _read(consumer, names, from_committed=False)
    finally:
        await consumer.stop()


def replay_headers(letter: Letter) -> list[tuple[str, bytes]]:
    """A letter's headers as its original had them: without the `x-ragbus-dlq-*` ones and the dead-
    lettering service's signature, with the original producer's signature back (if it had one), so the
    replayed record is checked as the producer's, not trusted as the service's or the operator's."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith(DLQ_HEADER_PREFIX) and k not in _SIGNATURE]
    dead = letter.letter
    if dead is not None and dead.original_principal and dead.original_signature:
        kept += [
            (PRINCIPAL_HEADER, dead.original_principal.encode()),
            (SIGNATURE_HEADER, dead.original_signature.encode()),
        ]
    return kept


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
                await producer.send_and_wait(
                    letter.original_topic, letter.value, key=letter.key, headers=headers
                )
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
