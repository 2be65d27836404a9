"""The ragbus client: publish documents and questions, and wait for what the stack answers.

Any Kafka client can talk to ragbus (publish a CloudEvent JSON to `docs.submitted.v1` or
`queries.submitted.v1`); this one also waits for the outcome, matched by correlation id:
`docs.indexed.v1` for documents, `answers.completed.v1` for questions, `feedback.recorded.v1` for
feedback, and the `.dlq` topics, so that a request the stack refused comes back as a clear error
instead of a timeout. Ingestion waits as long as the stack makes progress (any document indexed on the
bus counts: ours may sit behind someone else's backlog) and gives up only after a stall; it watches
`docs.chunked.v1` too, so that it can then say where each waiting document is (not chunked yet: the
ingest service; chunked, not indexed: the embed service).

    async with RagbusClient() as client:
        await client.ingest([Document(doc_id="readme", text=open("README.md").read())])
        result = await client.ask("What is ragbus?")
        print(result.answer.answer, result.answer.citations)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from ragbus.common import topics
from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import Envelope, EnvelopeAttributes, parse_event
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDelta,
    DeadLetter,
    DocsDeleted,
    DocsIndexed,
    DocsSubmitted,
    EventData,
    FeedbackRecorded,
    FeedbackSubmitted,
    MetadataValue,
    QueriesSubmitted,
    QueryOptions,
)
from ragbus.common.ids import uuid7
from ragbus.common.kafka import client_options, rewind_truncated, tail, truncated
from ragbus.common.logging import get_logger
from ragbus.common.middleware import admit
from ragbus.common.settings import KafkaSettings, TelemetrySettings, client_trust_settings
from ragbus.common.telemetry import tracer_provider
from ragbus.common.trust import OPERATOR, Trust, TrustSettings, publish_headers

log = get_logger("ragbus.client")
# Topics whose dead letters can belong to a client request.
_REQUEST_PATH = (
    topics.DOCS_SUBMITTED,
    topics.DOCS_DELETED,
    topics.DOCS_CHUNKED,
    topics.QUERIES_SUBMITTED,
    topics.QUERIES_ACCEPTED,
    topics.QUERIES_ESCALATED,
    topics.ANSWERS_DRAFTED,
    topics.FEEDBACK_SUBMITTED,
)
# What a client reads back: every reply (`replies="all"`), or a client for documents only
# (`replies="documents"`, see RagbusClient) those of documents; each with its path's dead letters.
_REPLIES = (
    topics.DOCS_CHUNKED,  # not a reply: where a document is, for a report if the wait ends
    topics.DOCS_INDEXED,
    topics.ANSWERS_DELTA,
    topics.ANSWERS_COMPLETED,
    topics.FEEDBACK_RECORDED,
)
_DOCUMENT_REPLIES = (topics.DOCS_CHUNKED, topics.DOCS_INDEXED)
_DOCUMENT_PATH = (topics.DOCS_SUBMITTED, topics.DOCS_DELETED, topics.DOCS_CHUNKED)
# Documents of a bulk load sent before their broker acknowledgements are awaited (`_submit`).
_SEND_WINDOW = 256

Replies = Literal["all", "documents"]


class RequestFailed(Exception):
    """The stack dead-lettered a request (or an event it led to): the reason says why."""

    def __init__(self, letter: DeadLetter) -> None:
        super().__init__(f"{letter.service} could not process it ({letter.error_type}): {letter.reason}")
        self.letter = letter


class WaitTimeout(TimeoutError):
    """The stack did not answer in time; the message says what is done and what is not."""


@dataclass(frozen=True, slots=True)
class Document:
    """A document to index: inline `text`, a file's bytes (`content`, named by `filename`), or a `uri`
    that the ingest service can read."""

    doc_id: str
    text: str | None = None
    uri: str | None = None
    # A file sent in the event itself, in any format the ingest service reads (the gateway's uploads);
    # its `filename` tells the format when `content_type` does not. Bounded by the bus's message size.
    content: bytes | None = None
    filename: str | None = None
    title: str | None = None
    content_type: str | None = None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    # Who may read it (empty: everyone of the tenant); a question sees it when its asker is in one.
    groups: tuple[str, ...] = ()
    # How to cut it: "headings" or "tokens"; None: the ingest service's choice (by format).
    chunking: Literal["tokens", "headings", "sentences"] | None = None


@dataclass(frozen=True, slots=True)
class Indexed:
    doc_id: str
    version: str
    chunks: int
    removed: int
    elapsed_ms: float
    # Chunks the store already held as they are (same text, metadata and model): not embedded again.
    unchanged: int = 0
    # Chunks whose stored vectors still held and whose payload alone was rewritten (new metadata,
    # groups or title, the same text): not embedded again either.
    updated: int = 0
    # Chunks embedded again in place of a stored point of the same id (a new title, another model).
    replaced: int = 0
    # The tenant's document this one nearly repeats (MinHash), how closely, and whether it was left out.
    duplicate_of: str | None = None
    similarity: float | None = None
    skipped: bool = False

    @property
    def is_unchanged(self) -> bool:
        """Nothing of the document had to be embedded or removed: it was indexed as it is."""
        return self.chunks > 0 and self.unchanged == self.chunks and self.removed == 0

    @property
    def change(self) -> Literal["added", "updated", "metadata", "unchanged", "skipped"]:
        """What indexing did to the store: `added` a document it did not hold, `updated` one it held
        (old chunks removed or rewritten), `metadata` one whose text it held as it is and whose metadata
        alone changed (payloads rewritten, nothing embedded), left it `unchanged`, or `skipped` it (a
        near duplicate)."""
        if self.skipped:
            return "skipped"
        if self.is_unchanged:
            return "unchanged"
        if self.updated and self.updated + self.unchanged == self.chunks and not self.removed:
            return "metadata"
        return "updated" if self.removed or self.unchanged or self.updated or self.replaced else "added"

    @property
    def label(self) -> str:
        """`change` as a user reads it."""
        return "updated (metadata)" if self.change == "metadata" else self.change


@dataclass(frozen=True, slots=True)
class Answer:
    event: Envelope[AnswersCompleted]
    trace_id: str
    elapsed_ms: float

    @property
    def answer(self) -> AnswersCompleted:
        return self.event.data


@dataclass
class _Waiter:
    future: asyncio.Future[list[Envelope[Any]]]
    expect: str  # the CloudEvents type that completes the request
    caused_by: UUID | None = None  # only a reply to this very event (not to another of the same request)
    parts: dict[int, Envelope[Any]] = field(default_factory=dict)
    # A document's parts seen on `docs.chunked` (part -> parts): how far it got, should the wait end.
    chunked: dict[int, int] = field(default_factory=dict)
    # The broker's acknowledgement of the request, when it was sent without waiting for it.
    delivery: asyncio.Future[Any] | None = None


async def _delivered(deliveries: list[asyncio.Future[Any]]) -> None:
    """Wait for every acknowledgement and empty the list; raise the first failure, once all are in (none
    is left unread to be logged as "never retrieved")."""
    outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
    deliveries.clear()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _listed(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _documents(n: int) -> str:
    return f"{n} document{'' if n == 1 else 's'}"


class RagbusClient:
    """`replies="documents"`: a client that only ingests and deletes (`ragbus ingest`, `sync`, `delete`)
    reads the document replies alone (`docs.chunked`, `docs.indexed` and their path's dead letters, 5
    topics of 13) and polls them at the document consumers' pace (`KAFKA_BULK_FETCH_MAX_WAIT_MS`
    rather than `KAFKA_FETCH_MAX_WAIT_MS`). The local broker spends ~0.1 ms of CPU per partition in
    every fetch: the reply reader of a whole client, 104 partitions every 25 ms, cost it a third of a
    core for as long as the client ran; a bulk load's client took that from the embedding model."""

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        *,
        tenant: str = "default",
        source: str = "ragbus/client",
        telemetry: TelemetrySettings | None = None,
        trust: TrustSettings | None = None,
        replies: Replies = "all",
    ) -> None:
        self.kafka = kafka or KafkaSettings()
        self.replies = replies
        # Signs what it submits, and (enforced) believes only replies signed by the stack's services.
        self.trust = Trust.open(trust or client_trust_settings(), OPERATOR, self.kafka.topic_prefix)
        self.tenant = tenant
        self.source = source
        self.t = topics.Topics(self.kafka.topic_prefix)
        self._provider = tracer_provider("client", telemetry)
        self.tracer = self._provider.get_tracer("ragbus.client")
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._waiters: dict[str, _Waiter] = {}
        # Streaming questions: their `answers.delta` pieces go to the callback, until the final one.
        # query id -> (callback, ended, [the next seq to deliver])
        self._streams: dict[str, tuple[Callable[[AnswersDelta], None], asyncio.Event, list[int]]] = {}
        self._progress_at = time.monotonic()  # when a document was last indexed on the bus (anyone's)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> RagbusClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        replies: tuple[str, ...]
        path: tuple[str, ...]
        if self.replies == "documents":
            replies, path = _DOCUMENT_REPLIES, _DOCUMENT_PATH
            reader = self.kafka.model_copy(update={"fetch_max_wait_ms": self.kafka.bulk_fetch_max_wait_ms})
        else:
            replies, path, reader = _REPLIES, _REQUEST_PATH, self.kafka
        reply_topics = [self.t(name) for name in replies] + [self.t.dlq(name) for name in path]
        requests = (
            topics.DOCS_SUBMITTED,
            topics.DOCS_DELETED,
            topics.QUERIES_SUBMITTED,
            topics.FEEDBACK_SUBMITTED,
        )
        await ensure_topics(self.kafka, [*reply_topics, *(self.t(name) for name in requests)])
        self._producer = AIOKafkaProducer(
            **client_options(self.kafka), max_request_size=self.kafka.max_request_size
        )
        await self._producer.start()
        # No consumer group: the client reads the replies from "now" on every partition, so many
        # clients can wait at once without a rebalance, and nothing is committed.
        self._consumer = await tail(reader, reply_topics)
        self._reader = asyncio.create_task(self._read_replies(), name="ragbus-client-replies")
        self._watch = asyncio.create_task(self._watch_log(), name="ragbus-client-log-watch")

    async def close(self) -> None:
        for task in (self._watch, self._reader):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.cancel()
        self._provider.force_flush()

    async def ping(self) -> None:
        """Raise unless the bus answers a metadata request: the health check of a long-lived client."""
        assert self._producer is not None, "use `async with RagbusClient()` or call start() first"
        await self._producer.client.fetch_all_metadata()

    # --- requests ----------------------------------------------------------------------------------

    async def ingest(
        self,
        documents: Iterable[Document],
        *,
        stall_timeout: float = 120.0,
        timeout: float | None = None,
        on_indexed: Callable[[Indexed], None] | None = None,
        tenant: str | None = None,
    ) -> list[Indexed]:
        """Submit documents and wait until each is indexed (every part). Raises RequestFailed.

        It waits as long as the stack makes progress: any `docs.indexed` event on the bus, ours or not,
        restarts the clock, so documents queued behind a backlog are waited for. WaitTimeout after
        `stall_timeout` seconds without progress, or after `timeout` seconds in all (None: no limit);
        its message says how many of these documents are indexed and which are not. `tenant`: whose
        documents they are, if not the client's own tenant's.
        """
        started = time.perf_counter()
        sent: list[tuple[str, _Waiter]] = []
        results: dict[int, Indexed] = {}

        async def wait_one(i: int, doc_id: str, waiter: _Waiter) -> None:
            events = await waiter.future
            results[i] = Indexed(
                doc_id=doc_id,
                version=events[0].data.version,
                chunks=sum(len(e.data.chunk_ids) for e in events),
                removed=sum(e.data.removed for e in events),
                elapsed_ms=(time.perf_counter() - started) * 1000,
                unchanged=sum(e.data.unchanged for e in events),
                updated=sum(e.data.updated for e in events),
                replaced=sum(e.data.replaced for e in events),
                duplicate_of=events[0].data.duplicate_of,
                similarity=events[0].data.similarity,
                skipped=any(e.data.skipped for e in events),
            )
            if on_indexed:
                on_indexed(results[i])

        tasks: list[asyncio.Future[None]] = []
        try:
            await self._submit(documents, sent, tenant)
            tasks = [asyncio.ensure_future(wait_one(i, d, w)) for i, (d, w) in enumerate(sent)]
            await self._wait_progressing(tasks, stall_timeout, timeout, started)
        except WaitTimeout as exc:
            waiting = [(d, w) for i, (d, w) in enumerate(sent) if i not in results]
            raise WaitTimeout(f"{exc}: {self._ingest_report(len(sent), waiting)}") from None
        finally:
            # Those still waiting (after a failure, a send's included): nobody reads them any more.
            for task in tasks:
                task.cancel()
            for _, waiter in sent:
                waiter.future.cancel()
        return [results[i] for i in range(len(sent))]

    async def _submit(
        self, documents: Iterable[Document], sent: list[tuple[str, _Waiter]], tenant: str | None
    ) -> None:
        """Publish the documents, appending each one's waiter to `sent`. Many go out per produce request:
        up to _SEND_WINDOW wait for their acknowledgement at once, so a bulk load does not pay a broker
        round trip per document, and the broker stores a few large batches instead of one per document
        (Tansu's in-memory log costs more per fetch the more batches it holds). Each document's events
        stay in order: one partition per key, one request in flight per partition."""
        unconfirmed: list[asyncio.Future[Any]] = []
        for doc in documents:
            data = DocsSubmitted(
                doc_id=doc.doc_id,
                text=doc.text,
                uri=doc.uri,
                content=doc.content,
                filename=doc.filename,
                title=doc.title,
                content_type=doc.content_type,
                metadata=doc.metadata,
                groups=list(doc.groups),
                chunking=doc.chunking,
            )
            waiter = await self._send(
                data, expect=DocsIndexed.event_type(), name="ragbus ingest", tenant=tenant, confirm=False
            )
            sent.append((doc.doc_id, waiter))
            if waiter.delivery is not None:
                unconfirmed.append(waiter.delivery)
            if len(unconfirmed) >= _SEND_WINDOW:
                await _delivered(unconfirmed)
        await _delivered(unconfirmed)

    async def _wait_progressing(
        self,
        tasks: Sequence[asyncio.Future[None]],
        stall_timeout: float,
        timeout: float | None,
        started: float,
    ) -> None:
        """Wait for every task while documents are being indexed; the first failure raises."""
        self._progress_at = time.monotonic()  # the submission is the first sign of life
        pending = set(tasks)
        while pending:
            now = time.monotonic()
            wait_s = self._progress_at + stall_timeout - now
            if timeout is not None:
                left = started + timeout - time.perf_counter()
                if left <= 0:
                    raise WaitTimeout(f"timed out after {timeout:.0f} s")
                wait_s = min(wait_s, left)
            if wait_s <= 0:
                raise WaitTimeout(f"no document was indexed on the bus for {stall_timeout:.0f} s")
            done, pending = await asyncio.wait(pending, timeout=wait_s, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises the first failure (a dead-lettered document: RequestFailed)

    @staticmethod
    def _ingest_report(total: int, waiting: Sequence[tuple[str, _Waiter]]) -> str:
        """How many documents are indexed, and where each of the others is: not chunked yet (the ingest
        service has not published a part of it) or chunked and not (wholly) indexed (the embed service)."""
        submitted = [d for d, w in waiting if not w.chunked and not w.parts]
        chunked = [_chunked_stage(d, w) for d, w in waiting if w.chunked or w.parts]
        stages = []
        if submitted:
            stages.append(f"{len(submitted)} submitted, not chunked yet (ingest): {_listed(submitted)}")
        if chunked:
            stages.append(f"{len(chunked)} chunked, not indexed yet (embed): {_listed(chunked)}")
        return (
            f"{total - len(waiting)} of {_documents(total)} indexed; waiting: {'; '.join(stages)} "
            "(is `ragbus up` running? `ragbus status` shows the services)"
        )

    async def delete(self, doc_id: str, *, timeout: float = 60.0, tenant: str | None = None) -> Indexed:
        started = time.perf_counter()
        waiter = await self._send(
            DocsDeleted(doc_id=doc_id), expect=DocsIndexed.event_type(), name="ragbus delete", tenant=tenant
        )
        async with asyncio.timeout(timeout):
            events = await waiter.future
        e = events[0].data
        return Indexed(doc_id, e.version, 0, e.removed, (time.perf_counter() - started) * 1000)

    async def ask(
        self,
        question: str,
        *,
        conversation_id: str | None = None,
        options: QueryOptions | None = None,
        timeout: float = 120.0,
        on_delta: Callable[[AnswersDelta], None] | None = None,
        groups: Sequence[str] = (),
        tenant: str | None = None,
    ) -> Answer:
        """Ask a question and wait for `answers.completed` (answered, or blocked with a reason).

        `groups`: the asker's groups; retrieval sees the documents open to the whole tenant and those
        shared with one of these. `tenant`: whom to ask for, if not the client's own tenant (a gateway
        serving several tenants through one client).

        `on_delta` streams the answer: each `answers.delta` piece as the stack generates it, in order
        (`options.stream` is set for it). The pieces are drafts: one with `reset` withdraws the text so
        far, and the returned answer is the one the guard checked (a blocked one withdraws them all)."""
        started = time.perf_counter()
        options = options or QueryOptions()
        if on_delta is not None and not options.stream:
            options = options.model_copy(update={"stream": True})
        data = QueriesSubmitted(
            query_id=str(uuid7()),
            conversation_id=conversation_id,
            question=question,
            groups=list(groups),
            options=options,
        )
        attributes = {"ragbus.query_id": data.query_id}  # `ragbus trace QUERY_ID` finds the trace by it
        with self.tracer.start_as_current_span(
            "ragbus ask", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            ended = asyncio.Event()
            if on_delta is not None:
                self._streams[data.query_id] = (on_delta, ended, [0])
            waiter = await self._send(data, expect=AnswersCompleted.event_type(), name=None, tenant=tenant)
        try:
            async with asyncio.timeout(timeout):
                events = await waiter.future
                # The pieces travel on another topic than the answer, so they may still be on their
                # way; an answer with a cascade was streamed to its final piece (blocked at the input
                # guard: nothing was).
                if on_delta is not None and events[0].data.cascade is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(10):
                            await ended.wait()
        finally:
            self._streams.pop(data.query_id, None)
        return Answer(events[0], trace_id, (time.perf_counter() - started) * 1000)

    async def feedback(
        self,
        query_id: str,
        rating: str,
        comment: str | None = None,
        *,
        correction: str | None = None,
        timeout: float = 60.0,
        tenant: str | None = None,
    ) -> FeedbackRecorded:
        """Rate an answer and wait until the monitor has recorded it: `known` in the reply says whether
        a question with this id is on record for the tenant (`tenant`, if not the client's own).
        `correction`: the answer as it should have been (a dataset export puts it in place of the answer)."""
        data = FeedbackSubmitted.model_validate(
            {"query_id": query_id, "rating": rating, "comment": comment, "correction": correction}
        )
        waiter = await self._send(
            data, expect=FeedbackRecorded.event_type(), name="ragbus feedback", own_reply=True, tenant=tenant
        )
        try:
            async with asyncio.timeout(timeout):
                events = await waiter.future
        except TimeoutError:
            raise WaitTimeout(
                f"the monitor did not confirm the feedback within {timeout:.0f} s "
                "(is `ragbus up` running? `ragbus status` shows the services)"
            ) from None
        recorded: FeedbackRecorded = events[0].data
        return recorded

    async def _send(
        self,
        data: EventData,
        *,
        expect: str,
        name: str | None,
        own_reply: bool = False,
        tenant: str | None = None,
        confirm: bool = True,
    ) -> _Waiter:
        """Publish a request; return its waiter, whose future its reply resolves (registered before
        publishing).

        `confirm` False: return once the request is queued in the producer, its broker's acknowledgement
        in `waiter.delivery` (a bulk load sends many per produce request, see `ingest`).

        `own_reply`: only a reply caused by this very event counts (several requests may share the
        correlation id, as ratings of one answer do)."""
        if self.replies == "documents" and not isinstance(data, DocsSubmitted | DocsDeleted):
            raise RuntimeError(f"a client for documents only reads no reply to {type(data).__name__}")
        correlation = getattr(data, "query_id", None) or f"{data.subject()}@{uuid7()}"
        tenant = tenant or self.tenant
        event = Envelope.new(data, source=self.source, tenant=tenant, correlation_id=correlation)
        future: asyncio.Future[list[Envelope[Any]]] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(future, expect, event.id if own_reply else None)
        self._waiters[event.correlationid] = waiter
        future.add_done_callback(lambda _: self._waiters.pop(event.correlationid, None))
        try:
            if name:
                with self.tracer.start_as_current_span(name, kind=SpanKind.PRODUCER):
                    delivery = await self._publish(event, confirm=confirm)
            else:
                delivery = await self._publish(event, confirm=confirm)
        except BaseException:
            future.cancel()  # never sent: nothing will answer it
            raise
        if delivery is not None:
            waiter.delivery = delivery
        return waiter

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish an event as it is (its id, tenant and time), signed when trust is on; wait for nothing."""
        await self._publish(event)

    async def _publish(self, event: Envelope[Any], *, confirm: bool = True) -> asyncio.Future[Any] | None:
        """Publish; with `confirm` False, return the broker's acknowledgement to await instead of waiting."""
        assert self._producer is not None, "use `async with RagbusClient()` or call start() first"
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # W3C traceparent: the stack's spans join the caller's trace
        topic = self.t(type(event.data).topic)
        value = event.to_bytes()
        headers = publish_headers(self.trust.signer, topic, event.key, value, carrier)
        delivery: asyncio.Future[Any] = await self._producer.send(
            topic, value, key=event.key, headers=headers
        )
        if not confirm:
            return delivery
        await delivery
        return None

    # --- replies -----------------------------------------------------------------------------------

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        indexed, chunked = self.t(topics.DOCS_INDEXED), self.t(topics.DOCS_CHUNKED)
        async for record in self._consumer:
            if record.topic == indexed:
                self._progress_at = time.monotonic()  # anyone's document counts: the stack is working
            if not self._waiters and not self._streams:
                continue
            attrs = EnvelopeAttributes.peek(record.value or b"")
            if record.topic == chunked:
                self._note_chunked(record, attrs)
                continue
            if attrs is not None and attrs.type == AnswersDelta.event_type():
                if (stream := self._streams.get(attrs.correlationid)) is not None and self._admitted(record):
                    delta: AnswersDelta = parse_event(record.value or b"").data
                    # Each piece once: a partition read again (a rewind), or the request processed
                    # again after a rebalance, brings back pieces already delivered.
                    if delta.seq < stream[2][0]:
                        continue
                    stream[2][0] = delta.seq + 1
                    stream[0](delta)
                    if delta.final:
                        stream[1].set()
                continue
            waiter = self._waiters.get(attrs.correlationid) if attrs else None
            if waiter is None or waiter.future.done() or not self._admitted(record):
                continue
            if record.topic.endswith(topics.DLQ_SUFFIX):
                headers = dict(record.headers)
                waiter.future.set_exception(RequestFailed(DeadLetter.from_headers(headers)))
                continue
            if attrs is None or attrs.type != waiter.expect:
                continue
            if waiter.caused_by is not None and attrs.causationid != waiter.caused_by:
                continue
            event = parse_event(record.value or b"")
            part = getattr(event.data, "part", 0)
            waiter.parts[part] = event  # a redelivered part replaces itself: same id
            if len(waiter.parts) >= getattr(event.data, "parts", 1):
                waiter.future.set_result([waiter.parts[k] for k in sorted(waiter.parts)])

    def _note_chunked(self, record: Any, attrs: EnvelopeAttributes | None) -> None:
        """Note a part of one of our documents seen on `docs.chunked` (only ours are read whole)."""
        waiter = self._waiters.get(attrs.correlationid) if attrs else None
        if waiter is None or waiter.future.done() or not self._admitted(record):
            return
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            data = json.loads(record.value)["data"]
            waiter.chunked[int(data.get("part", 0))] = int(data.get("parts", 1))

    async def _watch_log(self, every_s: float = 2.0) -> None:
        """While someone waits: if the broker lost its log (a restarted local broker), read the replies
        from the new log's beginning, where the stack's re-driven work answers (`rewind_truncated`)."""
        assert self._consumer is not None
        suspects: list[TopicPartition] = []  # behind at the last look: rewound if still behind now
        while True:
            await asyncio.sleep(every_s)
            if not self._waiters and not self._streams:
                suspects = []
                continue
            try:
                rewound = await rewind_truncated(self._consumer, suspects)
                suspects = await truncated(self._consumer)
            except KafkaError as exc:  # the broker is away: the consumer reconnects, look again later
                log.debug("reply log check failed", error=str(exc))
                continue
            if rewound:
                log.warning("broker log lost; reading replies from its start", partitions=len(rewound))

    def _admitted(self, record: Any) -> bool:
        """Whether a reply is believed: with trust enforced, one not signed by a service allowed to
        write it (a forged answer to someone's question) is ignored, and logged."""
        try:
            admit(record, self.trust)
        except PoisonMessage as exc:
            log.warning("reply ignored", topic=record.topic, offset=record.offset, reason=str(exc))
            return False
        return True


def _chunked_stage(doc_id: str, waiter: _Waiter) -> str:
    """`a.md`, or with how far it got: `a.md (1 of 3 parts indexed)`, `a.md (2 of 3 parts chunked)`."""
    parts = max(
        [*waiter.chunked.values(), *(int(getattr(e.data, "parts", 1)) for e in waiter.parts.values())]
    )
    if waiter.parts:
        return f"{doc_id} ({len(waiter.parts)} of {parts} parts indexed)"
    if len(waiter.chunked) < parts:
        return f"{doc_id} ({len(waiter.chunked)} of {parts} parts chunked)"
    return doc_id
