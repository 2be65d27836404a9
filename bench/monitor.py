"""How fast the monitor can write events into PostgreSQL: one commit per event vs batched writes.

    python bench/monitor.py [--requests 1000] [--runs 5] [--batch 100 500] [--database-url URL]

Events are real ragbus envelopes: `--requests` queries, each the four events of a request
(queries.submitted -> queries.accepted -> answers.drafted -> answers.completed, with citations, verdicts
and a two-tier cascade; questions and answers from SciFact when the shared data is there), turned into
`events` rows by the monitor's own domain code. Each mode inserts all of them into a freshly migrated,
emptied table, `--runs` times, and reports the median events/s:

- per-row: `PostgresEventStore.record_event`, one INSERT ... ON CONFLICT and one commit per event, as
  a per-message handler would (and once more with `synchronous_commit=off`, to show how much of it is
  the WAL flush of each commit);
- executemany(B): the same statement for B events at a time, in one transaction each;
- copy(B): COPY of B rows into a temporary table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING
  (COPY itself cannot skip duplicates, and redeliveries must stay no-ops);
- handler: the handler path in process (FastStream's in-memory TestKafkaBroker, the shared middleware,
  parsing and validation), one message per publish, so one record per batch, Kafka itself excluded;
- service: the monitor as it runs, over a real broker (KAFKA_BOOTSTRAP, else a Tansu it starts and
  stops): all events are published first, then the monitor is started and timed until every row is
  in, once with `MONITOR_BATCH_MAX_RECORDS=1` (the per-message baseline) and once per `--batch` size.
  That is its catch-up rate after an outage or under a burst.

It works in a schema of its own, dropped at the end. Commit cost depends on the server's
`synchronous_commit` and disk; the script prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from faststream.kafka import TestKafkaBroker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `bench.ingest`

from bench.ingest import process_table  # the data layer bench's /proc reader

from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDrafted,
    Cascade,
    Citation,
    DocsIndexed,
    DocsSubmitted,
    QueriesAccepted,
    QueriesSubmitted,
    TierAttempt,
    Verdict,
)
from ragbus.common.ids import record_id
from ragbus.common.kafka import client_options
from ragbus.common.refdata import find_data_dir
from ragbus.common.settings import KafkaSettings, LogSettings, TelemetrySettings
from ragbus.common.topics import Topics
from ragbus.monitor.adapters.migrator import migrate, quote_ident
from ragbus.monitor.adapters.postgres import (
    EVENT_COLUMNS,
    PostgresEventStore,
    event_row,
    init_connection,
    insert_event_sql,
)
from ragbus.monitor.app import create_app
from ragbus.monitor.domain import RawMessage, event_record
from ragbus.monitor.ports import EventRecord
from ragbus.monitor.settings import MonitorSettings
from ragbus.monitor.usecases import MonitorDeps

SCIFACT = find_data_dir("scifact")  # None: a stand-in question and answer


def texts(n: int) -> list[tuple[str, str]]:
    """(question, answer) pairs: SciFact claims and the start of a cited abstract, or a stand-in."""
    if SCIFACT is not None:
        claims, corpus = SCIFACT / "train-claims.jsonl", SCIFACT / "corpus.jsonl"
        docs = {d["_id"]: d for d in map(json.loads, corpus.open())}
        pairs = []
        for claim in map(json.loads, claims.open()):
            cited = [docs[str(c)] for c in claim["cited"] if str(c) in docs]
            if cited:
                pairs.append((claim["text"], cited[0]["text"][:600] + " [1]"))
        return [pairs[i % len(pairs)] for i in range(n)]
    q = "Does regular exercise lower resting heart rate in adults?"
    a = "Yes: trials report lower resting heart rate after twelve weeks of training [1]. " * 6
    return [(q, a)] * n


def request_events(question: str, answer: str, i: int) -> list[Envelope[Any]]:
    qid = f"q-{i}"
    submitted = Envelope.new(
        QueriesSubmitted(query_id=qid, question=question, user_id="u-1"),
        source="ragbus/client",
        tenant="acme",
    )
    accepted = submitted.follow(
        QueriesAccepted(query_id=qid, question=question, verdicts=[Verdict(check="injection", passed=True)]),
        source="ragbus/guard",
    )
    cites = [
        Citation(n=n, doc_id=f"doc-{n}", chunk_id=record_id("acme", f"doc-{n}", "0", "h"), score=0.8)
        for n in (1, 2)
    ]
    cascade = Cascade(
        tier=1,
        reason="grounded",
        attempts=[
            TierAttempt(tier=0, name="extractive", accepted=False, reason="low support", latency_ms=3.1),
            TierAttempt(
                tier=1,
                name="smollm2",
                accepted=True,
                reason="grounded",
                latency_ms=900.0,
                prompt_tokens=380,
                completion_tokens=64,
            ),
        ],
    )
    drafted = accepted.follow(
        AnswersDrafted(query_id=qid, question=question, answer=answer, citations=cites, cascade=cascade),
        source="ragbus/orchestrator",
    )
    completed = drafted.follow(
        AnswersCompleted(
            query_id=qid,
            status="answered",
            answer=answer,
            citations=cites,
            cascade=cascade,
            verdicts=[Verdict(check="pii", passed=True)],
        ),
        source="ragbus/guard",
    )
    follow_ups: list[Envelope[Any]] = [accepted, drafted, completed]
    later = [
        e.model_copy(update={"time": submitted.time + timedelta(milliseconds=300 * k)})
        for k, e in enumerate(follow_ups, 1)
    ]
    return [submitted, *later]


def make_events(requests: int) -> list[Envelope[Any]]:
    return [e for i, (q, a) in enumerate(texts(requests)) for e in request_events(q, a, i)]


def to_records(events: list[Envelope[Any]]) -> list[EventRecord]:
    t = Topics()
    return [
        event_record(
            RawMessage(
                topic=type(e.data).topic,
                partition=0,
                offset=n,
                value=e.to_bytes(),
                key=e.key,
                headers={"content-type": CE_CONTENT_TYPE},
            ),
            t,
        )
        for n, e in enumerate(events)
    ]


# --- the write strategies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Db:
    url: str
    schema: str
    pool: asyncpg.Pool
    store: PostgresEventStore


async def per_row(db: Db, records: list[EventRecord], batch: int) -> None:
    for r in records:
        await db.store.record_event(r)


async def executemany(db: Db, records: list[EventRecord], batch: int) -> None:
    sql = insert_event_sql(db.schema)
    async with db.pool.acquire() as conn:
        for i in range(0, len(records), batch):
            async with conn.transaction():
                await conn.executemany(sql, [event_row(r) for r in records[i : i + batch]])


async def copy(db: Db, records: list[EventRecord], batch: int) -> None:
    q = quote_ident(db.schema)
    cols = ", ".join(EVENT_COLUMNS)
    data = EVENT_COLUMNS.index("data")
    # COPY speaks the binary format, which the pool's text jsonb codec cannot: a plain connection
    # takes the JSON as text (asyncpg's own jsonb codec), serialised here.
    conn = await asyncpg.connect(db.url)
    try:
        await conn.execute(
            f"CREATE TEMP TABLE staging (LIKE {q}.events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        for i in range(0, len(records), batch):
            rows = [
                tuple(json.dumps(v) if k == data else v for k, v in enumerate(event_row(r)))
                for r in records[i : i + batch]
            ]
            async with conn.transaction():
                await conn.copy_records_to_table("staging", records=rows, columns=list(EVENT_COLUMNS))
                await conn.execute(
                    f"INSERT INTO {q}.events ({cols}) SELECT {cols} FROM staging "
                    "ON CONFLICT (event_id) DO NOTHING"
                )
    finally:
        await conn.close()


async def timed(db: Db, runs: int, work: Callable[[], Awaitable[None]], n: int) -> float:
    rates = []
    for _ in range(runs):
        # A fresh schema each run: the audit log is append-only and remembers every id it chained.
        async with db.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(db.schema)} CASCADE")
            await migrate(conn, db.schema)
        t0 = time.perf_counter()
        await work()
        rates.append(n / (time.perf_counter() - t0))
        stored = await db.pool.fetchval(f"SELECT count(*) FROM {quote_ident(db.schema)}.events")
        assert stored == n, f"stored {stored} of {n}"
    return statistics.median(rates)


CE_HEADERS = [("content-type", CE_CONTENT_TYPE.encode())]


async def handler_path(
    settings: MonitorSettings, store: PostgresEventStore, events: list[Envelope[Any]]
) -> None:
    app = create_app(settings, MonitorDeps(store=store))
    t = Topics()
    async with TestKafkaBroker(app.kafka_broker) as br:
        for e in events:
            await br.publish(
                e.to_bytes(), t(type(e.data).topic), key=e.key, headers={"content-type": CE_CONTENT_TYPE}
            )


async def service_rate(
    args: argparse.Namespace, settings: MonitorSettings, events: list[Envelope[Any]], batch: int
) -> float:
    """Events/s of the real monitor app draining a backlog of `events` from the broker."""
    from ragbus.stack.broker import local_kafka_settings, scratch_broker

    async with scratch_broker(os.environ.get("KAFKA_BOOTSTRAP")) as bootstrap:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        kafka = local_kafka_settings(bootstrap, prefix)
        t = Topics(prefix)
        await ensure_topics(kafka, t.all_with_dlq)
        producer = AIOKafkaProducer(**client_options(kafka), linger_ms=5)
        await producer.start()
        try:
            sends = [
                await producer.send(t(type(e.data).topic), e.to_bytes(), key=e.key, headers=CE_HEADERS)
                for e in events
            ]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()
        schema = settings.db_schema + f"_svc{batch}"
        app = create_app(
            settings.model_copy(update={"kafka": kafka, "db_schema": schema, "batch_max_records": batch})
        )
        conn = await asyncpg.connect(args.database_url)
        try:
            t0 = time.perf_counter()
            await app.start()
            table = f"{quote_ident(schema)}.events"
            while True:
                if await conn.fetchval(f"SELECT count(*) FROM {table}") >= len(events):
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
        finally:
            await app.stop()
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
            await conn.close()
        return len(events) / elapsed


class _OwnGroup(KafkaSettings):
    """Kafka settings whose consumer group carries a suffix: each run reads the same backlog afresh."""

    group_suffix: str = ""

    def group_id(self, service: str) -> str:
        return super().group_id(service) + self.group_suffix


def mixed_events(n: int) -> list[Envelope[Any]]:
    """`n` events like a day of traffic: requests (4 events each), and for every 10 requests a document
    submitted and indexed."""
    out: list[Envelope[Any]] = []
    pairs = texts(n // 4 + 1)
    for i, (q, a) in enumerate(pairs):
        out += request_events(q, a, i)
        if i % 10 == 0:
            doc = Envelope.new(
                DocsSubmitted(doc_id=f"doc-{i}", title=q[:80], text=a), source="ragbus/client", tenant="acme"
            )
            out += [
                doc,
                doc.follow(DocsIndexed(doc_id=f"doc-{i}", version="v1", upserted=3), source="ragbus/embed"),
            ]
    return out[:n]


def drain_cpu_s() -> float:
    """CPU seconds used so far by this process, its children (the broker) and every PostgreSQL process."""
    me = os.getpid()
    return sum(
        used
        for pid, (name, parent, used) in process_table().items()
        if pid == me or parent == me or name == "postgres"
    )


async def chain_cost(args: argparse.Namespace, settings: MonitorSettings) -> None:
    """The monitor draining one pre-filled backlog of `--chain-events` mixed events (and a dead letter
    per 1,000) three ways, side by side: batches with the hash chain (as shipped), batches without it,
    each `--drains` times in alternating order (chain first, then the other first: a machine that
    slows or speeds up during the run weighs on both alike), and one insert per event (timed over
    `--baseline-seconds`, the rate of what it stored by then). Besides the rates, the CPU each drain
    used (this process, the broker and every PostgreSQL process), per 1,000 events: a figure that
    holds when other work shares the machine. Then `ragbus audit verify` over the chained rows,
    `--runs` times, and beside it this machine's pace: one PostgreSQL core computing the events'
    content digests, verify's floor, so that figures from different days and machines compare."""
    from ragbus.stack.broker import local_kafka_settings, scratch_broker

    events = mixed_events(args.chain_events)
    letters = max(1, len(events) // 1000)
    async with scratch_broker(os.environ.get("KAFKA_BOOTSTRAP")) as bootstrap:
        prefix = f"chain{uuid.uuid4().hex[:6]}."
        kafka = local_kafka_settings(bootstrap, prefix)
        t = Topics(prefix)
        await ensure_topics(kafka, t.all_with_dlq)
        producer = AIOKafkaProducer(**client_options(kafka), linger_ms=20, max_batch_size=1 << 20)
        await producer.start()
        t0 = time.perf_counter()
        try:
            pending = []
            for e in events:
                pending.append(
                    await producer.send(t(type(e.data).topic), e.to_bytes(), key=e.key, headers=CE_HEADERS)
                )
            for i in range(letters):
                pending.append(await producer.send(t.dlq(QueriesSubmitted.topic), b"not an event %d" % i))
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        total = len(events) + letters
        print(
            f"\nbacklog: {len(events):,} events + {letters} dead letters, "
            f"published in {time.perf_counter() - t0:.0f} s"
        )

        async def drain(
            name: str, batch: int, chain: bool, limit_s: float | None
        ) -> tuple[float, float, str]:
            schema = f"{settings.db_schema}_{name}"
            run_kafka = _OwnGroup(**kafka.model_dump(), group_suffix=f"-{name}")
            app = create_app(
                settings.model_copy(
                    update={
                        "kafka": run_kafka,
                        "db_schema": schema,
                        "batch_max_records": batch,
                        "audit_chain": chain,
                    }
                )
            )
            conn = await asyncpg.connect(args.database_url)
            q = quote_ident(schema)
            try:
                t0, cpu0 = time.perf_counter(), drain_cpu_s()
                await app.start()
                stored = 0
                while stored < total:
                    await asyncio.sleep(0.25)
                    stored = await conn.fetchval(
                        f"SELECT (SELECT count(*) FROM {q}.events) + (SELECT count(*) FROM {q}.dead_letters)"
                    )
                    if limit_s is not None and time.perf_counter() - t0 >= limit_s:
                        break
                elapsed, cpu = time.perf_counter() - t0, drain_cpu_s() - cpu0
            finally:
                await app.stop()
                await conn.close()
            return stored / elapsed, cpu / stored * 1000, schema

        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        schemas: list[str] = []
        for i in range(args.drains):
            for chain in (True, False) if i % 2 == 0 else (False, True):
                rate, cpu_per_k, schema = await drain(
                    f"{'chain' if chain else 'nochain'}{i}", 500, chain, None
                )
                runs[chain].append((rate, cpu_per_k))
                schemas.append(schema)
                if chain:
                    chained_schema = schema  # the last chained drain's record is the one verified
        one, _, one_schema = await drain("one", 1, True, args.baseline_seconds)
        schemas.append(one_schema)
        rate_of = {c: statistics.median(r for r, _ in runs[c]) for c in runs}
        cpu_of = {c: statistics.median(u for _, u in runs[c]) for c in runs}
        for label, chain in (
            ("batches of <= 500, hash chain on (as shipped)", True),
            ("batches of <= 500, no chain", False),
        ):
            each = ", ".join(f"{r:,.0f}" for r, _ in runs[chain])
            print(
                f"{label:<48} {rate_of[chain]:>9,.0f} events/s  "
                f"(drains {each}; CPU {cpu_of[chain]:.2f} s per 1,000 events)"
            )
        chained, plain = rate_of[True], rate_of[False]
        print(
            f"{'one insert per event (chain on)':<48} {one:>9,.0f} events/s"
            f"   (first {args.baseline_seconds:.0f} s)"
        )
        print(
            f"the chain costs {1 - chained / plain:.1%} of batched throughput by the medians "
            f"({cpu_of[True] / cpu_of[False] - 1:+.1%} CPU per event); "
            f"batched with it: {chained / one:.1f}x one per event"
        )

        # As `ragbus audit verify` runs it, in a process without this bench's 100k-event backlog in
        # memory: a full collection walking that heap took 1.5 s of one verify's 2.4 s.
        del events
        try:
            await verify_rate(args, settings, chained_schema)
        finally:
            conn = await asyncpg.connect(args.database_url)
            kept = {chained_schema} if args.keep_chain else set()
            for schema in set(schemas) - kept:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
            await conn.close()
            if args.keep_chain:
                print(f"kept the chained record in schema {chained_schema} (time it again: --verify-schema)")


async def verify_rate(args: argparse.Namespace, settings: MonitorSettings, schema: str) -> None:
    """`--runs` verifies of the whole record in `schema`, median rows/s."""
    # verify reads a record at rest: vacuumed and analysed, as autovacuum leaves it soon after a
    # backlog lands. Otherwise the first runs race autovacuum for the same two cores.
    conn = await asyncpg.connect(args.database_url)
    q = quote_ident(schema)
    await conn.execute(f"VACUUM (ANALYZE) {q}.events, {q}.dead_letters, {q}.audit_log")
    await conn.close()
    gc.collect()
    gc.freeze()
    store = await PostgresEventStore.open(settings.model_copy(update={"db_schema": schema}))
    try:
        rates = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            report = await store.verify()
            took = time.perf_counter() - t0
            assert report.ok, report.problems[:5]
            rates.append(report.rows / took)
        print(
            f"verify: {report.rows:,} rows in {report.chains} chains, "
            f"median {statistics.median(rates):,.0f} rows/s "
            f"({report.rows / statistics.median(rates):.2f} s; runs "
            f"{', '.join(f'{r:,.0f}' for r in rates)}), all OK"
        )
        # This machine's pace, for comparing verify figures across machines and days (this kind's speed
        # has wandered by a third between sessions): one core of PostgreSQL computing every event's
        # content digest, the floor of verify's own work, with nothing else running.
        conn = await asyncpg.connect(args.database_url)
        try:
            q = quote_ident(schema)
            await conn.execute("SET max_parallel_workers_per_gather = 0; SET jit = off")
            n = await conn.fetchval(f"SELECT count(*) FROM {q}.events")
            floor = []
            for _ in range(3):
                t0 = time.perf_counter()
                await conn.fetchval(f"SELECT count({q}.event_content_digest(e)) FROM {q}.events AS e")
                floor.append(n / (time.perf_counter() - t0))
        finally:
            await conn.close()
        print(
            f"reference: one PostgreSQL core digests {statistics.median(floor):,.0f} events/s "
            f"(median of 3); verify ran at {statistics.median(rates) / statistics.median(floor):.2f}x that"
        )
    finally:
        await store.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests (4 events each)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 500])
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--no-service", action="store_true", help="skip the runs over a real broker")
    parser.add_argument("--chain-events", type=int, default=100_000, help="backlog of the audit chain runs")
    parser.add_argument("--baseline-seconds", type=float, default=60.0, help="how long one-per-event runs")
    parser.add_argument("--only-chain", action="store_true", help="only the audit chain runs and verify")
    parser.add_argument("--drains", type=int, default=3, help="drains of the backlog per batched mode")
    parser.add_argument("--keep-chain", action="store_true", help="keep the chained record's schema")
    parser.add_argument("--verify-schema", help="only time verify on a schema kept by --keep-chain")
    args = parser.parse_args()

    events = make_events(args.requests)
    t0 = time.perf_counter()
    records = to_records(events)
    parse_rate = len(events) / (time.perf_counter() - t0)
    n = len(records)
    avg_kb = sum(len(e.to_bytes()) for e in events) / n / 1024

    schema = "bench_monitor_" + uuid.uuid4().hex[:8]
    settings = MonitorSettings(
        database_url=args.database_url,
        db_schema=schema,
        pool_min_size=1,
        pool_max_size=2,
        log=LogSettings(level="ERROR"),
        telemetry=TelemetrySettings(enabled=False),
    )
    if args.verify_schema:
        await verify_rate(args, settings, args.verify_schema)
        return
    if args.only_chain:
        await chain_cost(args, settings)
        return
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=2, init=init_connection)
    db = Db(args.database_url, schema, pool, PostgresEventStore(pool, schema))
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schema)
            sync_commit = await conn.fetchval("SHOW synchronous_commit")
            version = await conn.fetchval("SHOW server_version")
        print(
            f"PostgreSQL {version}, synchronous_commit={sync_commit}, {os.cpu_count()} cores; "
            f"{n} events ({args.requests} requests), {avg_kb:.1f} KB each on average; "
            f"median of {args.runs} runs"
        )
        print(f"{'parse + validate (domain.event_record, no I/O)':<48} {parse_rate:>9,.0f} events/s")

        results: list[tuple[str, float]] = []
        rate = await timed(db, args.runs, lambda: per_row(db, records, 1), n)
        results.append(("per-row commit (record_event)", rate))
        # Where the per-row time goes: the WAL flush of each commit. Not an option for the monitor (a
        # crash would lose rows whose Kafka offsets are already committed), shown for the diagnosis.
        async_pool = await asyncpg.create_pool(
            args.database_url,
            min_size=1,
            max_size=1,
            init=init_connection,
            server_settings={"synchronous_commit": "off"},
        )
        try:
            unsafe = Db(args.database_url, schema, async_pool, PostgresEventStore(async_pool, schema))
            rate = await timed(unsafe, args.runs, lambda: per_row(unsafe, records, 1), n)
            results.append(("  (per-row, synchronous_commit=off, unsafe)", rate))
        finally:
            await async_pool.close()
        for b in args.batch:
            rate = await timed(db, args.runs, functools.partial(executemany, db, records, b), n)
            results.append((f"executemany, {b} per transaction", rate))
            rate = await timed(db, args.runs, functools.partial(copy, db, records, b), n)
            results.append((f"COPY + INSERT SELECT, {b} per transaction", rate))
        rate = await timed(
            db, max(1, args.runs // 2 + 1), lambda: handler_path(settings, db.store, events), n
        )
        results.append(("handler path (TestKafkaBroker, per message)", rate))

        if not args.no_service:
            for b in [1, *args.batch]:
                rate = await service_rate(args, settings, events, b)
                results.append((f"service over the broker, batches of <= {b}", rate))

        if not args.no_service:
            await chain_cost(args, settings)

        base = results[0][1]
        for name, rate in results:
            print(f"{name:<48} {rate:>9,.0f} events/s   x{rate / base:.1f}")
        writes = [r for r in results[2:] if r[0].startswith(("executemany", "COPY"))]
        best_name, best = max(writes, key=lambda r: r[1])
        print(f"\nbest batched write: {best_name}, {best / base:.1f}x per-row commit")
        service = {name: rate for name, rate in results if name.startswith("service")}
        if service:
            one = service.pop("service over the broker, batches of <= 1")
            for name, rate in service.items():
                print(f"{name}: {rate / one:.1f}x the same service with batches of 1")
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
