"""The EventStore in PostgreSQL (asyncpg): `events`, `dead_letters` and the `request_summary` view."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import asyncpg.exceptions as pg

from ragbus.common.errors import DependencyUnavailable, PoisonMessage
from ragbus.monitor.adapters.migrator import migrate, quote_ident
from ragbus.monitor.domain import COMPLETED, DRAFTED, FEEDBACK, OUTCOMES, SUBMITTED
from ragbus.monitor.ports import DeadLetterRecord, EventIdReused, EventRecord, RatedRequest, RequestSummary
from ragbus.monitor.settings import MonitorSettings

# Failures that mean "the database cannot be reached right now": raised as DependencyUnavailable, so
# the monitor waits and retries (the shared middleware), it neither drops nor dead-letters the message.
# A lost connection is replaced by the pool on the next attempt.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    pg.PostgresConnectionError,  # ConnectionDoesNotExistError, ConnectionFailureError, rejections
    pg.InterfaceError,  # "connection is closed", a pool closing under us
    pg.OperatorInterventionError,  # CannotConnectNowError (starting up), AdminShutdownError, cancels
    pg.InsufficientResourcesError,  # too many connections, disk full
    pg.TransactionRollbackError,  # serialization failure, deadlock
    OSError,  # ConnectionRefusedError, unreachable host, DNS failure while connecting
    TimeoutError,  # connect or command timeout
)

EVENT_COLUMNS = tuple(f.name for f in dataclasses.fields(EventRecord))
DEAD_LETTER_COLUMNS = tuple(f.name for f in dataclasses.fields(DeadLetterRecord))
SUMMARY_COLUMNS = tuple(f.name for f in dataclasses.fields(RequestSummary))
RATED_COLUMNS = tuple(f.name for f in dataclasses.fields(RatedRequest))


def _insert(schema: str, table: str, columns: tuple[str, ...], key: str) -> str:
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return (
        f"INSERT INTO {quote_ident(schema)}.{table} ({', '.join(columns)}) "  # noqa: S608 - see quote_ident
        f"VALUES ({placeholders}) ON CONFLICT ({key}) DO NOTHING"
    )


def insert_event_sql(schema: str) -> str:
    """The statement that stores one event; `event_row` gives its arguments."""
    return _insert(schema, "events", EVENT_COLUMNS, "event_id")


def event_row(record: EventRecord) -> tuple[Any, ...]:
    """The arguments of `insert_event_sql`, in column order."""
    # Not dataclasses.astuple: it deep-copies `data`, and the dict goes to the jsonb encoder as it is.
    return tuple(getattr(record, c) for c in EVENT_COLUMNS)


def dead_letter_row(record: DeadLetterRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, c) for c in DEAD_LETTER_COLUMNS)


def reused_ids(events: Sequence[EventRecord], stored: Sequence[Any]) -> list[int]:
    """Positions of the events whose id is on record with another digest (rows: event_id, digest)."""
    on_record = {r["event_id"]: r["digest"] for r in stored}
    return [
        i
        for i, e in enumerate(events)
        if e.digest is not None and (d := on_record.get(e.event_id)) is not None and bytes(d) != e.digest
    ]


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python objects (asyncpg passes it as text by default)."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@contextlib.contextmanager
def _classified() -> Iterator[None]:
    """Turn the database's refusals into the two kinds of failure the middleware knows."""
    try:
        yield
    except _UNREACHABLE as exc:
        raise DependencyUnavailable(f"PostgreSQL unreachable: {type(exc).__name__}: {exc}") from exc
    except pg.DataError as exc:  # a value PostgreSQL cannot store (bad encoding, out of range)
        raise PoisonMessage(f"PostgreSQL cannot store this record: {exc}") from exc
    except (pg.UndefinedTableError, pg.InvalidSchemaNameError) as exc:
        # Not migrated yet (migrate_on_startup off, a deployment step still to run): wait for it
        # rather than dead-letter every event meanwhile.
        raise DependencyUnavailable(f"the monitor's tables are missing: {exc}") from exc


class PostgresEventStore:
    """EventStore over an asyncpg pool; every object lives in one schema."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self.schema = schema
        q = quote_ident(schema)
        self._insert_event = insert_event_sql(schema)
        self._insert_dead_letter = _insert(schema, "dead_letters", DEAD_LETTER_COLUMNS, "id")
        # Identifiers only (see quote_ident); values always go as parameters.
        self._select_events = f"SELECT {', '.join(EVENT_COLUMNS)} FROM {q}.events"  # noqa: S608
        self._select_dead_letters = f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM {q}.dead_letters"  # noqa: S608
        self._select_summary = f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM {q}.request_summary"  # noqa: S608
        self._digests = f"SELECT event_id, digest FROM {q}.events WHERE event_id = ANY($1::uuid[])"  # noqa: S608
        self._ping = f"SELECT max(version) FROM {q}.schema_migrations"  # noqa: S608
        # The type is a literal, not a parameter, so the planner can use the partial index
        # events_query_id_idx (migrations/0004_query_ids.sql): one index probe per pair.
        self._known_queries = (
            f"SELECT DISTINCT e.tenant, e.data ->> 'query_id' AS query_id "  # noqa: S608
            f"FROM unnest($1::text[], $2::text[]) AS k(tenant, query_id) "
            f"JOIN {q}.events AS e ON e.tenant = k.tenant AND e.data ->> 'query_id' = k.query_id "
            f"WHERE e.type = '{SUBMITTED}'"
        )
        # domain.finished in SQL. Over no outcome rows the aggregate still yields one row whose max is
        # NULL, so HAVING fails and the flow counts as unfinished. Indexes: events_correlation_idx,
        # dead_letters_correlation_idx, events_type_time_idx.
        part = (
            "CASE WHEN jsonb_typeof(o.data -> '{0}') = 'number' "
            "THEN (o.data ->> '{0}')::numeric::int ELSE {1} END"
        )
        self._unfinished = (
            f"SELECT {', '.join('e.' + c for c in EVENT_COLUMNS)} FROM {q}.events AS e "  # noqa: S608
            "WHERE e.type = ANY($1::text[]) AND e.causation_id IS NULL AND e.event_time >= $2 "
            f"AND NOT EXISTS (SELECT 1 FROM {q}.dead_letters AS d "
            "  WHERE d.correlation_id = e.correlation_id AND d.tenant = e.tenant) "
            f"AND NOT EXISTS (SELECT 1 FROM {q}.events AS o "
            "  WHERE o.correlation_id = e.correlation_id AND o.tenant = e.tenant "
            "  AND e.type || ' ' || o.type = ANY($3::text[]) "
            f"  AND (e.type <> '{FEEDBACK}' OR o.causation_id = e.event_id) "
            f"  HAVING count(DISTINCT {part.format('part', 0)}) >= max({part.format('parts', 1)})) "
            "ORDER BY e.event_time, e.event_id LIMIT $4"
        )
        self._outcome_pairs = [f"{root} {end}" for root, ends in OUTCOMES.items() for end in ends]
        self._rated_requests = rated_requests_sql(schema)

    @classmethod
    async def open(cls, settings: MonitorSettings) -> PostgresEventStore:
        """Connect, and migrate the schema if the settings say so. DependencyUnavailable while down."""
        with _classified():
            return await cls._open(settings)

    @classmethod
    async def _open(cls, settings: MonitorSettings) -> PostgresEventStore:
        pool = await asyncpg.create_pool(
            settings.database_url.get_secret_value(),
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=settings.connect_timeout_s,
            command_timeout=settings.command_timeout_s,
            init=init_connection,
            server_settings={"application_name": "ragbus-monitor"},
        )
        try:
            if settings.migrate_on_startup:
                async with pool.acquire() as conn:
                    await migrate(conn, settings.db_schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, settings.db_schema)

    async def record_event(self, record: EventRecord) -> bool:
        with _classified():
            async with self._pool.acquire() as conn:
                status: str = await conn.execute(self._insert_event, *event_row(record))
                if status == "INSERT 0 1":
                    return True
                if reused_ids([record], await conn.fetch(self._digests, [record.event_id])):
                    raise EventIdReused(record)
        return False

    async def record_dead_letter(self, record: DeadLetterRecord) -> bool:
        with _classified():
            status: str = await self._pool.execute(self._insert_dead_letter, *dead_letter_row(record))
        return status == "INSERT 0 1"

    async def record_batch(
        self, events: Sequence[EventRecord], letters: Sequence[DeadLetterRecord]
    ) -> list[int]:
        # One transaction (one WAL flush) for the whole batch: the difference between ~180 events/s
        # with a commit per event and thousands (bench/monitor.py).
        reused: list[int] = []
        with _classified():
            async with self._pool.acquire() as conn, conn.transaction():
                if events:
                    await conn.executemany(self._insert_event, [event_row(r) for r in events])
                    # One primary-key probe per event, in one query: what is on record under each id
                    # now (this batch's first writer included) tells a redelivery from a reused id.
                    rows = await conn.fetch(self._digests, list({r.event_id for r in events}))
                    reused = reused_ids(events, rows)
                if letters:
                    await conn.executemany(self._insert_dead_letter, [dead_letter_row(r) for r in letters])
        return reused

    async def event(self, event_id: UUID) -> EventRecord | None:
        with _classified():
            row = await self._pool.fetchrow(f"{self._select_events} WHERE event_id = $1", event_id)
        return EventRecord(**dict(row)) if row else None

    async def events(self, tenant: str, correlation_id: str) -> list[EventRecord]:
        with _classified():
            rows = await self._pool.fetch(
                f"{self._select_events} WHERE tenant = $1 AND correlation_id = $2 "
                "ORDER BY event_time, event_id",
                tenant,
                correlation_id,
            )
        return [EventRecord(**dict(r)) for r in rows]

    async def dead_letters(self, dlq_topic: str) -> list[DeadLetterRecord]:
        with _classified():
            rows = await self._pool.fetch(
                f"{self._select_dead_letters} WHERE dlq_topic = $1 ORDER BY received_at, id", dlq_topic
            )
        return [DeadLetterRecord(**dict(r)) for r in rows]

    async def request_summary(self, tenant: str, correlation_id: str) -> RequestSummary | None:
        with _classified():
            row = await self._pool.fetchrow(
                f"{self._select_summary} WHERE tenant = $1 AND correlation_id = $2", tenant, correlation_id
            )
        return RequestSummary(**dict(row)) if row else None

    async def unfinished(self, since: datetime, limit: int) -> list[EventRecord]:
        with _classified():
            rows = await self._pool.fetch(self._unfinished, list(OUTCOMES), since, self._outcome_pairs, limit)
        return [EventRecord(**dict(r)) for r in rows]

    async def known_queries(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        tenants, ids = zip(*set(keys), strict=True)
        with _classified():
            rows = await self._pool.fetch(self._known_queries, list(tenants), list(ids))
        return {(r["tenant"], r["query_id"]) for r in rows}

    async def ping(self) -> None:
        with _classified():
            await self._pool.fetchval(self._ping)

    async def aclose(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except TimeoutError:  # a query that will not finish: drop the connections
            self._pool.terminate()

    async def rated_requests(self, since: datetime, tenant: str | None = None) -> list[RatedRequest]:
        with _classified():
            rows = await self._pool.fetch(self._rated_requests, since, tenant)
        return [RatedRequest(**dict(r)) for r in rows]


def _latest(schema: str, event_type: str, alias: str) -> str:
    """A lateral subquery: the latest event of a type in the flow of the submission `s`."""
    return (
        f"LEFT JOIN LATERAL (SELECT e.data FROM {quote_ident(schema)}.events AS e "  # noqa: S608
        f"WHERE e.tenant = s.tenant AND e.correlation_id = s.correlation_id AND e.type = '{event_type}' "
        f"ORDER BY e.event_time DESC, e.event_id DESC LIMIT 1) AS {alias} ON true "
    )


def rated_requests_sql(schema: str) -> str:
    """`EventStore.rated_requests`: the latest rating of each (tenant, query id), its first submission
    (the partial index events_query_id_idx), the latest draft and completion of that flow, and whether
    any of them was erased. $1: since (on the submission), $2: the tenant or NULL."""
    q = quote_ident(schema)
    return (
        f"SELECT f.tenant, s.correlation_id, f.query_id, "  # noqa: S608 - identifiers via quote_ident
        "COALESCE(c.data ->> 'question', d.data ->> 'question', s.data ->> 'question') AS question, "
        "COALESCE(c.data ->> 'status', 'pending') AS status, c.data ->> 'answer' AS answer, "
        "COALESCE(c.data -> 'citations', '[]'::jsonb) AS citations, "
        "COALESCE(d.data -> 'retrieved', '[]'::jsonb) AS retrieved, "
        "f.rating, f.comment, f.correction, s.event_time AS submitted_at, f.rated_at, "
        f"(f.erased OR EXISTS (SELECT 1 FROM {q}.events AS x WHERE x.tenant = s.tenant "
        "  AND x.correlation_id = s.correlation_id AND x.erased_at IS NOT NULL)) AS erased "
        "FROM (SELECT DISTINCT ON (e.tenant, e.data ->> 'query_id') e.tenant, "
        "  e.data ->> 'query_id' AS query_id, e.data ->> 'rating' AS rating, "
        "  e.data ->> 'comment' AS comment, e.data ->> 'correction' AS correction, e.event_time AS rated_at, "
        "  bool_or(e.erased_at IS NOT NULL) OVER (PARTITION BY e.tenant, e.data ->> 'query_id') AS erased "
        f"  FROM {q}.events AS e WHERE e.type = '{FEEDBACK}' AND ($2::text IS NULL OR e.tenant = $2) "
        "  ORDER BY e.tenant, e.data ->> 'query_id', e.event_time DESC, e.event_id DESC) AS f "
        "CROSS JOIN LATERAL (SELECT p.tenant, p.correlation_id, p.event_time, p.data "
        f"  FROM {q}.events AS p WHERE p.type = '{SUBMITTED}' AND p.tenant = f.tenant "
        "  AND p.data ->> 'query_id' = f.query_id ORDER BY p.event_time, p.event_id LIMIT 1) AS s "
        f"{_latest(schema, DRAFTED, 'd')}{_latest(schema, COMPLETED, 'c')}"
        "WHERE s.event_time >= $1 "
        "ORDER BY s.event_time, s.correlation_id"
    )
