"""The monitor use cases: a batch of records in, stored once each; the poison ones handed back, and the
events to publish (a `feedback.recorded` for each stored `feedback.submitted`). And the journal: the
submissions on record whose flow has no outcome, published again (`redrive`).

No Kafka here: `app.py` hands each fetched batch in, dead-letters the poison records and publishes the
events that come back.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ragbus.common.envelope import Envelope, parse_event
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import FeedbackRecorded, FeedbackSubmitted
from ragbus.common.topics import Topics
from ragbus.common.trust import Trust
from ragbus.monitor import retention
from ragbus.monitor.domain import (
    FEEDBACK,
    Batch,
    RawMessage,
    feedback_key,
    feedback_recorded,
    redact_record,
    resubmission,
    split_batch,
)
from ragbus.monitor.ports import EventIdReused, EventRecord, EventStore, PersonalData, RetentionStore


@dataclass(frozen=True, slots=True)
class MonitorDeps:
    store: EventStore
    personal_data: PersonalData | None = None
    redact_pii: frozenset[str] = frozenset()  # tenants whose rows are stored redacted; `*`: all
    retention: RetentionStore | None = None  # where the retention policy purges (None: nowhere)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What storing a batch leaves to the handler."""

    poison: list[tuple[Any, PoisonMessage]]  # records to dead-letter, and why, in batch order
    events: list[Envelope[FeedbackRecorded]]  # to publish: one per feedback event stored


async def record_batch(
    deps: MonitorDeps, records: Sequence[Any], topics: Topics, trust: Trust | None = None
) -> Recorded:
    """Store a batch of Kafka records (aiokafka `ConsumerRecord`s); return the poison ones and why, in
    order, for the caller to dead-letter, and a `feedback.recorded` event for each feedback stored.

    The batch goes in one transaction. Should the database refuse a row (one bad value aborts the
    transaction), every row is written on its own to tell the refused ones apart; redeliveries stay
    no-ops, so rows of the failed attempt are not doubled. While the database is down the store
    raises DependencyUnavailable and nothing is stored.

    An event whose id is on record for different content is not a redelivery. A request or document
    (an event nothing caused) under a reused id is poison: dead-lettered with the reason, so it is on
    record rather than silently dropped. A follow-up under a reused id is a cause processed twice whose
    output differed the second time (a model's answer after a restart): the first stays, as the
    answer the requester was sent first.
    """
    messages = [RawMessage.from_record(r) for r in records]
    batch = split_batch(messages, topics, trust)
    if deps.personal_data is not None and deps.redact_pii:
        batch = _redacted(batch, deps.personal_data, deps.redact_pii)
    poison = list(batch.poison)
    try:
        reused = await deps.store.record_batch([r for _, r in batch.events], [r for _, r in batch.letters])
        poison.extend(
            (i, EventIdReused(event)) for i, event in (batch.events[n] for n in reused) if _is_root(event)
        )
    except PoisonMessage:
        for i, event in batch.events:
            try:
                await deps.store.record_event(event)
            except EventIdReused as exc:
                if _is_root(event):
                    poison.append((i, exc))
            except PoisonMessage as exc:
                poison.append((i, exc))
        for i, letter in batch.letters:
            try:
                await deps.store.record_dead_letter(letter)
            except PoisonMessage as exc:
                poison.append((i, exc))
    refused = {i for i, _ in poison}
    feedback = [
        parse_event(messages[i].value)
        for i, event in batch.events
        if event.type == FEEDBACK and i not in refused
    ]
    return Recorded(
        poison=[(records[i], exc) for i, exc in sorted(poison, key=lambda p: p[0])],
        events=await feedback_replies(deps, feedback),
    )


def _is_root(event: EventRecord) -> bool:
    return event.causation_id is None


async def feedback_replies(
    deps: MonitorDeps, feedback: Sequence[Envelope[FeedbackSubmitted]]
) -> list[Envelope[FeedbackRecorded]]:
    """Whether each stored feedback names a question on record, in one look-up for the whole batch.

    It runs after the batch is stored, so a question earlier in the same batch counts (and so does one
    later in it: a fetch may interleave the topics). A batch without feedback costs no query.
    """
    if not feedback:
        return []
    known = await deps.store.known_queries({feedback_key(e) for e in feedback})
    return [feedback_recorded(e, known=feedback_key(e) in known) for e in feedback]


# --- the journal ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Redriven:
    """What `redrive` found and did."""

    published: list[EventRecord] = field(default_factory=list)  # or, in a dry run, would have been
    unreadable: list[tuple[EventRecord, str]] = field(default_factory=list)  # no longer parse; left alone

    def counts(self) -> dict[str, int]:
        """Submissions re-driven by topic name (`queries.submitted.v1`: 3), in the order first met."""
        return dict(Counter(r.type.removeprefix("io.ragbus.") for r in self.published))


async def redrive(
    store: EventStore,
    publish: Callable[[Envelope[Any]], Awaitable[None]],
    *,
    since: datetime,
    limit: int,
    dry_run: bool = False,
) -> Redriven:
    """Publish again, oldest first, every submission since `since` whose flow has no outcome on record.

    Safe to run at any time: the event goes out as it was (same id, tenant and data), so where its
    first copy is still on the bus every consumer takes the second for a redelivery. It is the way back
    after a broker lost its log: the record outlives it.
    """
    result = Redriven()
    for record in await store.unfinished(since, limit):
        try:
            event = resubmission(record)
        except ValueError as exc:
            result.unreadable.append((record, str(exc).splitlines()[0]))
            continue
        if not dry_run:
            await publish(event)
        result.published.append(record)
    return result


def _redacted(batch: Batch, personal: PersonalData, tenants: frozenset[str]) -> Batch:
    """The batch with the events of the tenants whose policy says so redacted (their dead letters'
    bodies are raw bytes, kept as they are: `ragbus audit erase` removes them)."""
    events = [
        (i, redact_record(r, personal.redact) if "*" in tenants or r.tenant in tenants else r)
        for i, r in batch.events
    ]
    return dataclasses.replace(batch, events=events)


async def apply_retention(
    store: RetentionStore,
    rules: Sequence[retention.Rule],
    now: datetime,
    *,
    key: bytes | None = None,
    dry_run: bool = False,
) -> list[tuple[retention.Cutoff, int]]:
    """Delete what the retention rules no longer keep, as of `now` (with `dry_run`, count it): each
    cutoff and its rows. `ragbus audit purge` runs it, and the monitor every `purge_interval_s`."""
    done = []
    for cutoff in retention.cutoffs(rules, await store.tenants_and_types(), now):
        if dry_run:
            n = await store.count_before(cutoff.tenant, cutoff.event_type, cutoff.before)
        else:
            n = len(await store.purge(cutoff.tenant, cutoff.event_type, cutoff.before, key=key))
        done.append((cutoff, n))
    return done


async def purge_expired(deps: MonitorDeps, rules: Sequence[retention.Rule], key: bytes | None) -> int:
    """The monitor's scheduled purge: `apply_retention` now; the rows deleted."""
    if deps.retention is None or not rules:
        return 0
    done = await apply_retention(deps.retention, rules, datetime.now(UTC), key=key)
    return sum(n for _, n in done)
