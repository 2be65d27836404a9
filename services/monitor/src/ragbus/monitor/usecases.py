"""The monitor use case: a batch of records in, stored once each, the poison ones handed back.

No Kafka here: `app.py` hands each fetched batch in and dead-letters what comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragbus.common.errors import PoisonMessage
from ragbus.common.topics import Topics
from ragbus.monitor.domain import RawMessage, split_batch
from ragbus.monitor.ports import EventStore


@dataclass(frozen=True, slots=True)
class MonitorDeps:
    store: EventStore


async def record_batch(
    deps: MonitorDeps, records: Sequence[Any], topics: Topics
) -> list[tuple[Any, PoisonMessage]]:
    """Store a batch of Kafka records (aiokafka `ConsumerRecord`s); return the poison ones and why, in
    order, for the caller to dead-letter.

    The batch goes in one transaction. Should the database refuse a row (one bad value aborts the
    transaction), every row is written on its own to tell the refused ones apart; redeliveries stay
    no-ops, so rows of the failed attempt are not doubled. While the database is down the store
    raises DependencyUnavailable and nothing is stored.
    """
    batch = split_batch([RawMessage.from_record(r) for r in records], topics)
    poison = list(batch.poison)
    try:
        await deps.store.record_batch([r for _, r in batch.events], [r for _, r in batch.letters])
    except PoisonMessage:
        for i, event in batch.events:
            try:
                await deps.store.record_event(event)
            except PoisonMessage as exc:
                poison.append((i, exc))
        for i, letter in batch.letters:
            try:
                await deps.store.record_dead_letter(letter)
            except PoisonMessage as exc:
                poison.append((i, exc))
    return [(records[i], exc) for i, exc in sorted(poison, key=lambda p: p[0])]
