"""A request with its whole story, as the services publish it: the question redacted by the input guard,
stage timings from each service, ranked retrieval, a two-tier cascade with a prompt version, the output
guard's verdicts, feedback, a trace id on every event, and the `docs.indexed` events of the documents it
read. Times are fixed offsets from one base, so offsets, latencies and versions are exact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDrafted,
    Cascade,
    Citation,
    DocsIndexed,
    FeedbackSubmitted,
    QueriesAccepted,
    QueriesSubmitted,
    RetrievedChunk,
    StageTiming,
    TierAttempt,
    Verdict,
)
from ragbus.common.ids import record_id
from ragbus.common.topics import Topics
from ragbus.monitor.domain import RawMessage, event_record
from ragbus.monitor.ports import EventRecord

BASE = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
QUESTION = "I am ann@example.com: does vitamin D lower the risk of fractures?"
REDACTED = "I am <EMAIL>: does vitamin D lower the risk of fractures?"
ANSWER = "Not on its own: trials found no fewer fractures without calcium [1]."


def at(ms: float) -> datetime:
    return BASE + timedelta(milliseconds=ms)


def _timed(event: Envelope[Any], ms: float) -> Any:
    return event.model_copy(update={"time": at(ms)})


def stage(name: str, service: str, start_ms: float, end_ms: float) -> StageTiming:
    return StageTiming(stage=name, service=service, started_at=at(start_ms), finished_at=at(end_ms))


def chunk_of(tenant: str, doc_id: str, index: int) -> UUID:
    return record_id(tenant, doc_id, str(index), "hash")


@dataclass(frozen=True)
class Story:
    submitted: Envelope[QueriesSubmitted]
    accepted: Envelope[QueriesAccepted]
    drafted: Envelope[AnswersDrafted]
    completed: Envelope[AnswersCompleted]
    feedback: Envelope[FeedbackSubmitted]
    indexed: list[Envelope[DocsIndexed]]  # v1 of doc-17 before the request, v2 after it; doc-3 once

    @property
    def request(self) -> list[Envelope[Any]]:
        return [self.submitted, self.accepted, self.drafted, self.completed, self.feedback]

    @property
    def all(self) -> list[Envelope[Any]]:
        return [*self.indexed, *self.request]


def make_story(
    *,
    tenant: str = "acme",
    query_id: str = "q-1",
    user_id: str = "u-7",
    start_ms: float = 0,
    status: str = "answered",
    tier1_cost: float = 0.00041,
) -> Story:
    """One request submitted at `start_ms` after BASE, answered 1,234 ms later, rated 5 s after that."""
    t = start_ms
    submitted = _timed(
        Envelope.new(
            QueriesSubmitted(query_id=query_id, conversation_id="c-9", question=QUESTION, user_id=user_id),
            source="ragbus/client",
            tenant=tenant,
        ),
        t,
    )
    guard_in = stage("input guard", "guard", t + 10, t + 35)
    accepted = _timed(
        submitted.follow(
            QueriesAccepted(
                query_id=query_id,
                conversation_id="c-9",
                question=REDACTED,
                user_id=user_id,
                verdicts=[
                    Verdict(check="injection", passed=True, score=0.02),
                    Verdict(check="pii", passed=True, reason="EMAIL redacted"),
                ],
                stages=[guard_in],
            ),
            source="ragbus/guard",
        ),
        t + 40,
    )
    c17, c3 = chunk_of(tenant, "doc-17", 0), chunk_of(tenant, "doc-3", 2)
    retrieved = [
        RetrievedChunk(chunk_id=c17, doc_id="doc-17", index=0, score=0.82, title="Vitamin D and fractures"),
        RetrievedChunk(chunk_id=c3, doc_id="doc-3", index=2, score=0.41, title="Calcium intake"),
    ]
    citations = [Citation(n=1, doc_id="doc-17", chunk_id=c17, title="Vitamin D and fractures", score=0.82)]
    cascade = Cascade(
        tier=1,
        reason="grounded answer with citations",
        attempts=[
            TierAttempt(
                tier=0, name="extractive", accepted=False, reason="support 0.31 below 0.5", latency_ms=4.2
            ),
            TierAttempt(
                tier=1,
                name="smollm2-135m",
                accepted=True,
                reason="grounded answer with citations",
                latency_ms=812.0,
                prompt_tokens=412,
                completion_tokens=57,
                cost_usd=tier1_cost,
                prompt="answer@3",
            ),
        ],
    )
    orchestrated = [
        guard_in,
        stage("retrieval", "orchestrator", t + 60, t + 90),
        stage("generation", "orchestrator", t + 95, t + 1150),
    ]
    drafted = _timed(
        accepted.follow(
            AnswersDrafted(
                query_id=query_id,
                conversation_id="c-9",
                question=REDACTED,
                answer=ANSWER,
                citations=citations,
                retrieved=retrieved,
                cascade=cascade,
                stages=orchestrated,
            ),
            source="ragbus/orchestrator",
        ),
        t + 1174,
    )
    verdicts = [Verdict(check="pii", passed=True), Verdict(check="citations", passed=True)]
    completed = _timed(
        drafted.follow(
            AnswersCompleted(
                query_id=query_id,
                conversation_id="c-9",
                status=status,
                answer=ANSWER if status == "answered" else "I can't share that.",
                reason=None if status == "answered" else "answer contains personal data",
                question=REDACTED,
                citations=citations if status == "answered" else [],
                verdicts=verdicts
                if status == "answered"
                else [Verdict(check="pii", passed=False, reason="EMAIL")],
                cascade=cascade,
                stages=[*orchestrated, stage("output guard", "guard", t + 1190, t + 1230)],
            ),
            source="ragbus/guard",
        ),
        t + 1234,
    )
    feedback = _timed(
        Envelope.new(
            FeedbackSubmitted(query_id=query_id, rating="down", comment="cite the trial", user_id=user_id),
            source="ragbus/cli",
            tenant=tenant,
            correlation_id=submitted.correlationid,
        ),
        t + 6234,
    )

    def indexed(doc_id: str, version: str, chunks: list[UUID], ms: float) -> Any:
        data = DocsIndexed(doc_id=doc_id, version=version, chunk_ids=chunks, upserted=len(chunks))
        return _timed(
            Envelope.new(data, source="ragbus/embed", tenant=tenant, correlation_id=f"{doc_id}@{version}"), ms
        )

    docs = [
        indexed("doc-17", "v1", [c17], t - 60_000),
        indexed("doc-3", "v7", [chunk_of(tenant, "doc-3", 1), c3], t - 30_000),
        indexed("doc-17", "v2", [c17], t + 60_000),  # the same chunk in a later version: not what was read
    ]
    return Story(submitted, accepted, drafted, completed, feedback, docs)


def traced(event: Envelope[Any], trace_id: str | None = TRACE, offset: int = 0) -> EventRecord:
    """The `events` row the monitor makes of an event published with a W3C traceparent."""
    headers = {"content-type": CE_CONTENT_TYPE}
    if trace_id is not None:
        headers["traceparent"] = f"00-{trace_id}-00f067aa0ba902b7-01"
    msg = RawMessage(
        topic=type(event.data).topic, partition=0, offset=offset, value=event.to_bytes(), key=event.key,
        headers=headers,
    )  # fmt: skip
    return event_record(msg, Topics())
