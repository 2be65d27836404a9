"""What the monitor records, made from raw Kafka records: pure functions, no Kafka, no database.

- `event_record`: a message from a normal topic, which must be a valid ragbus event of that topic's
  type (else it is poison and the shared middleware dead-letters it).
- `dead_letter_record`: a message from a `<topic>.dlq` topic, whose body may be anything; never raises.
- `summarize`: the `request_summary` row of one query (its story too), the same rule the SQL view
  applies; `matches`: whether a row is one `EventStore.find_requests` returns.
- `feedback_recorded`: what the monitor answers a stored `feedback.submitted` event with.
- `finished` and `resubmission`: the journal's rules, which submissions have no outcome on record and
  the event to publish again for one (`usecases.redrive`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pydantic

from ragbus.common import safejson
from ragbus.common.envelope import Envelope, EnvelopeAttributes, parse_event
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import (
    DLQ_HEADER_PREFIX,
    AnswersCompleted,
    AnswersDrafted,
    DeadLetter,
    DocsDeleted,
    DocsIndexed,
    DocsSubmitted,
    FeedbackRecorded,
    FeedbackSubmitted,
    QueriesAccepted,
    QueriesRejected,
    QueriesSubmitted,
)
from ragbus.common.headers import header_text
from ragbus.common.ids import record_id
from ragbus.common.topics import DLQ_SUFFIX, Topics
from ragbus.common.trust import Trust
from ragbus.monitor.ports import DeadLetterRecord, EventRecord, RatedRequest, RequestQuery, RequestSummary

SUBMITTED = QueriesSubmitted.event_type()
DRAFTED = AnswersDrafted.event_type()
COMPLETED = AnswersCompleted.event_type()
FEEDBACK = FeedbackSubmitted.event_type()
ACCEPTED = QueriesAccepted.event_type()
REJECTED = QueriesRejected.event_type()
INDEXED = DocsIndexed.event_type()
SOURCE = "ragbus/monitor"

# The flows a user or an app starts, and the events that end each. A flow is finished once an outcome
# with its tenant and correlation id is on record for every part (a document indexed in several parts
# says `part`/`parts`), or once any of its events is a dead letter (it failed for good; `ragbus dlq`).
# Feedback shares its question's correlation id, so its outcome must also name it as the cause.
OUTCOMES: Mapping[str, frozenset[str]] = {
    SUBMITTED: frozenset({COMPLETED, QueriesRejected.event_type()}),
    DocsSubmitted.event_type(): frozenset({DocsIndexed.event_type()}),
    DocsDeleted.event_type(): frozenset({DocsIndexed.event_type()}),
    FEEDBACK: frozenset({FeedbackRecorded.event_type()}),
}

# W3C trace context: version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One Kafka record as the monitor received it."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timestamp_ms: int | None = None

    @property
    def is_dead_letter(self) -> bool:
        return self.topic.endswith(DLQ_SUFFIX)

    @classmethod
    def from_record(cls, record: Any) -> RawMessage:
        """From an aiokafka `ConsumerRecord` (headers are bytes; ragbus' are text)."""
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            value=record.value or b"",
            key=record.key,
            headers={k: header_text(v) for k, v in record.headers or ()},
            timestamp_ms=record.timestamp,
        )


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The trace id of a W3C `traceparent` header, or None if absent or malformed."""
    match = _TRACEPARENT.match(headers.get("traceparent", "").strip().lower())
    if match is None or match.group(1) == "0" * 32:  # all zeros is the spec's "invalid"
        return None
    return match.group(1)


def _text(raw: bytes | None) -> str | None:
    # Kafka keys are bytes; ragbus' are `tenant:id` text. Anything else stays readable and distinct.
    return raw.decode("utf-8", "backslashreplace") if raw else None


def _kafka_time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None and ms >= 0 else None


def has_nul(value: Any) -> bool:
    """Whether a value (nested in dicts and lists) holds U+0000, which PostgreSQL text cannot."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def event_record(msg: RawMessage, topics: Topics, trust: Trust | None = None) -> EventRecord:
    """The `events` row of a message from a normal topic.

    Raises PoisonMessage when the body is not a valid ragbus event of the topic's type, or `trust`
    does not admit it (its key, and when enforced its signature; ragbus.common.trust).
    """
    try:
        raw = safejson.loads(msg.value)  # a body nested too deep is a ValueError, not a RecursionError
        event = parse_event(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and ValidationError are ValueErrors
        raise PoisonMessage(f"not a valid ragbus event: {exc}") from exc
    # The type against the topic, the key against the tenant, the signature: on the event parsed once.
    (trust or Trust(prefix=topics.prefix)).admit(msg.topic, msg.key, msg.value, msg.headers, event)
    # PostgreSQL's text and jsonb cannot hold U+0000. Refusing the event keeps its bytes intact in
    # `dead_letters`, rather than storing an altered copy in `events`.
    if has_nul(raw):
        raise PoisonMessage("the event contains U+0000, which PostgreSQL text and jsonb cannot store")
    return EventRecord(
        event_id=event.id,
        topic=msg.topic,
        type=event.type,
        source=event.source,
        subject=event.subject,
        tenant=event.tenantid,
        correlation_id=event.correlationid,
        causation_id=event.causationid,
        event_time=event.time,
        kafka_partition=msg.partition,
        kafka_offset=msg.offset,
        kafka_key=_text(msg.key),
        kafka_timestamp=_kafka_time(msg.timestamp_ms),
        trace_id=trace_id_of(msg.headers),
        # As published, not as re-serialised by this version's models: fields added by newer
        # producers are kept.
        data=raw["data"],
        digest=event.digest,
    )


@dataclass(slots=True)
class Batch:
    """What a batch of records becomes: rows to store, and the records that are poison (and why).

    Each row keeps the index of its record in the batch, so a row the database refuses can be traced
    back to the record to dead-letter.
    """

    events: list[tuple[int, EventRecord]] = field(default_factory=list)
    letters: list[tuple[int, DeadLetterRecord]] = field(default_factory=list)
    poison: list[tuple[int, PoisonMessage]] = field(default_factory=list)


def split_batch(messages: Iterable[RawMessage], topics: Topics, trust: Trust | None = None) -> Batch:
    """Rows for every message that makes one; a message that is no valid event is poison, not fatal.

    With `trust`, a message must also be admitted by it (its key, and when enforced its signature):
    an event that is not is poison (never stored as a fact); a dead letter that is not is stored all
    the same, as evidence, its reason saying it is not from a trusted service.
    """
    trust = trust or Trust(prefix=topics.prefix)
    batch = Batch()
    for i, msg in enumerate(messages):
        if msg.is_dead_letter:
            try:
                trust.admit(msg.topic, msg.key, msg.value, msg.headers)
                refused = None
            except PoisonMessage as exc:
                refused = str(exc)
            batch.letters.append((i, dead_letter_record(msg, refused=refused)))
            continue
        try:
            batch.events.append((i, event_record(msg, topics, trust)))
        except PoisonMessage as exc:
            batch.poison.append((i, exc))
    return batch


def _scrub(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # ragbus writes UTC; assume it


def _dead_letter_fields(headers: Mapping[str, str]) -> dict[str, Any]:
    """The `x-ragbus-dlq-*` headers, validated when complete, else whatever parses of them."""
    try:
        fields = DeadLetter.from_headers(dict(headers)).model_dump()
        fields["failed_at"] = _utc(fields["failed_at"])
        return fields
    except pydantic.ValidationError:
        pass
    # A hand-made or foreign dead letter: keep each field that makes sense on its own.
    raw = {
        k.removeprefix(DLQ_HEADER_PREFIX).replace("-", "_"): v
        for k, v in headers.items()
        if k.startswith(DLQ_HEADER_PREFIX)
    }
    out: dict[str, Any] = {
        k: raw.get(k) or None for k in ("original_topic", "service", "error_type", "reason")
    }
    for name in ("partition", "offset", "attempts"):
        try:
            out[name] = int(raw[name])
        except (KeyError, ValueError):
            out[name] = None
    try:
        out["failed_at"] = _utc(datetime.fromisoformat(raw["failed_at"]))
    except (KeyError, ValueError):
        out["failed_at"] = None
    return out


def dead_letter_record(msg: RawMessage, *, refused: str | None = None) -> DeadLetterRecord:
    """The `dead_letters` row of a message from a `.dlq` topic. Never raises: any bytes are kept.

    `refused`: why trust did not admit it (unsigned, another principal's...), put before its reason.
    """
    f = _dead_letter_fields(msg.headers)
    if refused:
        f["reason"] = f"[not from a trusted service: {refused}] {f['reason'] or 'no reason given'}"
    attrs = EnvelopeAttributes.peek(msg.value)
    original_topic = f["original_topic"] or msg.topic.removesuffix(DLQ_SUFFIX)
    digest = hashlib.sha256(msg.value).hexdigest()
    if f["partition"] is not None and f["offset"] is not None:
        # Where it failed and who gave up on it: the same dead letter delivered twice is one row, while
        # two services failing on one message are two facts. The body's hash keeps apart different
        # messages at the same offset (a broker without persistent storage restarts at offset 0).
        letter_id = record_id(
            "dead-letter", original_topic, str(f["partition"]), str(f["offset"]), f["service"] or "", digest
        )
    else:
        letter_id = record_id("dead-letter@dlq", msg.topic, str(msg.partition), str(msg.offset), digest)
    return DeadLetterRecord(
        id=letter_id,
        dlq_topic=msg.topic,
        original_topic=_scrub(original_topic),
        original_partition=f["partition"],
        original_offset=f["offset"],
        service=_scrub(f["service"]) if f["service"] else None,
        error_type=_scrub(f["error_type"]) if f["error_type"] else None,
        reason=_scrub(f["reason"] or "no reason given (the message has no x-ragbus-dlq-reason header)"),
        attempts=f["attempts"],
        failed_at=f["failed_at"],
        event_id=attrs.id if attrs else None,
        tenant=_scrub(attrs.tenantid) if attrs else None,
        correlation_id=_scrub(attrs.correlationid) if attrs else None,
        kafka_partition=msg.partition,
        kafka_offset=msg.offset,
        kafka_key=_scrub(_text(msg.key) or "") or None,
        kafka_timestamp=_kafka_time(msg.timestamp_ms),
        trace_id=trace_id_of(msg.headers),
        headers={_scrub(k): _scrub(v) for k, v in msg.headers.items()},
        body=msg.value,
    )


# --- request_summary ---------------------------------------------------------------------------------


def _first(records: Iterable[EventRecord]) -> EventRecord | None:
    return min(records, key=lambda r: (r.event_time, r.event_id), default=None)


def _last(records: Iterable[EventRecord]) -> EventRecord | None:
    return max(records, key=lambda r: (r.event_time, r.event_id), default=None)


def _sources(
    drafted: Mapping[str, Any],
    completed: Mapping[str, Any],
    read_at: datetime | None,
    tenant: str,
    indexed: Sequence[EventRecord],
) -> list[dict[str, Any]]:
    """What the request read, ranked, each with the citation number that cites it and its document's
    version (the latest `docs.indexed` part listing the chunk, indexed before the answer was drafted)."""
    cited = completed.get("citations") or drafted.get("citations") or []
    listed = drafted.get("retrieved") or completed.get("retrieved") or cited
    out = []
    for rank, x in enumerate(listed, start=1):
        chunk = x.get("chunk_id")
        numbers = [int(c["n"]) for c in cited if c.get("chunk_id") == chunk and c.get("n") is not None]
        versions = [
            v
            for v in indexed
            if v.tenant == tenant
            and read_at is not None
            and v.event_time <= read_at
            and v.data.get("doc_id") == x.get("doc_id")
            and chunk in (v.data.get("chunk_ids") or [])
        ]
        version = _last(versions)
        out.append(
            {
                "rank": rank,
                "doc_id": x.get("doc_id"),
                "chunk_id": chunk,
                "title": x.get("title"),
                "score": x.get("score"),
                "cited": min(numbers, default=None),
                "version": version.data.get("version") if version else None,
            }
        )
    return out


def _answering(attempts: Sequence[Mapping[str, Any]], tier: int | None) -> Mapping[str, Any] | None:
    """The attempt at the tier that answered: the accepted one, else the last one at that tier."""
    at_tier = [(bool(a.get("accepted")), i, a) for i, a in enumerate(attempts) if a.get("tier") == tier]
    return max(at_tier, key=lambda t: (t[0], t[1]))[2] if tier is not None and at_tier else None


def summarize(events: Iterable[EventRecord], indexed: Iterable[EventRecord] = ()) -> RequestSummary | None:
    """The `request_summary` row of one query's events (one tenant, one correlation id).

    Mirrors the view in migrations/0003_request_summary.sql and 0007_request_story.sql: the first
    submission starts the clock, the latest draft and completion are the outcome; None when the query
    was never submitted. `indexed`: the tenant's `docs.indexed` events, for the versions of the documents
    read (none given: no versions).
    """
    events = list(events)
    s = _first(e for e in events if e.type == SUBMITTED)
    if s is None:
        return None
    g = _last(e for e in events if e.type in (ACCEPTED, REJECTED))
    d = _last(e for e in events if e.type == DRAFTED)
    c = _last(e for e in events if e.type == COMPLETED)
    f = _last(e for e in events if e.type == FEEDBACK)
    done = c.data if c else {}
    draft = d.data if d else {}
    guard = g.data if g else {}
    cascade = done.get("cascade") or draft.get("cascade")
    tried = list(cascade.get("attempts") or []) if cascade else []
    attempts = [a for a in tried if isinstance(a, Mapping)]
    tier = int(cascade["tier"]) if cascade and cascade.get("tier") is not None else None
    answering = _answering(attempts, tier)
    traced = _first(e for e in events if e.trace_id is not None)
    read_at = d.event_time if d else c.event_time if c else None
    return RequestSummary(
        tenant=s.tenant,
        correlation_id=s.correlation_id,
        query_id=s.data.get("query_id"),
        conversation_id=s.data.get("conversation_id"),
        user_id=s.data.get("user_id"),
        question=s.data.get("question"),
        status=done.get("status") or "pending",
        answer=done.get("answer"),
        status_reason=done.get("reason"),
        tier=tier,
        escalation_reason=cascade.get("reason") if cascade else None,
        verdicts=list(done.get("verdicts") or []),
        citations=len(done.get("citations") or []),
        prompt_tokens=sum(int(a.get("prompt_tokens") or 0) for a in attempts),
        completion_tokens=sum(int(a.get("completion_tokens") or 0) for a in attempts),
        cost_usd=sum(float(a.get("cost_usd") or 0.0) for a in attempts),
        submitted_at=s.event_time,
        completed_at=c.event_time if c else None,
        latency_ms=(c.event_time - s.event_time).total_seconds() * 1000 if c else None,
        question_redacted=guard["question"] if guard.get("question") is not None else done.get("question"),
        input_verdicts=list(guard.get("verdicts") or []),
        model=answering.get("name") if answering else None,
        prompt_version=answering.get("prompt") if answering else None,
        attempts=tried,
        cached_from=(cascade.get("cache") or {}).get("query_id") if cascade else None,
        stages=list(done.get("stages") or draft.get("stages") or guard.get("stages") or []),
        trace_id=s.trace_id or (traced.trace_id if traced else None),
        rating=f.data.get("rating") if f else None,
        feedback_comment=f.data.get("comment") if f else None,
        sources=_sources(draft, done, read_at, s.tenant, [e for e in indexed if e.type == INDEXED]),
    )


def matches(summary: RequestSummary, query: RequestQuery) -> bool:
    """Whether a request is one `query` asks for (the rule `EventStore.find_requests` applies)."""
    q = query
    return (
        (q.tenant is None or summary.tenant == q.tenant)
        and (q.user_id is None or summary.user_id == q.user_id)
        and (q.since is None or summary.submitted_at >= q.since)
        and (q.until is None or summary.submitted_at < q.until)
        and (q.status is None or summary.status == q.status)
        and (q.model is None or summary.model == q.model)
        and (q.request_id is None or q.request_id in (summary.query_id, summary.correlation_id))
    )


# --- feedback ----------------------------------------------------------------------------------------


def feedback_key(event: Envelope[FeedbackSubmitted]) -> tuple[str, str]:
    """The (tenant, query id) a feedback event rates."""
    return event.tenantid, event.data.query_id


def feedback_recorded(event: Envelope[FeedbackSubmitted], *, known: bool) -> Envelope[FeedbackRecorded]:
    """The reply to a stored feedback event (deterministic id: a redelivered batch repeats it exactly)."""
    data = FeedbackRecorded(
        query_id=event.data.query_id,
        conversation_id=event.data.conversation_id,
        rating=event.data.rating,
        known=known,
    )
    return event.follow(data, source=SOURCE)


# --- the journal ---------------------------------------------------------------------------------------


def _part(data: Mapping[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def finished(submission: EventRecord, flow: Sequence[EventRecord], *, dead_lettered: bool) -> bool:
    """Whether a submission's flow (the events of its tenant and correlation id) has its outcome on
    record: the rule `EventStore.unfinished` applies, in Python (the in-memory store, and tests)."""
    if dead_lettered:
        return True
    wanted = OUTCOMES.get(submission.type, frozenset())
    ends = [
        e
        for e in flow
        if e.type in wanted and (submission.type != FEEDBACK or e.causation_id == submission.event_id)
    ]
    if not ends:
        return False
    parts = max(_part(e.data, "parts", 1) for e in ends)
    return len({_part(e.data, "part", 0) for e in ends}) >= parts


def resubmission(record: EventRecord) -> Envelope[Any]:
    """The event a submission's record was made from, to publish again: its id, source, time, tenant,
    correlation id and data as recorded, so every consumer takes it for a redelivery of the same event
    (deterministic follow-up ids, upserts) and the monitor stores no second row.

    Raises ValueError if the record no longer parses as an event of its type (a newer schema).
    """
    return parse_event(
        {
            "specversion": "1.0",
            "id": str(record.event_id),
            "source": record.source,
            "type": record.type,
            "time": record.event_time.isoformat(),
            "subject": record.subject,
            "tenantid": record.tenant,
            "correlationid": record.correlation_id,
            "data": record.data,
        }
    )


# --- rated requests (the dataset export's material) ------------------------------------------------------


def rated_request(
    submission: EventRecord,
    flow: Iterable[EventRecord],
    ratings: Iterable[EventRecord],
    erased: Mapping[Any, datetime],
) -> RatedRequest:
    """One row of `EventStore.rated_requests`: the first submission of a query, the events of its flow,
    its ratings (`feedback.submitted`), and the ids of erased events. The SQL twin is
    `adapters.postgres.rated_requests_sql`; the contract tests hold the two together."""
    flow, ratings = list(flow), list(ratings)
    d = _last(e for e in flow if e.type == DRAFTED)
    c = _last(e for e in flow if e.type == COMPLETED)
    f = _last(ratings)
    assert f is not None, "a rated request has a rating"
    done, draft = (c.data if c else {}), (d.data if d else {})

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    def first(*values: Any) -> str | None:  # SQL's COALESCE over `->>`: the first that is there
        return next((v for v in map(text, values) if v is not None), None)

    return RatedRequest(
        tenant=submission.tenant,
        correlation_id=submission.correlation_id,
        query_id=str(submission.data.get("query_id")),
        question=first(done.get("question"), draft.get("question"), submission.data.get("question")),
        status=first(done.get("status"), "pending") or "pending",
        answer=text(done.get("answer")),
        citations=list(done.get("citations") or []),
        retrieved=list(draft.get("retrieved") or []),
        rating=str(f.data.get("rating")),
        comment=text(f.data.get("comment")),
        correction=text(f.data.get("correction")),
        submitted_at=submission.event_time,
        rated_at=f.event_time,
        erased=any(e.event_id in erased for e in [*flow, *ratings]),
    )


# Fields of event data where people write (or a model writes about them) free text: what a tenant's
# `redact_pii` policy has stored redacted, at any depth (a citation's quote, a cached question).
FREE_TEXT = frozenset({"question", "answer", "text", "comment", "correction", "quote"})


def redact_record(record: EventRecord, redact_text: Callable[[str], str]) -> EventRecord:
    """The record with every free-text field of its data passed through `redact_text`."""

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, str):
            return redact_text(value) if key in FREE_TEXT else value
        if isinstance(value, Mapping):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        return value

    return dataclasses.replace(record, data=walk(record.data))
