"""The EventStore in PostgreSQL (asyncpg): `events`, `dead_letters` and the `request_summary` view."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
import asyncpg.exceptions as pg

from ragbus.common.errors import DependencyUnavailable, PoisonMessage
from ragbus.monitor import audit
from ragbus.monitor.adapters.migrator import migrate, quote_ident
from ragbus.monitor.domain import COMPLETED, DRAFTED, FEEDBACK, OUTCOMES, SUBMITTED
from ragbus.monitor.ports import (
    DeadLetterRecord,
    EventIdReused,
    EventRecord,
    RatedRequest,
    RequestQuery,
    RequestSummary,
)
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

AUDIT_COLUMNS = ("chain", "seq", "kind", "ref", "tenant", "content_digest", "prev_hash", "hash")
ERASURE_COLUMNS = tuple(f.name for f in dataclasses.fields(audit.Erasure))
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
    """Positions of the events whose id is on record with another digest (rows: ref, digest)."""
    on_record = {r["ref"]: r["digest"] for r in stored}
    return [
        i
        for i, e in enumerate(events)
        if e.digest is not None and (d := on_record.get(e.event_id)) is not None and bytes(d) != e.digest
    ]


def _erasure(row: Any) -> audit.Erasure:
    values = dict(row)
    for name in ("subject_digest", "original_digest", "erased_digest", "mac"):
        if values[name] is not None:
            values[name] = bytes(values[name])
    return audit.Erasure(**values)


def _checkpoint(row: Any) -> audit.Checkpoint:
    heads = {c: (int(seq), str(h)) for c, (seq, h) in row["heads"].items()}
    return audit.Checkpoint(row["id"], row["signed_at"], row["key_id"], heads, bytes(row["mac"]))


def _share_out(chains: list[tuple[str, int]], readers: int) -> list[list[str]]:
    """Chains shared out among readers as runs of neighbours, in the order given (the database's
    order of `audit_log.chain`, its collation's, which need not be Python's), so each reader walks one
    stretch of the primary key; cut where the links are evenly divided."""
    total = sum(n for _, n in chains)
    groups: list[list[str]] = [[]]
    done = 0
    for chain, n in chains:
        # A new run where this chain's middle would pass the current run's share (the last run takes
        # the rest).
        if groups[-1] and len(groups) < readers and done + n / 2 > total * len(groups) / readers:
            groups.append([])
        groups[-1].append(chain)
        done += n
    return groups


def _chain_lock(schema: str, chain: str) -> int:
    digest = hashlib.sha256(f"ragbus.monitor.chain:{schema}:{chain}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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
    except pg.UniqueViolationError as exc:
        # Inserts skip duplicates (ON CONFLICT DO NOTHING), so this is two writers extending one audit
        # chain: a consumer still writing a partition it lost. Retried, it links after the other's rows.
        raise DependencyUnavailable(f"another writer extended the same audit chain: {exc}") from exc
    except pg.DataError as exc:  # a value PostgreSQL cannot store (bad encoding, out of range)
        raise PoisonMessage(f"PostgreSQL cannot store this record: {exc}") from exc
    except (pg.UndefinedTableError, pg.InvalidSchemaNameError) as exc:
        # Not migrated yet (migrate_on_startup off, a deployment step still to run): wait for it
        # rather than dead-letter every event meanwhile.
        raise DependencyUnavailable(f"the monitor's tables are missing: {exc}") from exc


class PostgresEventStore:
    """EventStore over an asyncpg pool; every object lives in one schema."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        *,
        chain: bool = True,
        key: bytes | None = None,
        checkpoint_s: float = 10.0,
    ) -> None:
        self._pool = pool
        self.schema = schema
        self._chain = chain
        self._key = key
        self._checkpoint_s = checkpoint_s
        # Heads this store wrote since its last checkpoint, and when that was (monotonic seconds).
        self._unsigned: dict[str, tuple[int, bytes]] = {}
        self._signed_at = time.monotonic()
        q = quote_ident(schema)
        self._q = q
        # The rows of this batch, one primary-key probe each, in one query: what is on record under each
        # id (a redelivery and a reused id tell apart by `digest`), and for the rows this transaction
        # inserted (xmin is ours: the rest were there before, and chained then) what the chain records,
        # their content digest, computed by the database (migration 0006).
        new_row = "e.xmin = pg_current_xact_id()::xid"
        content = f"CASE WHEN {new_row} THEN {q}.event_content_digest(e) END" if chain else "NULL::bytea"
        self._probe_events = (
            f"SELECT e.event_id AS ref, e.digest, e.tenant, e.topic, e.kafka_partition AS part, "  # noqa: S608
            f"e.kafka_offset AS pos, {content} AS content "
            f"FROM {q}.events AS e WHERE e.event_id = ANY($1::uuid[])"
        )
        self._probe_letters = (
            f"SELECT d.id AS ref, coalesce(d.tenant, '') AS tenant, d.dlq_topic AS topic, "  # noqa: S608
            f"d.kafka_partition AS part, d.kafka_offset AS pos, {q}.dead_letter_content_digest(d) AS content "
            f"FROM {q}.dead_letters AS d WHERE d.id = ANY($1::uuid[]) AND d.xmin = pg_current_xact_id()::xid"
        )
        # One index probe per chain (its primary key, backwards) for the current head.
        self._heads = (
            "SELECT c.chain, h.seq, h.hash FROM unnest($1::text[]) AS c(chain) "  # noqa: S608
            f"JOIN LATERAL (SELECT a.seq, a.hash FROM {q}.audit_log AS a WHERE a.chain = c.chain "
            "ORDER BY a.seq DESC LIMIT 1) AS h ON true"
        )
        self._insert_event = insert_event_sql(schema)
        self._insert_dead_letter = _insert(schema, "dead_letters", DEAD_LETTER_COLUMNS, "id")
        # Identifiers only (see quote_ident); values always go as parameters.
        self._select_events = f"SELECT {', '.join(EVENT_COLUMNS)} FROM {q}.events"  # noqa: S608
        self._select_dead_letters = f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM {q}.dead_letters"  # noqa: S608
        self._select_summary = f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM {q}.request_summary"  # noqa: S608
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
        return cls(
            pool,
            settings.db_schema,
            chain=settings.audit_chain,
            key=settings.audit_signing_key,
            checkpoint_s=settings.audit_checkpoint_s,
        )

    async def record_event(self, record: EventRecord) -> bool:
        with _classified():
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    status: str = await conn.execute(self._insert_event, *event_row(record))
                    rows = await conn.fetch(self._probe_events, [record.event_id])
                    if status == "INSERT 0 1":
                        links = await self._link(conn, rows, [])
                    elif reused_ids([record], rows):
                        raise EventIdReused(record)
                    else:
                        return False
                await self._committed(conn, links)
        return True

    async def record_dead_letter(self, record: DeadLetterRecord) -> bool:
        with _classified():
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    status: str = await conn.execute(self._insert_dead_letter, *dead_letter_row(record))
                    if status != "INSERT 0 1":
                        return False
                    links = await self._link(conn, [], [record.id])
                await self._committed(conn, links)
        return True

    async def _link(
        self, conn: asyncpg.Connection, probed: Sequence[Any], letter_ids: list[UUID]
    ) -> list[audit.Link]:
        """Chain the rows this transaction inserted (docs/audit.md): the events among `probed` (rows of
        `_probe_events`) with a content digest, and the dead letters of `letter_ids` it inserted."""
        if not self._chain:
            return []
        rows: list[tuple[Literal["event", "dead_letter"], Any]]
        rows = [("event", r) for r in probed if r["content"] is not None]
        if letter_ids:
            rows += [("dead_letter", r) for r in await conn.fetch(self._probe_letters, letter_ids)]
        if not rows:
            return []
        entries = [
            audit.Entry(
                kind,
                r["ref"],
                r["tenant"],
                audit.event_chain(r["tenant"], r["topic"], r["part"]),
                r["pos"],
                bytes(r["content"]),
            )
            for kind, r in rows
        ]
        return await self._append(conn, entries)

    async def _append(self, conn: asyncpg.Connection, entries: list[audit.Entry]) -> list[audit.Link]:
        """Link `entries` after their chains' current heads, in this transaction."""
        chains = sorted({e.chain for e in entries})
        heads = {r["chain"]: (r["seq"], bytes(r["hash"])) for r in await conn.fetch(self._heads, chains)}
        links = audit.extend(heads, entries)
        # COPY: the cheapest way in for a batch's links. Two writers of one chain (a consumer that lost
        # its partition and does not know yet) collide on (chain, seq); the loser's batch is retried.
        await conn.copy_records_to_table(
            "audit_log",
            schema_name=self.schema,
            columns=AUDIT_COLUMNS,
            records=[
                (x.chain, x.seq, x.kind, x.ref, x.tenant, x.content_digest, x.prev_hash, x.hash)
                for x in links
            ],
        )
        return links

    async def _committed(self, conn: asyncpg.Connection, links: list[audit.Link]) -> None:
        """After a commit: remember the new heads, and sign them when a checkpoint is due."""
        self._unsigned.update(audit.heads_of(links))
        if self._key is None or not self._unsigned:
            return
        if time.monotonic() - self._signed_at < self._checkpoint_s:
            return
        cp = audit.sign_checkpoint(self._key, uuid.uuid4(), datetime.now(UTC), self._unsigned)
        await conn.execute(
            f"INSERT INTO {self._q}.audit_checkpoints (id, signed_at, key_id, heads, mac) "  # noqa: S608
            "VALUES ($1, $2, $3, $4, $5)",
            cp.id,
            cp.signed_at,
            cp.key_id,
            {c: list(h) for c, h in cp.heads.items()},
            cp.mac,
        )
        self._unsigned = {}
        self._signed_at = time.monotonic()

    async def checkpoint(self) -> bool:
        """Sign the heads written since the last checkpoint now (at shutdown); False if nothing to sign."""
        if self._key is None or not self._unsigned:
            return False
        self._signed_at = float("-inf")
        with _classified():
            async with self._pool.acquire() as conn:
                await self._committed(conn, [])
        return True

    async def record_batch(
        self, events: Sequence[EventRecord], letters: Sequence[DeadLetterRecord]
    ) -> list[int]:
        # One transaction (one WAL flush) for the whole batch: the difference between ~180 events/s
        # with a commit per event and thousands (bench/monitor.py).
        reused: list[int] = []
        with _classified():
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    rows: list[Any] = []
                    if events:
                        await conn.executemany(self._insert_event, [event_row(r) for r in events])
                        # What is on record under each id now (this batch's first writer included)
                        # tells a redelivery from a reused id; the rows inserted now get their links.
                        rows = await conn.fetch(self._probe_events, list({r.event_id for r in events}))
                        reused = reused_ids(events, rows)
                    if letters:
                        await conn.executemany(
                            self._insert_dead_letter, [dead_letter_row(r) for r in letters]
                        )
                    links = await self._link(conn, rows, list({r.id for r in letters}))
                await self._committed(conn, links)
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

    # --- the audit record (docs/audit.md) -----------------------------------------------------------

    async def verify(
        self, tenant: str | None = None, key: bytes | None = None, *, readers: int = 2
    ) -> audit.Report:
        """Check the audit record (`audit.Verifier`) as of one snapshot, so that what the monitor writes
        meanwhile is either wholly in it or not at all. The chains are shared out among `readers`
        connections in that one snapshot (`pg_export_snapshot`), so the database computes the rows'
        digests on as many cores while Python checks the links; each reader streams its chains
        through a cursor, in order."""
        q = self._q
        # Joins, not a lookup per link: the digests of the rows in one pass, in the chains' order.
        links = (
            f"SELECT {', '.join(f'a.{c}' for c in audit.ROW_FIELDS[:-1])}, "  # noqa: S608
            f"CASE a.kind WHEN 'event' THEN {q}.event_content_digest(e) "
            f"WHEN 'dead_letter' THEN {q}.dead_letter_content_digest(d) END AS current "
            f"FROM {q}.audit_log AS a "
            f"LEFT JOIN {q}.events AS e ON a.kind = 'event' AND e.event_id = a.ref "
            f"LEFT JOIN {q}.dead_letters AS d ON a.kind = 'dead_letter' AND d.id = a.ref "
            # The bounds let a reader walk the primary key (chain, seq) in order, so rows stream out as
            # their digests are computed, while Python checks the ones before: no sort to wait for.
            "WHERE a.chain >= $1 AND a.chain <= $2 AND a.chain = ANY($3::text[]) ORDER BY a.chain, a.seq"
        )
        chains = (
            f"SELECT chain, count(*) AS n FROM {q}.audit_log "  # noqa: S608
            "WHERE ($1::text IS NULL OR tenant = $1) GROUP BY chain ORDER BY chain"
        )
        unchained = (
            f"SELECT 'event' AS kind, e.event_id AS ref FROM {q}.events AS e "  # noqa: S608
            "WHERE ($1::text IS NULL OR e.tenant = $1) AND NOT EXISTS "
            f"(SELECT 1 FROM {q}.audit_log AS a WHERE a.ref = e.event_id AND a.kind = 'event') "
            f"UNION ALL SELECT 'dead_letter', d.id FROM {q}.dead_letters AS d "
            "WHERE ($1::text IS NULL OR coalesce(d.tenant, '') = $1) AND NOT EXISTS "
            f"(SELECT 1 FROM {q}.audit_log AS a WHERE a.ref = d.id AND a.kind = 'dead_letter')"
        )
        checkpoints = (
            f"SELECT id, signed_at, key_id, heads, mac FROM {q}.audit_checkpoints ORDER BY signed_at, id"  # noqa: S608
        )
        erasures = (
            f"SELECT {', '.join(ERASURE_COLUMNS)} FROM {q}.erasures "  # noqa: S608
            "WHERE ($1::text IS NULL OR tenant = $1) ORDER BY erased_at, id"
        )

        async def read(conn: asyncpg.Connection, verifier: audit.Verifier, group: list[str], n: int) -> None:
            if not group:
                return
            # In chunks, not row by row: an awaited step per row would cost more than checking it. The
            # next chunk is asked for before this one is checked, so the database computes it meanwhile.
            cursor = await conn.cursor(links, group[0], group[-1], group)
            ahead = asyncio.ensure_future(cursor.fetch(2_000))
            try:
                while rows := await ahead:
                    ahead = asyncio.ensure_future(cursor.fetch(2_000))
                    await asyncio.sleep(0)  # the request goes out before the checking holds the loop
                    verifier.feed_rows(rows, n)
            finally:
                if not ahead.done():
                    ahead.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ahead

        with _classified():
            async with contextlib.AsyncExitStack() as stack:
                first = await stack.enter_async_context(self._pool.acquire())
                await stack.enter_async_context(first.transaction(isolation="repeatable_read", readonly=True))
                # The chains' order is the primary key's: no sort, which would hold every row back until
                # the last digest is computed. The unchained search's hash of every link's id in memory,
                # not in temporary files. No JIT: its compile time buys nothing on a plan that hashes rows.
                settings = "SET LOCAL enable_sort = off; SET LOCAL work_mem = '64MB'; SET LOCAL jit = off"
                await first.execute(settings)
                snapshot = await first.fetchval("SELECT pg_export_snapshot()")
                verifier = audit.Verifier(
                    checkpoints=[_checkpoint(r) for r in await first.fetch(checkpoints)],
                    erasures=[_erasure(r) for r in await first.fetch(erasures, tenant)],
                    key=key,
                    tenant=tenant,
                )
                counts = [(r["chain"], r["n"]) for r in await first.fetch(chains, tenant)]
                groups = _share_out(counts, max(1, min(readers, self._pool.get_max_size())))

                async def join_snapshot() -> asyncpg.Connection:
                    conn = await stack.enter_async_context(self._pool.acquire())
                    await stack.enter_async_context(
                        conn.transaction(isolation="repeatable_read", readonly=True)
                    )
                    await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'; {settings}")
                    return conn

                conns = [first, *[await join_snapshot() for _ in groups[1:]]]
                # The search for rows on no chain runs beside the readers when the pool has a connection
                # to spare (it is a pass over every row's id, a tenth of a verify), else after them.
                searcher = await join_snapshot() if len(conns) < self._pool.get_max_size() else None
                search = asyncio.ensure_future(searcher.fetch(unchained, tenant)) if searcher else None
                try:
                    await asyncio.gather(
                        *(read(c, verifier, g, n) for n, (c, g) in enumerate(zip(conns, groups, strict=True)))
                    )
                    rows = await search if search else await first.fetch(unchained, tenant)
                finally:
                    if search is not None and not search.done():
                        search.cancel()
                missing = [(r["kind"], r["ref"]) for r in rows]
        # One snapshot: the readers saw exactly the links counted. Anything else is a bug in how they
        # were shared out, and a verify that skipped links must never say "OK".
        expected = sum(n for _, n in counts)
        if verifier.report.rows != expected:
            raise RuntimeError(f"verify read {verifier.report.rows} links of the {expected} on record")
        return verifier.finish(missing)

    async def erase(
        self,
        tenant: str,
        *,
        user_id: str | None = None,
        key: bytes | None = None,
        reason: str = "erasure request",
    ) -> list[audit.Erasure]:
        """Redact the personal data of one user (every request they asked, all its events) or, with no
        user, of the whole tenant: each row's data loses `audit.PERSONAL_KEYS`, a dead letter its body,
        and an erasure record (digests before and after, signed with `key`) is chained per tenant.
        One transaction; rows already erased are skipped, so running it again changes nothing."""
        q = self._q
        # The rows of alias `a` to erase: those of the user's requests (every correlation where the user
        # asked), or all of the tenant's.
        requests = (
            f"SELECT u.tenant, u.correlation_id FROM {q}.events AS u "  # noqa: S608
            "WHERE u.tenant = $1 AND u.data ->> 'user_id' = $2"
        )
        if user_id is not None:
            scope, letters_scope = (f"({a}.tenant, {a}.correlation_id) IN ({requests})" for a in ("e", "d"))
        else:
            scope, letters_scope = (f"{a}.tenant = $1 AND $2::text IS NULL" for a in ("e", "d"))
        subject = audit.subject_digest(tenant, user_id) if user_id is not None else None
        erased: list[audit.Erasure] = []
        with _classified():
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    f"SELECT e.event_id, e.data, {q}.event_content_digest(e) AS digest FROM {q}.events AS e "  # noqa: S608
                    f"WHERE {scope} AND e.erased_at IS NULL FOR UPDATE",
                    tenant,
                    user_id,
                )
                now = datetime.now(UTC)
                for r in rows:
                    after = await conn.fetchval(
                        f"UPDATE {q}.events AS e SET data = $2, erased_at = $3 WHERE event_id = $1 "  # noqa: S608
                        f"RETURNING {q}.event_content_digest(e)",
                        r["event_id"],
                        audit.redact(r["data"]),
                        now,
                    )
                    erased.append(
                        audit.Erasure(
                            uuid.uuid4(),
                            "event",
                            r["event_id"],
                            tenant,
                            "redact",
                            reason,
                            subject,
                            bytes(r["digest"]),
                            bytes(after),
                            now,
                        ).signed(key)
                    )
                letters = await conn.fetch(
                    f"SELECT d.id, {q}.dead_letter_content_digest(d) AS digest FROM {q}.dead_letters AS d "  # noqa: S608
                    f"WHERE {letters_scope} AND d.erased_at IS NULL FOR UPDATE",
                    tenant,
                    user_id,
                )
                for r in letters:
                    after = await conn.fetchval(
                        f"UPDATE {q}.dead_letters AS d SET body = ''::bytea, erased_at = $2 WHERE id = $1 "  # noqa: S608
                        f"RETURNING {q}.dead_letter_content_digest(d)",
                        r["id"],
                        now,
                    )
                    erased.append(
                        audit.Erasure(
                            uuid.uuid4(),
                            "dead_letter",
                            r["id"],
                            tenant,
                            "redact",
                            reason,
                            subject,
                            bytes(r["digest"]),
                            bytes(after),
                            now,
                        ).signed(key)
                    )
                await self._record_erasures(conn, tenant, erased)
        return erased

    async def purge(
        self, tenant: str, event_type: str | None, before: datetime, *, key: bytes | None = None
    ) -> list[audit.Erasure]:
        """Delete the tenant's events of `event_type` (with None: its dead letters) recorded before
        `before`; each deletion is an erasure record (action `purge`), so the chains still verify."""
        q = self._q
        if event_type is not None:
            kind: Literal["event", "dead_letter"] = "event"
            sql = (
                f"DELETE FROM {q}.events AS e WHERE e.tenant = $1 AND e.type = $2 AND e.event_time < $3 "  # noqa: S608
                f"RETURNING e.event_id AS ref, {q}.event_content_digest(e) AS digest"
            )
        else:
            kind = "dead_letter"
            sql = (
                f"DELETE FROM {q}.dead_letters AS d WHERE d.tenant = $1 AND $2::text IS NULL "  # noqa: S608
                f"AND d.received_at < $3 RETURNING d.id AS ref, {q}.dead_letter_content_digest(d) AS digest"
            )
        now = datetime.now(UTC)
        with _classified():
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(sql, tenant, event_type, before)
                # The digest each row held when it went: after a redaction, the redacted one.
                purged = [
                    audit.Erasure(
                        uuid.uuid4(),
                        kind,
                        r["ref"],
                        tenant,
                        "purge",
                        "retention",
                        None,
                        bytes(r["digest"]),
                        None,
                        now,
                    ).signed(key)
                    for r in rows
                ]
                await self._record_erasures(conn, tenant, purged)
        return purged

    async def count_before(self, tenant: str, event_type: str | None, before: datetime) -> int:
        """How many rows `purge` would delete."""
        q = self._q
        if event_type is not None:
            sql = f"SELECT count(*) FROM {q}.events WHERE tenant = $1 AND type = $2 AND event_time < $3"  # noqa: S608
        else:
            sql = (
                f"SELECT count(*) FROM {q}.dead_letters "  # noqa: S608
                "WHERE tenant = $1 AND $2::text IS NULL AND received_at < $3"
            )
        with _classified():
            return int(await self._pool.fetchval(sql, tenant, event_type, before))

    async def tenants_and_types(self) -> list[tuple[str, str | None]]:
        """The (tenant, event type) pairs on record, and (tenant, None) for each tenant's dead letters."""
        q = self._q
        sql = (
            f"SELECT DISTINCT tenant, type FROM {q}.events "  # noqa: S608
            f"UNION SELECT DISTINCT tenant, NULL FROM {q}.dead_letters WHERE tenant IS NOT NULL"
        )
        with _classified():
            return [(r["tenant"], r["type"]) for r in await self._pool.fetch(sql)]

    async def _record_erasures(
        self, conn: asyncpg.Connection, tenant: str, erasures: list[audit.Erasure]
    ) -> None:
        if not erasures:
            return
        await conn.copy_records_to_table(
            "erasures",
            schema_name=self.schema,
            columns=ERASURE_COLUMNS,
            records=[tuple(getattr(e, c) for c in ERASURE_COLUMNS) for e in erasures],
        )
        chain = audit.erasure_chain(tenant)
        # The erasure chain is written by operators, not by a partition's consumer: lock it for the
        # transaction, so two erasures at once queue rather than fork it.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _chain_lock(self.schema, chain))
        entries = [audit.Entry("erasure", e.id, tenant, chain, i, e.digest()) for i, e in enumerate(erasures)]
        links = await self._append(conn, entries)
        self._unsigned.update(audit.heads_of(links))

    async def ping(self) -> None:
        with _classified():
            await self._pool.fetchval(self._ping)

    async def aclose(self) -> None:
        # Seal what this monitor chained since its last checkpoint, so a clean stop leaves nothing unsigned.
        with contextlib.suppress(DependencyUnavailable, PoisonMessage):
            await self.checkpoint()
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except TimeoutError:  # a query that will not finish: drop the connections
            self._pool.terminate()

    async def find_requests(self, query: RequestQuery) -> list[RequestSummary]:
        # Only the filters given, each a parameter: a condition like `$1 IS NULL OR tenant = $1` would
        # keep a generic plan off the indexes. Tenant and time reach the scan of `events`.
        filters = {
            "tenant = ${}": query.tenant,
            "user_id = ${}": query.user_id,
            "submitted_at >= ${}": query.since,
            "submitted_at < ${}": query.until,
            "status = ${}": query.status,
            "model = ${}": query.model,
            "(query_id = ${0} OR correlation_id = ${0})": query.request_id,
        }
        where: list[str] = []
        args: list[Any] = []
        for condition, value in filters.items():
            if value is not None:
                args.append(value)
                where.append(condition.format(len(args)))
        columns = SUMMARY_COLUMNS if query.sources else [c for c in SUMMARY_COLUMNS if c != "sources"]
        sql = f"SELECT {', '.join(columns)} FROM {quote_ident(self.schema)}.request_summary"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        # Byte order for the tie-breakers, as Python compares strings (the in-memory store).
        sql += ' ORDER BY submitted_at DESC, tenant COLLATE "C", correlation_id COLLATE "C"'
        if query.limit is not None:
            args.append(query.limit)
            sql += f" LIMIT ${len(args)}"
        with _classified():
            async with self._pool.acquire() as conn, conn.transaction(readonly=True):
                # Index probes per row, which JIT compilation (~1 s on a small machine) never repays.
                await conn.execute("SET LOCAL jit = off")
                rows = await conn.fetch(sql, *args)
        return [RequestSummary(**dict(r)) for r in rows]

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
