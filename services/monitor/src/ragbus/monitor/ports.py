"""The monitor's one port: where records go. Adapters: PostgreSQL (asyncpg) and in memory (tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from ragbus.monitor.domain import DeadLetterRecord, EventRecord, RequestSummary


class EventStore(Protocol):
    """Stores events and dead letters, each exactly once however often it is delivered.

    Writes raise a retryable error while the store is unreachable (the caller waits and retries) and
    `PoisonMessage` for a record the store can never hold.
    """

    async def record_event(self, record: EventRecord) -> bool:
        """Store an event; False if one with its id is already there (a redelivery)."""
        ...

    async def record_dead_letter(self, record: DeadLetterRecord) -> bool:
        """Store a dead letter; False if it is already there (a redelivery)."""
        ...

    async def record_batch(self, events: Sequence[EventRecord], letters: Sequence[DeadLetterRecord]) -> None:
        """Store events and dead letters in one transaction; those already there are skipped.

        All or nothing: `PoisonMessage` if any record cannot be stored, and then none is.
        """
        ...

    async def event(self, event_id: UUID) -> EventRecord | None:
        """One event by id."""
        ...

    async def events(self, tenant: str, correlation_id: str) -> list[EventRecord]:
        """The events of one request or document, oldest first (by event time, then id)."""
        ...

    async def dead_letters(self, dlq_topic: str) -> list[DeadLetterRecord]:
        """The dead letters read from one `.dlq` topic, in the order they were stored."""
        ...

    async def request_summary(self, tenant: str, correlation_id: str) -> RequestSummary | None:
        """The `request_summary` row of one query, or None if it was never submitted."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (the health check)."""
        ...

    async def aclose(self) -> None: ...
