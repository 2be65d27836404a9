"""How fast the monitor's record answers `ragbus audit show`, `ragbus audit list` and `ragbus report`.

    python bench/monitor_reads.py [--requests 20000] [--tenants 10] [--runs 3] [--database-url URL]

Fills a schema of its own (dropped at the end) with `--requests` requests spread over seven days and
`--tenants` tenants, each the events the services publish (question, acceptance with the input guard's
verdicts and stage, a draft with three retrieved chunks and a two-tier cascade, the guarded answer; one
in ten rated), and one `docs.indexed` event per document read, so the version look-ups have something
to find. Then times, median of `--runs`, each through `PostgresEventStore.find_requests` as the commands
call it:

- show: one request by query id, no tenant given, with its sources (`ragbus audit show`);
- list: one tenant's newest 50 (`ragbus audit list --tenant T`);
- report: every request of the seven days without sources, then `reports.report` over them;
- all with sources: the same rows with the document versions looked up (what `show` pays per request).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

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
from ragbus.common.settings import database_url
from ragbus.common.topics import Topics
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.domain import RawMessage, event_record
from ragbus.monitor.ports import EventRecord, RequestQuery
from ragbus.monitor.reports import report
from ragbus.monitor.settings import MonitorSettings

DOCS = 200  # per tenant
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _at(event: Envelope[Any], when: datetime) -> Any:
    return event.model_copy(update={"time": when})


def _record(event: Envelope[Any], offset: int) -> EventRecord:
    headers = {"content-type": CE_CONTENT_TYPE, "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    msg = RawMessage(type(event.data).topic, 0, offset, event.to_bytes(), event.key, headers)
    return event_record(msg, Topics())


def request(i: int, tenant: str, start: datetime) -> list[Envelope[Any]]:
    """The events of request `i`, submitted at `start`."""
    q = f"q-{i}"
    submitted = _at(
        Envelope.new(
            QueriesSubmitted(query_id=q, question=f"question {i} about vitamin D?", user_id=f"u-{i % 97}"),
            source="ragbus/client",
            tenant=tenant,
        ),
        start,
    )

    def ms(n: float) -> datetime:
        return start + timedelta(milliseconds=n)

    guard_in = StageTiming(stage="input guard", service="guard", started_at=ms(5), finished_at=ms(30))
    accepted = _at(
        submitted.follow(
            QueriesAccepted(
                query_id=q, question=f"question {i} about vitamin D?",
                verdicts=[Verdict(check="injection", passed=True)], stages=[guard_in],
            ),
            source="ragbus/guard",
        ),
        ms(35),
    )  # fmt: skip
    docs = [f"doc-{(i * 7 + k) % DOCS}" for k in range(3)]
    chunks = [record_id(tenant, d, "0", "v1") for d in docs]
    retrieved = [
        RetrievedChunk(chunk_id=c, doc_id=d, index=0, score=0.9 - 0.1 * k, title=d)
        for k, (d, c) in enumerate(zip(docs, chunks, strict=True))
    ]
    citations = [Citation(n=1, doc_id=docs[0], chunk_id=chunks[0], title=docs[0])]
    escalated = i % 3 != 0
    attempts = [
        TierAttempt(tier=0, name="extractive", accepted=not escalated, reason="support", latency_ms=3 + i % 5)
    ]
    if escalated:
        attempts.append(
            TierAttempt(
                tier=1, name="smollm2-135m", accepted=True, reason="grounded", latency_ms=600 + i % 400,
                prompt_tokens=400 + i % 50, completion_tokens=50 + i % 20, cost_usd=0.0004, prompt="answer@3",
            )
        )  # fmt: skip
    cascade = Cascade(tier=attempts[-1].tier, reason="grounded", attempts=attempts)
    stages = [
        guard_in,
        StageTiming(stage="retrieval", service="orchestrator", started_at=ms(40), finished_at=ms(70)),
    ]
    drafted = _at(
        accepted.follow(
            AnswersDrafted(
                query_id=q, question=accepted.data.question, answer="an answer [1]", citations=citations,
                retrieved=retrieved, cascade=cascade, stages=stages,
            ),
            source="ragbus/orchestrator",
        ),
        ms(700),
    )  # fmt: skip
    blocked = i % 11 == 0
    completed = _at(
        drafted.follow(
            AnswersCompleted(
                query_id=q, status="blocked" if blocked else "answered", answer="an answer [1]",
                citations=[] if blocked else citations, cascade=cascade, stages=stages,
            ),
            source="ragbus/guard",
        ),
        ms(720),
    )  # fmt: skip
    events: list[Envelope[Any]] = [submitted, accepted, drafted, completed]
    if i % 10 == 0:
        rated = FeedbackSubmitted(query_id=q, rating="up", comment="fine")
        events.append(
            _at(Envelope.new(rated, source="ragbus/cli", tenant=tenant, correlation_id=q), ms(5000))
        )
    return events


async def timed(runs: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = await work()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=database_url())
    args = parser.parse_args()
    schema = "bench_reads_" + uuid.uuid4().hex[:8]
    settings = MonitorSettings(database_url=args.database_url, db_schema=schema, command_timeout_s=600)
    store = await PostgresEventStore.open(settings)
    try:
        now = datetime.now(UTC)
        start = now - timedelta(days=7)
        step = timedelta(days=7) / args.requests
        tenants = [f"t{k}" for k in range(args.tenants)]
        offset, batch = 0, []
        t = time.perf_counter()
        for tenant in tenants:
            for d in range(DOCS):
                doc = DocsIndexed(
                    doc_id=f"doc-{d}", version="v1", chunk_ids=[record_id(tenant, f"doc-{d}", "0", "v1")]
                )
                batch.append(
                    _record(
                        _at(
                            Envelope.new(doc, source="ragbus/embed", tenant=tenant), start - timedelta(days=1)
                        ),
                        offset,
                    )
                )
                offset += 1
        for i in range(args.requests):
            for e in request(i, tenants[i % len(tenants)], start + i * step):
                batch.append(_record(e, offset))
                offset += 1
            if len(batch) >= 2000:
                await store.record_batch(batch, [])
                batch = []
        await store.record_batch(batch, [])
        print(f"filled {offset:,} events ({args.requests:,} requests) in {time.perf_counter() - t:.1f} s")
        conn = await asyncpg.connect(args.database_url)
        await conn.execute(f'VACUUM ANALYZE "{schema}".events')
        await conn.close()

        middle = f"q-{args.requests // 2}"
        show, found = await timed(
            args.runs, lambda: store.find_requests(RequestQuery(request_id=middle, sources=True))
        )
        listed, _ = await timed(args.runs, lambda: store.find_requests(RequestQuery(tenant="t3", limit=50)))
        week = RequestQuery(since=start - timedelta(seconds=1))
        read, rows = await timed(args.runs, lambda: store.find_requests(week))
        t = time.perf_counter()
        figures = report(rows)
        aggregate = time.perf_counter() - t
        full, _ = await timed(args.runs, lambda: store.find_requests(RequestQuery(sources=True)))
        n = len(rows)
        print(f"show (query id, no tenant, with sources): {show * 1000:.1f} ms ({len(found)} row)")
        print(f"list (one tenant, newest 50):              {listed * 1000:.1f} ms")
        print(f"report read ({n:,} requests, no sources):  {read:.2f} s ({read / n * 1e6:.0f} µs a request)")
        print(
            f"report aggregation (reports.report):       {aggregate:.2f} s ({len(figures.tiers)} tier lines)"
        )
        print(f"every request with sources:                {full:.2f} s ({full / n * 1e6:.0f} µs a request)")
    finally:
        conn = await asyncpg.connect(args.database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
