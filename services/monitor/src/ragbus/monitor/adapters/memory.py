"""The EventStore in memory: for tests and for trying the stack without a database.

It keeps the PostgreSQL adapter's observable rules (the shared contract tests run against both): one
row per event id and per dead-letter id, records read back equal to what was written, the same
ordering, values PostgreSQL cannot store refused as poison, and the summary computed by
`domain.summarize`, the Python twin of the `request_summary` view.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from uuid import UUID

from ragbus.common.errors import DependencyUnavailable, PoisonMessage
from ragbus.monitor.domain import (
    FEEDBACK,
    INDEXED,
    OUTCOMES,
    SUBMITTED,
    finished,
    has_nul,
    matches,
    rated_request,
    summarize,
)
from ragbus.monitor.ports import (
    DeadLetterRecord,
    EventIdReused,
    EventRecord,
    RatedRequest,
    RequestQuery,
    RequestSummary,
)


def _reused(stored: EventRecord, new: EventRecord) -> bool:
    return stored.digest is not None and new.digest is not None and stored.digest != new.digest


class InMemoryEventStore:
    def __init__(self) -> None:
        self._events: dict[UUID, EventRecord] = {}
        self._letters: dict[UUID, tuple[datetime, DeadLetterRecord]] = {}
        self._closed = False
        self.erased: dict[UUID, datetime] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise DependencyUnavailable("the in-memory event store is closed")

    @staticmethod
    def _check_storable(record: EventRecord | DeadLetterRecord) -> None:
        values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name != "body"}
        if has_nul(values):
            raise PoisonMessage("PostgreSQL cannot store this record: it contains U+0000")

    async def record_event(self, record: EventRecord) -> bool:
        self._check_open()
        self._check_storable(record)
        if (stored := self._events.get(record.event_id)) is not None:
            if _reused(stored, record):
                raise EventIdReused(record)
            return False
        self._events[record.event_id] = copy.deepcopy(record)  # like a row: later edits don't leak in
        return True

    async def record_dead_letter(self, record: DeadLetterRecord) -> bool:
        self._check_open()
        self._check_storable(record)
        if record.id in self._letters:
            return False
        self._letters[record.id] = (datetime.now(UTC), copy.deepcopy(record))
        return True

    async def record_batch(
        self, events: Sequence[EventRecord], letters: Sequence[DeadLetterRecord]
    ) -> list[int]:
        self._check_open()
        records: list[EventRecord | DeadLetterRecord] = [*events, *letters]
        for record in records:  # all or nothing, like the transaction
            self._check_storable(record)
        reused = []
        for i, event in enumerate(events):
            try:
                await self.record_event(event)
            except EventIdReused:
                reused.append(i)
        for letter in letters:
            await self.record_dead_letter(letter)
        return reused

    async def event(self, event_id: UUID) -> EventRecord | None:
        self._check_open()
        record = self._events.get(event_id)
        return copy.deepcopy(record) if record else None

    async def events(self, tenant: str, correlation_id: str) -> list[EventRecord]:
        self._check_open()
        found = [e for e in self._events.values() if (e.tenant, e.correlation_id) == (tenant, correlation_id)]
        return copy.deepcopy(sorted(found, key=lambda e: (e.event_time, e.event_id)))

    async def dead_letters(self, dlq_topic: str) -> list[DeadLetterRecord]:
        self._check_open()
        found = sorted((at, r.id, r) for at, r in self._letters.values() if r.dlq_topic == dlq_topic)
        return copy.deepcopy([r for _, _, r in found])

    async def request_summary(self, tenant: str, correlation_id: str) -> RequestSummary | None:
        return summarize(await self.events(tenant, correlation_id), self._indexed(tenant))

    def _indexed(self, tenant: str) -> list[EventRecord]:
        return [e for e in self._events.values() if e.type == INDEXED and e.tenant == tenant]

    async def unfinished(self, since: datetime, limit: int) -> list[EventRecord]:
        self._check_open()
        failed = {(r.tenant, r.correlation_id) for _, r in self._letters.values()}
        found = []
        for e in sorted(self._events.values(), key=lambda e: (e.event_time, e.event_id)):
            if e.type not in OUTCOMES or e.causation_id is not None or e.event_time < since:
                continue
            flow = [
                o
                for o in self._events.values()
                if (o.tenant, o.correlation_id) == (e.tenant, e.correlation_id)
            ]
            if not finished(e, flow, dead_lettered=(e.tenant, e.correlation_id) in failed):
                found.append(e)
        return copy.deepcopy(found[:limit])

    async def known_queries(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        self._check_open()
        wanted = set(keys)
        on_record = {(e.tenant, e.data.get("query_id")) for e in self._events.values() if e.type == SUBMITTED}
        return {key for key in wanted if key in on_record}

    async def ping(self) -> None:
        self._check_open()

    async def aclose(self) -> None:
        self._closed = True

    async def find_requests(self, query: RequestQuery) -> list[RequestSummary]:
        self._check_open()
        flows: dict[tuple[str, str], list[EventRecord]] = {}
        for e in self._events.values():
            flows.setdefault((e.tenant, e.correlation_id), []).append(e)
        found = []
        for (tenant, _), flow in flows.items():
            if query.tenant is not None and tenant != query.tenant:
                continue
            summary = summarize(copy.deepcopy(flow), self._indexed(tenant))
            if summary is not None and matches(summary, query):
                found.append(summary if query.sources else dataclasses.replace(summary, sources=[]))
        found.sort(key=lambda s: (s.tenant, s.correlation_id))
        found.sort(key=lambda s: s.submitted_at, reverse=True)  # stable: ties keep the order above
        return found[: query.limit] if query.limit is not None else found

    async def rated_requests(self, since: datetime, tenant: str | None = None) -> list[RatedRequest]:
        self._check_open()
        events = [e for e in self._events.values() if tenant is None or e.tenant == tenant]
        found = [r for r in rated_request_rows(events, self.erased) if r.submitted_at >= since]
        return copy.deepcopy(sorted(found, key=lambda r: (r.submitted_at, r.correlation_id)))

    # What a redaction leaves on a row (`events.erased_at`): the in-memory twin of the column, for the
    # contract tests of what reads must leave out.
    def mark_erased(self, event_id: UUID, at: datetime | None = None) -> None:
        self.erased[event_id] = at or datetime.now(UTC)


def rated_request_rows(events: Sequence[EventRecord], erased: Mapping[UUID, datetime]) -> list[RatedRequest]:
    """`EventStore.rated_requests` over a list of events (no `since` filter, unsorted)."""
    ratings: dict[tuple[str, str], list[EventRecord]] = {}
    flows: dict[tuple[str, str], list[EventRecord]] = {}
    for e in events:
        flows.setdefault((e.tenant, e.correlation_id), []).append(e)
        if e.type == FEEDBACK and isinstance(e.data.get("query_id"), str):
            ratings.setdefault((e.tenant, e.data["query_id"]), []).append(e)
    submissions: dict[tuple[str, str], list[EventRecord]] = {}
    for e in events:
        if e.type == SUBMITTED and isinstance(e.data.get("query_id"), str):
            submissions.setdefault((e.tenant, e.data["query_id"]), []).append(e)
    out = []
    for key, rated in ratings.items():
        if key not in submissions:
            continue
        s = min(submissions[key], key=lambda r: (r.event_time, r.event_id))
        out.append(rated_request(s, flows[(s.tenant, s.correlation_id)], rated, erased))
    return out
