"""What the gateway needs from the world: someone who answers questions (the stack, over the bus), a
store of API keys, the monitor's record of requests and a source of the requests' traces. The HTTP
layer sees only these, so its tests run against fakes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from ragbus.common.events import AnswersCompleted, AnswersDelta, DocsSubmitted, QueryOptions


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    key: str  # the whole secret key: shown once, never stored
    key_hash: str  # its SHA-256, hex: what is stored


# What a key may do, each scope a set of endpoints (403 for the others): `ask` chat completions and
# feedback, `ingest` the documents, `audit` the requests' stories and traces. A key has every scope
# unless made with fewer (`ragbus keys create --scope`); keys made before scopes existed have all.
Scope = Literal["ask", "ingest", "audit"]
SCOPES: tuple[Scope, ...] = ("ask", "ingest", "audit")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: everything but the secret."""

    key_id: str
    tenant: str
    name: str | None = None
    groups: tuple[str, ...] = ()
    rate_per_minute: int | None = None  # None: the gateway's default
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    scopes: tuple[Scope, ...] = SCOPES

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class Answered:
    answer: AnswersCompleted
    trace_id: str | None = None


@dataclass(frozen=True, slots=True)
class IndexedDocument:
    """What indexing did with a document (every part in), or with its deletion."""

    version: str
    chunks: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: bool = False
    duplicate_of: str | None = None


DocumentStatus = Literal["submitted", "indexed", "skipped", "failed", "deleted"]


@dataclass(frozen=True, slots=True)
class DocumentState:
    """A document submitted through the gateway, as far as the gateway has seen it go."""

    tenant: str
    doc_id: str
    status: DocumentStatus
    submission: str  # this submission's id: a later submission of the same document replaces it
    title: str | None = None
    version: str | None = None
    chunks: int | None = None
    unchanged: int | None = None
    removed: int | None = None
    duplicate_of: str | None = None
    reason: str | None = None
    submitted_at: datetime | None = None
    updated_at: datetime | None = None


# A request's story as the monitor's `request_summary` view has it (its columns: question, status, answer,
# tier, verdicts, tokens, cost, submitted_at, model, prompt_version, attempts, stages, trace_id, rating,
# sources with their document versions, ...), JSON-ready: times as ISO 8601 strings.
RequestStory = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """Which of a tenant's requests `RequestRecord.find` lists, newest first: every filter given holds."""

    since: datetime | None = None  # submitted at or after
    until: datetime | None = None  # submitted before
    status: str | None = None  # answered | blocked | failed | pending
    tier: int | None = None
    limit: int = 50


class AnswerTimeout(TimeoutError):
    """The stack did not answer within the gateway's time limit."""


class AnswerUnavailable(RuntimeError):
    """The stack refused or lost the request (a dead letter, the bus is down): the reason says why."""


class Answerer(Protocol):
    async def ask(
        self,
        tenant: str,
        question: str,
        *,
        conversation_id: str | None,
        groups: Sequence[str],
        options: QueryOptions,
        on_delta: Callable[[AnswersDelta], None] | None = None,
    ) -> Answered:
        """Publish the question for `tenant` and wait for its `answers.completed` (raises AnswerTimeout,
        AnswerUnavailable); `on_delta` gets the `answers.delta` pieces, in order, before it returns."""
        ...

    async def ingest(self, tenant: str, document: DocsSubmitted) -> IndexedDocument:
        """Publish a document for `tenant` and wait until it is indexed, every part (raises
        AnswerTimeout when the stack stalls, AnswerUnavailable when it refuses the document)."""
        ...

    async def delete(self, tenant: str, doc_id: str) -> IndexedDocument:
        """Publish the removal of a document of `tenant` and wait until it is out of the index."""
        ...

    async def feedback(self, tenant: str, query_id: str, rating: str, comment: str | None) -> bool:
        """Publish a rating of an answer for `tenant` and wait until the monitor has recorded it;
        True when a question with this id is on record for the tenant (raises AnswerTimeout,
        AnswerUnavailable)."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


class DocumentLog(Protocol):
    """The gateway's record of the documents it submitted, so `GET /v1/documents/{id}` can say where
    each one is (its own table: the monitor's record is the monitor's)."""

    async def submitted(self, tenant: str, doc_id: str, submission: str, title: str | None) -> DocumentState:
        """Record a (re)submission: status `submitted`, replacing what an earlier one left."""
        ...

    async def finished(self, state: DocumentState) -> None:
        """Record the outcome of `state.submission`; nothing if a later submission replaced it."""
        ...

    async def get(self, tenant: str, doc_id: str) -> DocumentState | None: ...

    async def list(self, tenant: str, *, limit: int = 200) -> list[DocumentState]:
        """The tenant's documents that are not deleted, the latest submitted first."""
        ...


class KeyStore(Protocol):
    async def create(
        self,
        new: NewKey,
        tenant: str,
        *,
        name: str | None = None,
        groups: Sequence[str] = (),
        rate_per_minute: int | None = None,
        scopes: Sequence[Scope] = SCOPES,
    ) -> ApiKey: ...

    async def find(self, key_hash: str) -> ApiKey | None:
        """The active (not revoked) key with this hash, if any."""
        ...

    async def list(self, tenant: str | None = None, *, include_revoked: bool = False) -> list[ApiKey]: ...

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key; False if no active key has this id."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


class RequestRecord(Protocol):
    """The monitor's record of requests, read only (the monitor writes it; the gateway shows it)."""

    async def story(self, tenant: str, request_id: str) -> RequestStory | None:
        """The request of `tenant` with this query id (or correlation id), with its sources; None when
        that tenant has none (another tenant's request is not found either)."""
        ...

    async def find(self, tenant: str, query: RequestFilter) -> list[RequestStory]:
        """The tenant's requests, newest first, without their sources."""
        ...


@dataclass(frozen=True, slots=True)
class TraceSpan:
    """One span of a request's trace, as a trace source has it (times in ns since the epoch)."""

    span_id: str
    parent_id: str | None
    name: str
    service: str | None
    start_ns: int
    end_ns: int
    kind: str = "INTERNAL"  # OpenTelemetry's span kinds: INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER
    status: str = "UNSET"  # UNSET, OK or ERROR
    attributes: dict[str, Any] = field(default_factory=dict)  # str, int, float, bool or a list of them


class TraceUnavailable(RuntimeError):
    """The trace source cannot answer now (the Jaeger query service is down or refused)."""


class TraceSource(Protocol):
    """Where a request's spans are: the local span file (the embedded stack), or Jaeger's query API
    (spans sent over OTLP). The monitor's record names each request's trace id; this reads its spans."""

    async def spans(self, trace_id: str) -> list[TraceSpan]:
        """The spans of the trace, by start; [] when none are recorded (yet: spans are exported in
        batches, every 500 ms). Raises TraceUnavailable when the source cannot be read."""
        ...

    def link(self, trace_id: str) -> str | None:
        """Where a person can open the trace (Jaeger's UI), if anywhere."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...
