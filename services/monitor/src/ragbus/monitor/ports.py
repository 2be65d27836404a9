"""The monitor's ports: where records go (PostgreSQL via asyncpg, and in memory for tests), the records
themselves, what retention needs of the record, and personal-data redaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from ragbus.common.errors import PoisonMessage


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A row of `events`."""

    event_id: UUID
    topic: str
    type: str
    source: str
    subject: str | None
    tenant: str
    correlation_id: str
    causation_id: UUID | None
    event_time: datetime
    kafka_partition: int
    kafka_offset: int
    kafka_key: str | None
    kafka_timestamp: datetime | None
    trace_id: str | None
    data: dict[str, Any]
    digest: bytes | None = None  # what the event says (Envelope.digest); None on rows stored before it


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A row of `dead_letters`."""

    id: UUID
    dlq_topic: str
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    service: str | None
    error_type: str | None
    reason: str
    attempts: int | None
    failed_at: datetime | None
    event_id: UUID | None
    tenant: str | None
    correlation_id: str | None
    kafka_partition: int
    kafka_offset: int
    kafka_key: str | None
    kafka_timestamp: datetime | None
    trace_id: str | None
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """A row of the `request_summary` view: one query, from question to final answer."""

    tenant: str
    correlation_id: str
    query_id: str | None
    conversation_id: str | None
    user_id: str | None
    question: str | None
    status: str  # answered | blocked | failed | pending (no final answer yet)
    answer: str | None
    status_reason: str | None  # why it was blocked or failed
    tier: int | None
    escalation_reason: str | None  # why the cascade stopped at `tier`
    verdicts: list[dict[str, Any]]
    citations: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    submitted_at: datetime
    completed_at: datetime | None
    latency_ms: float | None
    # The request's story (migrations/0007_request_story.sql).
    question_redacted: str | None = None  # as the input guard passed it on (redacted per tenant policy)
    input_verdicts: list[dict[str, Any]] = field(default_factory=list)  # the input guard's
    model: str | None = None  # the name of the attempt at `tier` (`extractive` or the chat model)
    prompt_version: str | None = None  # its prompt template, `name@version`
    attempts: list[dict[str, Any]] = field(default_factory=list)  # the tiers tried (TierAttempt), in order
    cached_from: str | None = None  # the earlier request whose answer the semantic cache gave
    stages: list[dict[str, Any]] = field(default_factory=list)  # StageTiming of every service, in order
    trace_id: str | None = None
    rating: str | None = None  # the latest feedback: up | down
    feedback_comment: str | None = None
    # The documents retrieved (else cited), best first: rank, doc_id, chunk_id, title, score, cited (the
    # citation number, if the answer cites it) and version (of the document, as indexed when it was read).
    sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """Which requests `EventStore.find_requests` returns: every filter given must hold."""

    tenant: str | None = None
    user_id: str | None = None
    since: datetime | None = None  # submitted at or after
    until: datetime | None = None  # submitted before
    status: str | None = None
    model: str | None = None
    request_id: str | None = None  # the query id or the correlation id
    limit: int | None = None  # the newest this many; None: all
    # With `sources` filled in: a version look-up per document read, the bulk of the cost of reading
    # many requests (`audit show` asks for them; lists and reports do without: `sources` left empty).
    sources: bool = False


class EventIdReused(PoisonMessage):
    """An event whose id is on record for different content: not a redelivery, another event."""

    def __init__(self, record: EventRecord) -> None:
        super().__init__(
            f"event id {record.event_id} is already on record for different content (another "
            f"{record.type.removeprefix('io.ragbus.')} under the same id): an event id names one event, "
            "so this one is kept as a dead letter, not stored as an event"
        )
        self.record = record


class EventStore(Protocol):
    """Stores events and dead letters, each exactly once however often it is delivered.

    Writes raise a retryable error while the store is unreachable (the caller waits and retries) and
    `PoisonMessage` for a record the store can never hold.
    """

    async def record_event(self, record: EventRecord) -> bool:
        """Store an event; False if one with its id and digest is already there (a redelivery).

        `EventIdReused` if its id is on record with another digest (the stored row is kept).
        """
        ...

    async def record_dead_letter(self, record: DeadLetterRecord) -> bool:
        """Store a dead letter; False if it is already there (a redelivery)."""
        ...

    async def record_batch(
        self, events: Sequence[EventRecord], letters: Sequence[DeadLetterRecord]
    ) -> list[int]:
        """Store events and dead letters in one transaction; those already there are skipped.

        Returns the positions in `events` of the events whose id was on record with another digest
        (earlier in this batch included): not stored, the first row is kept.
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

    async def unfinished(self, since: datetime, limit: int) -> list[EventRecord]:
        """The journal: submissions (the first event of a flow of a type in `domain.OUTCOMES`) with an
        event time at or after `since` whose flow is not `domain.finished`, oldest first, at most
        `limit`. What a broker that lost its log still owes its users (`usecases.redrive`)."""
        ...

    async def known_queries(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (tenant, query id) pairs name a question on record (a `queries.submitted`
        event with that `query_id` for that tenant): one look-up for the lot, however many."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (the health check)."""
        ...

    async def aclose(self) -> None: ...

    async def find_requests(self, query: RequestQuery) -> list[RequestSummary]:
        """The `request_summary` rows that match, newest submission first (then tenant, correlation id).
        What `ragbus audit list/show` and `ragbus report` read."""
        ...

    async def rated_requests(self, since: datetime, tenant: str | None = None) -> list[RatedRequest]:
        """Every query submitted at or after `since` (of `tenant`, or of all) that has feedback on
        record, joined to its outcome and its latest rating; oldest submission first (then correlation
        id). The material of a dataset export (`ragbus.monitor.export` selects from it)."""
        ...


class RetentionStore(Protocol):
    """What the retention policy needs of the record (PostgreSQL; the in-memory store keeps no history).
    Each purged row leaves an erasure record signed with `key`, so the audit chain still verifies."""

    async def tenants_and_types(self) -> list[tuple[str, str | None]]:
        """The (tenant, event type) pairs on record; type None: the tenant's dead letters."""
        ...

    async def count_before(self, tenant: str, event_type: str | None, before: datetime) -> int: ...

    async def purge(
        self, tenant: str, event_type: str | None, before: datetime, *, key: bytes | None = None
    ) -> Sequence[object]:
        """Delete the tenant's rows of that type older than `before`; one erasure record each."""
        ...


@dataclass(frozen=True, slots=True)
class RatedRequest:
    """A query with feedback, joined to its request: the question and the final answer, the chunks
    retrieved for it, and the latest rating (a user may change their mind: the last word counts)."""

    tenant: str
    correlation_id: str
    query_id: str
    # As the model was asked it (`answers.completed`, else `answers.drafted`: redacted where the
    # tenant's policy says), else as submitted.
    question: str | None
    status: str  # answered | blocked | failed | pending, as in request_summary
    answer: str | None  # the final answer (`answers.completed`), None while pending
    citations: list[dict[str, Any]]  # `answers.completed.citations`: [n] in the answer -> chunk
    retrieved: list[dict[str, Any]]  # `answers.drafted.retrieved`: the chunks, with their text
    rating: str  # up | down
    comment: str | None
    correction: str | None
    submitted_at: datetime
    rated_at: datetime
    # Some event of the request, or a rating of it, had personal data erased (`erased_at` set).
    erased: bool


class PersonalData(Protocol):
    """Finds personal data in text and replaces it (adapters: ragbus.shields' recognisers)."""

    def redact(self, text: str) -> str:
        """`text` with each piece of personal data replaced by `[REDACTED:<KIND>]`."""
        ...
