"""Fixtures of the monitor's tests: stores, settings, real request envelopes, a PostgreSQL that can
be taken away and given back (a TCP proxy in front of the real server), and a PostgreSQL server of the
test's own, to stop and restart (`own_postgres`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDrafted,
    Cascade,
    Citation,
    QueriesAccepted,
    QueriesSubmitted,
    TierAttempt,
    Verdict,
)
from ragbus.common.ids import record_id
from ragbus.common.settings import RetrySettings
from ragbus.common.testing import PostgresUnavailable, TcpProxy, TempPostgres, component_settings
from ragbus.common.topics import Topics
from ragbus.monitor.adapters.memory import InMemoryEventStore
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.domain import RawMessage, event_record
from ragbus.monitor.ports import EventRecord, EventStore
from ragbus.monitor.settings import MonitorSettings

HEADERS = {"content-type": CE_CONTENT_TYPE}


@pytest.fixture
def settings(topic_prefix: str, database_url: str, unique: str) -> MonitorSettings:
    """Monitor settings for one test: its own topics and schema, quick retries."""
    return component_settings(
        MonitorSettings,
        topic_prefix,
        database_url=database_url,
        db_schema=unique,
        connect_timeout_s=2,
        command_timeout_s=5,
        retry=RetrySettings(initial_backoff_s=0.02, max_backoff_s=0.1),
    )


@pytest.fixture
async def memory_store() -> AsyncIterator[InMemoryEventStore]:
    store = InMemoryEventStore()
    yield store
    await store.aclose()


@pytest.fixture
async def pg_store(pg_schema: str, settings: MonitorSettings) -> AsyncIterator[PostgresEventStore]:
    store = await PostgresEventStore.open(settings.model_copy(update={"db_schema": pg_schema}))
    yield store
    await store.aclose()


@pytest.fixture(params=["memory", pytest.param("pg", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> EventStore:
    """Each test that takes `store` runs against the in-memory store and against PostgreSQL."""
    found: EventStore = request.getfixturevalue(f"{request.param}_store")
    return found


# --- a request, as the services would publish it -------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """The events of one query, from question to final answer, each caused by the one before."""

    submitted: Envelope[QueriesSubmitted]
    accepted: Envelope[QueriesAccepted]
    drafted: Envelope[AnswersDrafted]
    completed: Envelope[AnswersCompleted]

    @property
    def all(self) -> list[Envelope[Any]]:
        return [self.submitted, self.accepted, self.drafted, self.completed]


CASCADE = Cascade(
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
            cost_usd=0.00041,
        ),
    ],
)


def _at(event: Envelope[Any], base: Envelope[Any], ms: int) -> Any:
    # Services run on different clocks; fix the times so latencies are exact in assertions.
    return event.model_copy(update={"time": base.time + timedelta(milliseconds=ms)})


def make_request(
    *,
    tenant: str = "acme",
    query_id: str = "q-1",
    question: str = "Does vitamin D lower the risk of fractures in older adults?",
    answer: str = "Not on its own: trials found no fewer fractures without calcium [1].",
    latency_ms: int = 1234,
    status: str = "answered",
) -> Request:
    submitted = Envelope.new(
        QueriesSubmitted(query_id=query_id, conversation_id="c-9", question=question, user_id="u-7"),
        source="ragbus/client",
        tenant=tenant,
    )
    accepted = _at(
        submitted.follow(
            QueriesAccepted(
                query_id=query_id,
                conversation_id="c-9",
                question=question,
                verdicts=[Verdict(check="injection", passed=True, score=0.02)],
            ),
            source="ragbus/guard",
        ),
        submitted,
        40,
    )
    chunk = record_id(tenant, "doc-17", "0", "abc")
    citations = [Citation(n=1, doc_id="doc-17", chunk_id=chunk, title="Vitamin D and fractures", score=0.82)]
    drafted = _at(
        accepted.follow(
            AnswersDrafted(
                query_id=query_id,
                conversation_id="c-9",
                question=question,
                answer=answer,
                citations=citations,
                cascade=CASCADE,
            ),
            source="ragbus/orchestrator",
        ),
        submitted,
        latency_ms - 60,
    )
    completed = _at(
        drafted.follow(
            AnswersCompleted(
                query_id=query_id,
                conversation_id="c-9",
                status=status,
                answer=answer,
                citations=citations,
                cascade=CASCADE,
                verdicts=[Verdict(check="pii", passed=True), Verdict(check="citations", passed=True)],
            ),
            source="ragbus/guard",
        ),
        submitted,
        latency_ms,
    )
    return Request(submitted, accepted, drafted, completed)


@pytest.fixture
def request_of() -> Callable[..., Request]:
    return make_request


@pytest.fixture
def record_of() -> Callable[[Envelope[Any]], EventRecord]:
    """The `events` row of an envelope, as the monitor makes it from the record a service published."""

    def record(event: Envelope[Any]) -> EventRecord:
        msg = RawMessage(
            topic=type(event.data).topic,
            partition=0,
            offset=0,
            value=event.to_bytes(),
            key=event.key,
            headers=HEADERS,
        )
        return event_record(msg, Topics())

    return record


# --- a PostgreSQL that goes away ------------------------------------------------------------------------


@pytest.fixture
async def pg_proxy(database_url: str, pg_schema: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
def own_postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL server of this test's own (initdb in a temporary directory, a free port), running;
    the test may stop and start it. Skips where the server's binaries cannot run here."""
    try:
        pg = TempPostgres()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server of the test's own: {exc}")
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.cleanup()
