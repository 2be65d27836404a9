"""Tampering with the monitor's record behind its back, case after case, and whether `verify` finds each
change and names the right row.

    python bench/audit_tamper.py [--requests 500] [--cases 25] [--seed 7] [--database-url URL]

The record: `--requests` requests (4 events each) and some dead letters, written by the monitor's own
store over 8 partitions, with a signing key and a checkpoint after every batch. Then, `--cases` times
for each kind, a superuser (past the append-only triggers, as an intruder with the database's keys)
changes one thing, `verify` runs with the key, and the change is undone before the next case:

- edit: one field of one event's data changed (jsonb_set), or a column (topic, tenant, event time);
- delete: one event row deleted;
- insert: a copy of an event inserted under a new id;
- reorder: the data of two events of one chain swapped;
- delete link: one link of a chain deleted (a hole in seq);
- edit link: one link's content digest replaced;
- rewrite: one event edited and every link of its chain from there recomputed (needs no key);
- truncate: the last links of a chain deleted, with their rows.

Found: `verify` reports a problem. Located: a problem names the changed row (its id) or, for the link
cases, the chain and seq changed (truncate/rewrite: the chain).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).parent))
from monitor import mixed_events  # type: ignore[import-not-found]  # bench/monitor.py's traffic

from ragbus.common.envelope import CE_CONTENT_TYPE
from ragbus.common.settings import LogSettings, TelemetrySettings
from ragbus.common.topics import Topics
from ragbus.monitor import audit
from ragbus.monitor.adapters.migrator import quote_ident
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.domain import RawMessage, dead_letter_record, event_record
from ragbus.monitor.settings import MonitorSettings

KEY = "bench-audit-key"


class Case:
    """One tampering: `apply` changes the record and returns what must be named; `undo` restores it."""

    def __init__(self, conn: asyncpg.Connection, q: str, rng: random.Random) -> None:
        self.conn, self.q, self.rng = conn, q, rng

    async def row(self) -> asyncpg.Record:
        rows = await self.conn.fetch(f"SELECT * FROM {self.q}.events ORDER BY random() LIMIT 1")
        return rows[0]

    async def link_of(self, ref: uuid.UUID) -> asyncpg.Record:
        return await self.conn.fetchrow(f"SELECT * FROM {self.q}.audit_log WHERE ref = $1", ref)


async def run_case(
    name: str, store: PostgresEventStore, conn: asyncpg.Connection, q: str, rng: random.Random
) -> tuple[bool, bool]:
    """(found, located) for one case of `name`."""
    c = Case(conn, q, rng)
    undo: Callable[[], Awaitable[Any]]
    expect_refs: set[uuid.UUID] = set()
    expect_at: set[tuple[str, int | None]] = set()
    expect_chain: set[str] = set()
    if name == "edit":
        r = await c.row()
        field = rng.choice(["data", "topic", "tenant", "event_time"])
        if field == "data":
            key = rng.choice(sorted(json.loads(json.dumps(r["data"])).keys()))
            await conn.execute(
                f"UPDATE {q}.events SET data = jsonb_set(data, $2::text[], '\"tampered\"') "
                "WHERE event_id = $1",
                r["event_id"],
                [key],
            )
        elif field == "event_time":
            await conn.execute(
                f"UPDATE {q}.events SET event_time = event_time + interval '1 second' WHERE event_id = $1",
                r["event_id"],
            )
        else:
            await conn.execute(
                f"UPDATE {q}.events SET {field} = {field} || 'x' WHERE event_id = $1", r["event_id"]
            )

        async def undo() -> None:
            await conn.execute(f"DELETE FROM {q}.events WHERE event_id = $1", r["event_id"])
            await _reinsert(conn, q, "events", r)

        expect_refs = {r["event_id"]}
    elif name == "delete":
        r = await c.row()
        await conn.execute(f"DELETE FROM {q}.events WHERE event_id = $1", r["event_id"])

        async def undo() -> None:
            await _reinsert(conn, q, "events", r)

        expect_refs = {r["event_id"]}
    elif name == "insert":
        r = await c.row()
        ghost = dict(r)
        ghost["event_id"] = uuid.uuid4()
        await _reinsert(conn, q, "events", ghost)

        async def undo() -> None:
            await conn.execute(f"DELETE FROM {q}.events WHERE event_id = $1", ghost["event_id"])

        expect_refs = {ghost["event_id"]}
    elif name == "reorder":
        a = await c.row()
        b = await conn.fetchrow(
            f"SELECT * FROM {q}.events WHERE topic = $1 AND kafka_partition = $2 AND tenant = $3 "
            "AND event_id <> $4 AND data <> $5 ORDER BY random() LIMIT 1",
            a["topic"],
            a["kafka_partition"],
            a["tenant"],
            a["event_id"],
            a["data"],
        )
        await conn.execute(f"UPDATE {q}.events SET data = $2 WHERE event_id = $1", a["event_id"], b["data"])
        await conn.execute(f"UPDATE {q}.events SET data = $2 WHERE event_id = $1", b["event_id"], a["data"])

        async def undo() -> None:
            await conn.execute(
                f"UPDATE {q}.events SET data = $2 WHERE event_id = $1", a["event_id"], a["data"]
            )
            await conn.execute(
                f"UPDATE {q}.events SET data = $2 WHERE event_id = $1", b["event_id"], b["data"]
            )

        expect_refs = {a["event_id"], b["event_id"]}
    elif name in ("delete link", "edit link"):
        r = await c.row()
        link = await c.link_of(r["event_id"])
        if name == "delete link":
            await conn.execute(
                f"DELETE FROM {q}.audit_log WHERE chain = $1 AND seq = $2", link["chain"], link["seq"]
            )

            async def undo() -> None:
                await _reinsert(conn, q, "audit_log", link)

            # The hole is named at the link after it; a deleted last link, by the checkpoint that signed it.
            expect_at = {(link["chain"], link["seq"] + 1), (link["chain"], link["seq"])}
        else:
            await conn.execute(
                f"UPDATE {q}.audit_log SET content_digest = $3 WHERE chain = $1 AND seq = $2",
                link["chain"],
                link["seq"],
                os.urandom(32),
            )

            async def undo() -> None:
                await conn.execute(
                    f"UPDATE {q}.audit_log SET content_digest = $3 WHERE chain = $1 AND seq = $2",
                    link["chain"],
                    link["seq"],
                    bytes(link["content_digest"]),
                )

            expect_at = {(link["chain"], link["seq"])}
    elif name == "rewrite":
        r = await c.row()
        link = await c.link_of(r["event_id"])
        chain = link["chain"]
        saved = await conn.fetch(
            f"SELECT * FROM {q}.audit_log WHERE chain = $1 AND seq >= $2", chain, link["seq"]
        )
        await conn.execute(
            f"UPDATE {q}.events SET data = jsonb_set(data, '{{tampered}}', 'true') WHERE event_id = $1",
            r["event_id"],
        )
        prev = bytes(link["prev_hash"])
        for x in saved:
            now = await conn.fetchval(
                f"SELECT {q}.event_content_digest(e) FROM {q}.events e WHERE e.event_id = $1", x["ref"]
            )
            h = audit.link_hash(prev, bytes(now), x["seq"], chain, x["kind"], x["ref"], x["tenant"])
            await conn.execute(
                f"UPDATE {q}.audit_log SET content_digest = $3, prev_hash = $4, hash = $5 "
                "WHERE chain = $1 AND seq = $2",
                chain,
                x["seq"],
                bytes(now),
                prev,
                h,
            )
            prev = h

        async def undo() -> None:
            await conn.execute(f"DELETE FROM {q}.events WHERE event_id = $1", r["event_id"])
            await _reinsert(conn, q, "events", r)
            for x in saved:
                await conn.execute(
                    f"DELETE FROM {q}.audit_log WHERE chain = $1 AND seq = $2", chain, x["seq"]
                )
                await _reinsert(conn, q, "audit_log", x)

        expect_chain = {chain}
    elif name == "truncate":
        r = await c.row()
        chain = (await c.link_of(r["event_id"]))["chain"]
        tail = await conn.fetch(
            f"SELECT * FROM {q}.audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 2", chain
        )
        rows = [await conn.fetchrow(f"SELECT * FROM {q}.events WHERE event_id = $1", x["ref"]) for x in tail]
        for x in tail:
            await conn.execute(f"DELETE FROM {q}.audit_log WHERE chain = $1 AND seq = $2", chain, x["seq"])
            await conn.execute(f"DELETE FROM {q}.events WHERE event_id = $1", x["ref"])

        async def undo() -> None:
            for x, row in zip(tail, rows, strict=True):
                await _reinsert(conn, q, "audit_log", x)
                await _reinsert(conn, q, "events", row)

        expect_chain = {chain}
    else:
        raise ValueError(name)
    try:
        report = await store.verify(key=KEY.encode())
    finally:
        await undo()
    found = not report.ok
    located = any(
        (p.ref in expect_refs) or ((p.chain, p.seq) in expect_at) or (p.chain in expect_chain)
        for p in report.problems
    )
    return found, located


async def _reinsert(conn: asyncpg.Connection, q: str, table: str, row: Any) -> None:
    values = dict(row)
    cols = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    await conn.execute(
        f"INSERT INTO {q}.{table} ({', '.join(cols)}) VALUES ({placeholders})", *[values[c] for c in cols]
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cases", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()
    schema = "bench_tamper_" + uuid.uuid4().hex[:8]
    settings = MonitorSettings(
        database_url=args.database_url,
        db_schema=schema,
        audit_key=SecretStr(KEY),
        audit_checkpoint_s=1e-9,
        log=LogSettings(level="ERROR"),
        telemetry=TelemetrySettings(enabled=False),
    )
    store = await PostgresEventStore.open(settings)
    conn = await asyncpg.connect(args.database_url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.execute("SET session_replication_role = replica")  # past the append-only triggers
    q = quote_ident(schema)
    try:
        t = Topics()
        events = mixed_events(args.requests * 4)
        records = [
            event_record(
                RawMessage(
                    topic=type(e.data).topic,
                    partition=n % 8,
                    offset=n,
                    value=e.to_bytes(),
                    key=e.key,
                    headers={"content-type": CE_CONTENT_TYPE},
                ),
                t,
            )
            for n, e in enumerate(events)
        ]
        letters = [
            dead_letter_record(
                RawMessage(
                    topic="queries.submitted.v1.dlq", partition=0, offset=i, value=b"not an event %d" % i
                ),
                refused="not a CloudEvent",
            )
            for i in range(max(1, args.requests // 100))
        ]
        for i in range(0, len(records), 200):
            await store.record_batch(records[i : i + 200], letters if i == 0 else [])
        clean = await store.verify(key=KEY.encode())
        assert clean.ok, clean.problems[:3]
        print(
            f"record: {clean.rows:,} rows in {clean.chains} chains, {clean.checkpoints} checkpoints; "
            "verify OK"
        )
        rng = random.Random(args.seed)
        kinds = ["edit", "delete", "insert", "reorder", "delete link", "edit link", "rewrite", "truncate"]
        print(f"{'tampering':<14} {'cases':>5} {'found':>6} {'located':>8}")
        total = [0, 0, 0]
        t0 = time.perf_counter()
        for kind in kinds:
            found = located = 0
            for _ in range(args.cases):
                f, loc = await run_case(kind, store, conn, q, rng)
                found += f
                located += loc
            total = [total[0] + args.cases, total[1] + found, total[2] + located]
            print(f"{kind:<14} {args.cases:>5} {found:>6} {located:>8}")
        print(f"{'all':<14} {total[0]:>5} {total[1]:>6} {total[2]:>8}   ({time.perf_counter() - t0:.0f} s)")
        after = await store.verify(key=KEY.encode())
        assert after.ok, f"the record was not restored: {after.problems[:3]}"
    finally:
        await store.aclose()
        await conn.execute("SET session_replication_role = origin")
        await conn.execute(f"DROP SCHEMA IF EXISTS {q} CASCADE")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
