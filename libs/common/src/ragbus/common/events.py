"""Event payloads: the `data` of each CloudEvent on the bus, one model per topic.

Rules (see ARCHITECTURE.md): past tense for facts; payloads are frozen; a compatible change only adds
optional fields (consumers ignore fields they do not know, so old readers keep working); an incompatible
change makes a new `.v2` topic and an upcast. `tests/snapshots/` holds the JSON Schema of every event and
a test fails when a change is not additive.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ragbus.common import topics

# Ids that travel in keys and payloads: printable, no separators that would break `tenant:id` keys.
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\s:\x00-\x1f]+$")]
# A list of strings is for sets a filter matches any item of, e.g. the groups that may read a document.
MetadataValue = str | int | float | bool | None | list[str]
# Access control: a document names the groups that may read it, a question the groups of its asker.
Group = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s\x00-\x1f]+$")]
GROUPS_DOC = (
    "the groups that may read the document; empty: everyone of the tenant. Retrieval returns its chunks "
    "only to a question whose asker is in one of them (`groups` of the question)"
)
ASKER_GROUPS_DOC = (
    "the asker's groups: retrieval sees the tenant's documents open to everyone and those shared with "
    "any of these groups, nothing else. As trusted as the event's producer (docs/trust.md)"
)


class EventData(BaseModel):
    """Base of every event payload."""

    # extra="ignore": a reader on an older version drops fields added since (additive evolution).
    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: ClassVar[str]

    @classmethod
    def event_type(cls) -> str:
        return topics.event_type(cls.topic)

    def partition_key(self, tenant: str) -> str:
        """Kafka key: order holds per document / per conversation, work spreads over partitions."""
        raise NotImplementedError

    def subject(self) -> str | None:
        """The CloudEvents `subject`: the document or request this event is about."""
        return None


class StageTiming(BaseModel):
    """How long one service spent on a request; the gaps between stages are time on the bus."""

    model_config = ConfigDict(frozen=True)

    stage: str
    service: str
    started_at: AwareDatetime
    finished_at: AwareDatetime

    @property
    def ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000


class Verdict(BaseModel):
    """The outcome of one guard check."""

    model_config = ConfigDict(frozen=True)

    check: str
    passed: bool
    reason: str | None = None
    score: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


# --- documents -------------------------------------------------------------------------------------


# A tenant's document events go out under this many keys (`<tenant>:<shard>`, the shard a stable hash of
# the document id). Every event of one document has the same key, so its order holds. One tenant's bulk
# load fills at most this many partitions (that many instances can share it) and leaves the others to
# other tenants, whose documents the ingest's and embed's other workers take at once; with a key per
# document the load filled every partition and everyone waited behind it (issue 13).
DOC_KEY_SHARDS = 2


def doc_shard(doc_id: str) -> int:
    """The shard of a document's key (stable across processes and releases: crc32, not hash())."""
    return zlib.crc32(doc_id.encode()) % DOC_KEY_SHARDS


class _DocEvent(EventData):
    doc_id: Id

    def partition_key(self, tenant: str) -> str:
        return f"{tenant}:{doc_shard(self.doc_id)}"

    def subject(self) -> str | None:
        return self.doc_id


class DocsSubmitted(_DocEvent):
    """A document to (re)index: inline `text`, a file's bytes inline (`content`), or a `uri` the ingest
    service can read."""

    topic: ClassVar[str] = topics.DOCS_SUBMITTED
    # Bytes travel in JSON as base64url (RFC 4648 section 5); the standard alphabet is read too.
    model_config = ConfigDict(frozen=True, extra="ignore", ser_json_bytes="base64", val_json_bytes="base64")

    title: str | None = Field(default=None, max_length=1000)
    text: str | None = None
    uri: str | None = Field(default=None, max_length=4096)
    # A file carried in the event itself (the gateway's uploads): any format the ingest service reads,
    # binary ones (PDF, DOCX) too. Bounded by the bus's message size (~740 kB under Kafka's 1 MiB
    # default, base64 adding a third); larger files go by `uri`.
    content: bytes | None = Field(
        default=None,
        description="the bytes of a file (in JSON: base64url, or standard base64): a document in any "
        "format the ingest service reads, PDF and DOCX included",
    )
    filename: str | None = Field(
        default=None,
        max_length=255,
        description="the name `content` came under: its extension tells the format when `content_type` "
        "is absent, its stem is the title when the file has none",
    )
    content_type: str | None = Field(
        default=None, description="MIME type; guessed from the uri's or filename's extension if absent"
    )
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    groups: list[Group] = Field(default_factory=list, max_length=100, description=GROUPS_DOC)
    chunking: Literal["tokens", "headings", "sentences"] | None = Field(
        default=None,
        description="how to cut it: `headings` keeps chunks within their section, `tokens` by budget "
        "alone, `sentences` one chunk per sentence with its neighbours as context; None: the ingest "
        "service's choice (headings for Markdown, HTML and DOCX)",
    )

    @model_validator(mode="after")
    def _text_or_uri(self) -> DocsSubmitted:
        if sum(x is not None for x in (self.text, self.uri, self.content)) != 1:
            raise ValueError(
                "give exactly one of `text` (inline text), `content` (a file's bytes, base64) or `uri` "
                "(a file to read)"
            )
        return self


class DocsDeleted(_DocEvent):
    """A document to remove from the index, all versions."""

    topic: ClassVar[str] = topics.DOCS_DELETED

    reason: str | None = None


# What a chunk may be flagged for (`ChunkData.flags`): `injection` = its text reads as instructions to
# the model (an indirect prompt injection); readers treat a flag they do not know as a reason for care.
FLAG_INJECTION = "injection"


class TextSpan(BaseModel):
    """A span of a chunk's text: `text[start:end]`."""

    model_config = ConfigDict(frozen=True)

    start: int = Field(ge=0)
    end: int = Field(ge=0)


class ChunkData(BaseModel):
    """One chunk of a document version."""

    model_config = ConfigDict(frozen=True)

    chunk_id: UUID = Field(description="uuid5 of (tenant, doc_id, index, content_hash): same chunk, same id")
    index: int = Field(ge=0)
    text: str
    content_hash: str
    token_count: int = Field(ge=0)
    char_start: int = Field(ge=0)
    char_end: int = Field(ge=0)
    flags: list[str] = Field(
        default_factory=list,
        description="what the ingest scan found: `injection` = text that reads as instructions to the model",
    )
    injection_score: float | None = Field(
        default=None, ge=0, le=1, description="the injection scan's score (None: the chunk was not scanned)"
    )
    injection_spans: list[TextSpan] = Field(
        default_factory=list, description="where in `text` the instructions are (when flagged)"
    )
    section: list[str] = Field(
        default_factory=list,
        description="the headings the chunk is under, outermost first (heading-aware chunking)",
    )
    focus: TextSpan | None = Field(
        default=None,
        description="the part of `text` that is embedded (sentence windows: the sentence; its "
        "neighbours are context for the model); None: all of it",
    )
    page: int | None = Field(default=None, ge=1, description="the page the chunk starts on (paged formats)")
    last_page: int | None = Field(default=None, ge=1, description="the page it ends on")


class DocsChunked(_DocEvent):
    """A document version cut into chunks (possibly over several parts), or its removal (`deleted`)."""

    topic: ClassVar[str] = topics.DOCS_CHUNKED

    version: str = Field(description="content hash of the normalised document text")
    title: str | None = None
    uri: str | None = None
    content_type: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    groups: list[Group] = Field(default_factory=list, max_length=100, description=GROUPS_DOC)
    minhash: list[int] = Field(
        default_factory=list,
        max_length=512,
        description="the document's MinHash signature (near-duplicate detection; in every part)",
    )
    chunks: list[ChunkData] = Field(default_factory=list)
    part: int = Field(default=0, ge=0)
    parts: int = Field(default=1, ge=1)
    total_chunks: int = Field(default=0, ge=0)
    deleted: bool = False
    tokenizer: str | None = None


class DocsIndexed(_DocEvent):
    """A part of a document version is searchable (or the document is gone, `deleted`)."""

    topic: ClassVar[str] = topics.DOCS_INDEXED

    version: str
    part: int = 0
    parts: int = 1
    chunk_ids: list[UUID] = Field(default_factory=list)
    upserted: int = 0
    removed: int = 0
    unchanged: int = Field(
        default=0,
        description="chunks already stored as they are, by the same embedding model: not embedded again",
    )
    updated: int = Field(
        default=0,
        description="chunks whose stored vectors still hold (same text embedded by the same model) and whose "
        "payload alone was rewritten: the document's metadata, groups or version changed, not what is "
        "embedded; not embedded again",
    )
    replaced: int = Field(
        default=0,
        description="of the `upserted` chunks, those that replaced a stored point of the same chunk id "
        "(embedded again: a new title while titles are embedded, another model)",
    )
    deleted: bool = False
    duplicate_of: str | None = Field(
        default=None, description="an earlier document of the tenant this one nearly repeats"
    )
    similarity: float | None = Field(
        default=None, ge=0, le=1, description="their Jaccard similarity, as MinHash estimates it"
    )
    skipped: bool = Field(
        default=False, description="not indexed: a near duplicate, and the policy is to skip them"
    )
    embedding_model: str | None = None
    elapsed_ms: float | None = None


# --- queries and answers ---------------------------------------------------------------------------


class _QueryEvent(EventData):
    query_id: Id
    conversation_id: Id | None = None

    def partition_key(self, tenant: str) -> str:
        return f"{tenant}:{self.conversation_id or self.query_id}"

    def subject(self) -> str | None:
        return self.query_id


MAX_ANSWER_TOP_K = 100
MAX_RETRIEVE_ONLY_TOP_K = 1000


class QueryFilter(BaseModel):
    """Which of the tenant's documents retrieval may use; every condition given must hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metadata: dict[str, list[str] | list[int]] = Field(
        default_factory=dict,
        description="metadata key -> the values it may have (any of them); a list-valued key (e.g. "
        "`groups`) matches when any of its items does",
    )
    after: datetime | None = Field(default=None, description="metadata `date_field` on or after this")
    before: datetime | None = Field(default=None, description="metadata `date_field` before this")
    date_field: str = Field(default="date", min_length=1, max_length=200)


class QueryOptions(BaseModel):
    """Per-request knobs; every field is optional, services fall back to their settings."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    top_k: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RETRIEVE_ONLY_TOP_K,
        description=f"at most {MAX_ANSWER_TOP_K} unless retrieve_only",
    )
    min_tier: int | None = Field(default=None, ge=0, description="start the cascade at this tier")
    max_tier: int | None = Field(default=None, ge=0, description="never escalate past this tier")
    max_cost_usd: float | None = Field(
        default=None, ge=0, description="never call a tier whose worst-case cost would pass this, in all"
    )
    max_latency_ms: float | None = Field(
        default=None, gt=0, description="the cascade stops calling models once this much time is spent"
    )
    doc_ids: list[str] | None = Field(default=None, description="restrict retrieval to these documents")
    where: QueryFilter | None = Field(default=None, description="restrict retrieval by metadata and date")
    retrieve_only: bool = Field(
        default=False,
        description="return the ranked chunks (in `answers.completed.retrieved`) and generate nothing",
    )
    cache: bool = Field(
        default=True,
        description="false: neither answer from the semantic cache nor store the answer in it (evaluations)",
    )
    stream: bool = Field(
        default=False,
        description="publish the answer's text on `answers.delta` as it is generated (drafts: "
        "`answers.completed` is the answer as checked, and withdraws a blocked one)",
    )

    @model_validator(mode="after")
    def _answer_depth(self) -> QueryOptions:
        # A ranking may go deep (recall at 100 documents needs more chunks); an answer reads its sources.
        if self.top_k is not None and self.top_k > MAX_ANSWER_TOP_K and not self.retrieve_only:
            limits = f"{MAX_ANSWER_TOP_K} for an answer, {MAX_RETRIEVE_ONLY_TOP_K} with retrieve_only"
            raise ValueError(f"top_k is at most {limits}")
        return self


class QueriesSubmitted(_QueryEvent):
    """A question from a user or a program."""

    topic: ClassVar[str] = topics.QUERIES_SUBMITTED

    question: str = Field(max_length=100_000)
    user_id: str | None = None
    groups: list[Group] = Field(default_factory=list, max_length=100, description=ASKER_GROUPS_DOC)
    options: QueryOptions = Field(default_factory=QueryOptions)


class QueriesAccepted(_QueryEvent):
    """A question that passed the input guard."""

    topic: ClassVar[str] = topics.QUERIES_ACCEPTED

    question: str
    user_id: str | None = None
    groups: list[Group] = Field(default_factory=list, max_length=100, description=ASKER_GROUPS_DOC)
    options: QueryOptions = Field(default_factory=QueryOptions)
    verdicts: list[Verdict] = Field(default_factory=list)
    stages: list[StageTiming] = Field(default_factory=list)


class QueriesEscalated(QueriesAccepted):
    """An accepted question whose answer needs a model tier: the orchestrator's model lane takes it, so
    that questions answered without a model never queue behind a model call (docs/cascade.md)."""

    topic: ClassVar[str] = topics.QUERIES_ESCALATED


class QueriesRejected(_QueryEvent):
    """A question the input guard refused; an `answers.completed` with status `blocked` follows."""

    topic: ClassVar[str] = topics.QUERIES_REJECTED

    reason: str
    verdicts: list[Verdict] = Field(default_factory=list)
    stages: list[StageTiming] = Field(default_factory=list)


class ChunkPlace(BaseModel):
    """Where a chunk is in its document, for a citation to point at (all optional: older chunks lack it)."""

    char_start: int | None = Field(default=None, ge=0, description="the chunk's first character in the text")
    char_end: int | None = Field(default=None, ge=0, description="one past its last character")
    section: list[str] = Field(default_factory=list, description="the headings it is under, outermost first")
    page: int | None = Field(default=None, ge=1, description="the page it starts on (paged formats)")
    last_page: int | None = Field(default=None, ge=1, description="the page it ends on")


class Citation(ChunkPlace):
    """A source the answer relies on: `n` is the marker `[n]` in the answer text."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(ge=1)
    doc_id: str
    chunk_id: UUID
    title: str | None = None
    score: float | None = None
    quote: str | None = Field(default=None, description="the passage the answer is drawn from")


class RetrievedChunk(ChunkPlace):
    """A chunk retrieval returned for a question, with its score."""

    model_config = ConfigDict(frozen=True)

    chunk_id: UUID
    doc_id: str
    index: int
    score: float
    title: str | None = None
    flags: list[str] = Field(default_factory=list, description="the chunk's flags from ingest (`injection`)")
    injection_score: float | None = Field(default=None, description="the ingest scan's score, if scanned")
    text: str | None = Field(
        default=None,
        description="the chunk's text as retrieved (the guard checks the answer's support against it)",
    )
    lexical: float | None = Field(default=None, description="BM25 score, when the lexical leg found it")


class TierAttempt(BaseModel):
    """One step of the model cascade: what ran, whether its answer was accepted, and what it cost."""

    model_config = ConfigDict(frozen=True)

    tier: int = Field(ge=0)
    name: str = Field(description="`extractive`, or the chat model's name")
    accepted: bool
    reason: str = Field(description="why it was accepted or why the cascade escalated past it")
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    prompt: str | None = Field(default=None, description="the prompt template, `name@version`")
    ttft_ms: float | None = Field(default=None, description="time to the first token, when streamed")
    benefit: float | None = Field(
        default=None,
        description="a chat tier's router: the predicted chance that its answer is accepted",
    )


class CacheHit(BaseModel):
    """The answer came from the semantic cache: the request that first produced it, and how alike the
    two questions are."""

    model_config = ConfigDict(frozen=True)

    query_id: str = Field(description="the earlier request whose answer this is")
    question: str = Field(description="the earlier question, as asked")
    similarity: float = Field(description="cosine of the two questions' embeddings")
    cached_at: datetime


class Cascade(BaseModel):
    """The whole cascade of a request: the tier that answered and every attempt on the way."""

    model_config = ConfigDict(frozen=True)

    tier: int
    reason: str
    attempts: list[TierAttempt] = Field(default_factory=list)
    cache: CacheHit | None = Field(default=None, description="set when the semantic cache answered")

    @property
    def prompt_tokens(self) -> int:
        return sum(a.prompt_tokens for a in self.attempts)

    @property
    def completion_tokens(self) -> int:
        return sum(a.completion_tokens for a in self.attempts)


class AnswersDrafted(_QueryEvent):
    """An answer before the output guard."""

    topic: ClassVar[str] = topics.ANSWERS_DRAFTED

    question: str
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    retrieved: list[RetrievedChunk] = Field(default_factory=list)
    cascade: Cascade
    stages: list[StageTiming] = Field(default_factory=list)
    retrieve_only: bool = Field(default=False, description="the request asked for retrieval only")


class AnswersDelta(_QueryEvent):
    """A piece of an answer as it is generated, for a request that asked to stream (`options.stream`).

    Pieces of one request are ordered by `seq` (and by the partition: the key is the request's).
    They are drafts: `reset` says the tier that streamed them was not accepted and what follows
    replaces them; `final` closes the stream. `answers.completed` is the answer as the guard checked
    it, citations renumbered and personal data redacted, and a `blocked` status withdraws the draft.
    """

    topic: ClassVar[str] = topics.ANSWERS_DELTA

    seq: int = Field(ge=0)
    tier: int = Field(ge=0, description="the cascade tier generating the text")
    text: str = ""
    reset: bool = Field(default=False, description="discard the text streamed so far")
    final: bool = Field(default=False, description="no more pieces follow")


AnswerStatus = Literal["answered", "blocked", "failed"]


class AnswersCompleted(_QueryEvent):
    """The final answer to a query: `answered`, `blocked` by a guard (with the reason), or `failed`."""

    topic: ClassVar[str] = topics.ANSWERS_COMPLETED

    status: AnswerStatus
    answer: str
    reason: str | None = None
    question: str | None = Field(
        default=None,
        description="the question answered, as accepted (redacted where the tenant's policy says); "
        "conversation memory keeps it with the answer",
    )
    citations: list[Citation] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    cascade: Cascade | None = None
    stages: list[StageTiming] = Field(default_factory=list)
    retrieved: list[RetrievedChunk] = Field(
        default_factory=list,
        description="retrieve-only requests: the ranked chunks, best first (without their text)",
    )


class FeedbackSubmitted(_QueryEvent):
    """A user's judgement of an answer."""

    topic: ClassVar[str] = topics.FEEDBACK_SUBMITTED

    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=10_000)
    user_id: str | None = None
    correction: str | None = Field(
        default=None,
        max_length=100_000,
        description="the answer as it should have been: `ragbus export` puts it in place of the answer",
    )


class FeedbackRecorded(_QueryEvent):
    """The monitor stored a `feedback.submitted` event: `known` says whether a question with its
    `query_id` is on record for the tenant (feedback on an unknown id is kept, and flagged)."""

    topic: ClassVar[str] = topics.FEEDBACK_RECORDED

    rating: Literal["up", "down"]
    known: bool = Field(description="a question with this query_id is on record for the tenant")


EVENT_TYPES: tuple[type[EventData], ...] = (
    DocsSubmitted,
    DocsDeleted,
    DocsChunked,
    DocsIndexed,
    QueriesSubmitted,
    QueriesAccepted,
    QueriesRejected,
    QueriesEscalated,
    AnswersDrafted,
    AnswersDelta,
    AnswersCompleted,
    FeedbackSubmitted,
    FeedbackRecorded,
)
BY_TOPIC: dict[str, type[EventData]] = {cls.topic: cls for cls in EVENT_TYPES}
BY_TYPE: dict[str, type[EventData]] = {cls.event_type(): cls for cls in EVENT_TYPES}


# --- dead letters ----------------------------------------------------------------------------------

DLQ_HEADER_PREFIX = "x-ragbus-dlq-"


class DeadLetter(BaseModel):
    """What a `<topic>.dlq` message says about itself.

    The message value is the original bytes, unchanged (nothing is lost, whatever was wrong with them),
    unless they would not fit the broker's request limit: then it holds as many of the first bytes as
    fit, and `original_size` and `original_sha256` describe the whole. These fields travel as Kafka
    headers `x-ragbus-dlq-<field>`.
    """

    model_config = ConfigDict(frozen=True)

    original_topic: str
    partition: int | None = None
    offset: int | None = None
    service: str
    error_type: str
    reason: str
    attempts: int = 1
    failed_at: datetime
    original_size: int | None = Field(default=None, description="set when the value was cut to fit")
    original_sha256: str | None = Field(default=None, description="of the whole original value, when cut")
    original_principal: str | None = Field(
        default=None, description="who signed the original (its x-ragbus-principal), if anyone did"
    )
    original_signature: str | None = Field(
        default=None, description="its signature: a replay restores both, so it verifies as the original"
    )

    def to_headers(self) -> dict[str, str]:
        data = self.model_dump(mode="json", exclude_none=True)
        return {DLQ_HEADER_PREFIX + k.replace("_", "-"): str(v) for k, v in data.items()}

    @classmethod
    def from_headers(cls, headers: dict[str, Any]) -> DeadLetter:
        fields: dict[str, Any] = {}
        for name, value in headers.items():
            if name.startswith(DLQ_HEADER_PREFIX):
                text = value.decode() if isinstance(value, bytes) else value
                fields[name.removeprefix(DLQ_HEADER_PREFIX).replace("-", "_")] = text
        return cls.model_validate(fields)
