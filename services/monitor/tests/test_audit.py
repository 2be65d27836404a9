"""The audit record in PostgreSQL (marked `integration`): what the monitor writes is chained, and every
kind of tampering done behind its back, with a superuser's rights, is found and located by `verify`;
erasure and purge keep it green; the writer role cannot update or delete."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from ragbus.common.envelope import Envelope
from ragbus.common.errors import DependencyUnavailable
from ragbus.common.testing import Harness, eventually
from ragbus.common.topics import Topics
from ragbus.monitor import audit
from ragbus.monitor.adapters.migrator import load_migrations, migrate
from ragbus.monitor.adapters.postgres import PostgresEventStore, event_row, init_connection
from ragbus.monitor.app import create_app
from ragbus.monitor.audit_cli import audit as audit_command
from ragbus.monitor.audit_cli import grant_writer
from ragbus.monitor.domain import RawMessage, dead_letter_record, event_record
from ragbus.monitor.ports import DeadLetterRecord, EventRecord
from ragbus.monitor.settings import MonitorSettings
from ragbus.monitor.usecases import MonitorDeps

from .conftest import HEADERS, make_request

pytestmark = pytest.mark.integration
KEY = b"audit-key-for-tests"


def records(events: list[Envelope[Any]], partition: int = 0, first_offset: int = 0) -> list[EventRecord]:
    out = []
    for i, event in enumerate(events):
        msg = RawMessage(
            topic=type(event.data).topic,
            partition=partition,
            offset=first_offset + i,
            value=event.to_bytes(),
            key=event.key,
            headers=HEADERS,
        )
        out.append(event_record(msg, Topics()))
    return out


def letter(offset: int) -> DeadLetterRecord:
    msg = RawMessage(topic="queries.submitted.dlq", partition=0, offset=offset, value=b"\xff not an event")
    return dead_letter_record(msg, refused="not a CloudEvent")


@pytest.fixture
async def keyed(settings: MonitorSettings, pg_schema: str) -> AsyncIterator[PostgresEventStore]:
    """A store that signs a checkpoint after every write."""
    store = await PostgresEventStore.open(
        settings.model_copy(
            update={"db_schema": pg_schema, "audit_key": SecretStr(KEY.decode()), "audit_checkpoint_s": 1e-9}
        )
    )
    yield store
    await store.aclose()


@pytest.fixture
async def su(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection that can get past the append-only triggers, as an intruder with the
    database's keys could."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("SET session_replication_role = replica")
    yield conn
    await conn.close()


async def fill(store: PostgresEventStore, n: int = 3, tenant: str = "acme") -> list[EventRecord]:
    """`n` requests of four events each over two partitions, and a dead letter."""
    written = []
    for i in range(n):
        events = make_request(tenant=tenant, query_id=f"q-{i}").all
        batch = records(events, partition=i % 2, first_offset=10 * i)
        await store.record_batch(batch, [letter(i)] if i == 0 else [])
        written += batch
    return written


def problems(report: audit.Report) -> list[tuple[str, str | None, int | None]]:
    return [(p.kind, p.chain, p.seq) for p in report.problems]


async def test_every_row_is_chained_once_and_verifies(
    keyed: PostgresEventStore, su: asyncpg.Connection
) -> None:
    written = await fill(keyed)
    await keyed.record_batch(written, [letter(0)])  # a redelivery: nothing new, no new link
    q = f'"{keyed.schema}"'
    assert await su.fetchval(f"SELECT count(*) FROM {q}.audit_log") == 13
    assert await su.fetchval(f"SELECT count(DISTINCT chain) FROM {q}.audit_log") == 9  # 4 topics x 2 + dlq
    report = await keyed.verify(key=KEY)
    assert report.ok, report.problems
    assert (report.rows, report.unsealed) == (13, 0)
    assert report.checkpoints >= 1
    # One at a time as well as in batches.
    one = records(make_request(query_id="q-single").all[:1], partition=5)
    assert await keyed.record_event(one[0]) is True
    assert await keyed.record_event(one[0]) is False
    assert (await keyed.verify(key=KEY)).ok


@pytest.mark.parametrize("readers", [1, 2, 3, 4])
async def test_verify_reads_every_chain_whatever_the_collation_orders_first(
    keyed: PostgresEventStore, su: asyncpg.Connection, readers: int
) -> None:
    # Readers walk runs of chains between bounds: the runs must follow the database's order of the
    # chain column, not Python's. Under ICU's English order "acme" < "Acme" < "beta" < "Zeta", while
    # Python puts "Zeta" before "acme".
    q = f'"{keyed.schema}"'
    await su.execute(f'ALTER TABLE {q}.audit_log ALTER COLUMN chain TYPE text COLLATE "en-x-icu"')
    for tenant in ("acme", "Acme", "beta", "Zeta", "zeta"):
        await fill(keyed, n=2, tenant=tenant)
    total = await su.fetchval(f"SELECT count(*) FROM {q}.audit_log")
    report = await keyed.verify(key=KEY, readers=readers)
    assert report.ok, report.problems
    assert report.rows == total
    # And a row edited in any of them is still found.
    victim = await su.fetchval(
        f"SELECT ref FROM {q}.audit_log WHERE tenant = 'Zeta' AND kind = 'event' LIMIT 1"
    )
    await su.execute(f"UPDATE {q}.events SET data = data || '{{\"x\": 1}}' WHERE event_id = $1", victim)
    found = await keyed.verify(key=KEY, readers=readers)
    assert [(p.kind, p.ref) for p in found.problems] == [("edited", victim)]


async def test_the_sql_link_hash_is_the_python_one(keyed: PostgresEventStore, su: asyncpg.Connection) -> None:
    ref = uuid.uuid4()
    args = (audit.ZERO, b"\x01" * 32, 7, "acme|queries.submitted|3", "event", ref, "acmé")
    in_sql = await su.fetchval(f'SELECT "{keyed.schema}".audit_link_hash($1, $2, $3, $4, $5, $6, $7)', *args)
    assert bytes(in_sql) == audit.link_hash(*args)


async def test_rows_stored_before_the_chain_existed_are_chained_by_the_migration(
    database_url: str, pg_schema: str, settings: MonitorSettings
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, pg_schema, load_migrations()[:5])
        # The monitor as it was before migration 6: no chain.
        old = PostgresEventStore(
            await asyncpg.create_pool(database_url, min_size=1, max_size=2, init=init_connection),
            pg_schema,
            chain=False,
        )
        await fill(old)
        await old.aclose()
        assert await migrate(conn, pg_schema, load_migrations()[:6]) == [6]
    finally:
        await conn.close()
    store = await PostgresEventStore.open(settings.model_copy(update={"db_schema": pg_schema}))
    try:
        report = await store.verify()
        assert report.ok
        assert report.rows == 13
        await fill(store, 1, tenant="beta")  # and the chains go on from there
        assert (await store.verify()).ok
    finally:
        await store.aclose()


async def test_an_edited_row_is_found_and_named(keyed: PostgresEventStore, su: asyncpg.Connection) -> None:
    written = await fill(keyed)
    target = written[5]
    await su.execute(
        f"""UPDATE "{keyed.schema}".events SET data = jsonb_set(data, '{{answer}}', '"edited"') """
        "WHERE event_id = $1",
        target.event_id,
    )
    report = await keyed.verify(key=KEY)
    assert [(p.kind, p.ref) for p in report.problems] == [("edited", target.event_id)]
    assert report.problems[0].chain == audit.event_chain("acme", target.topic, target.kafka_partition)


async def test_a_deleted_row_or_link_is_found_and_named(
    keyed: PostgresEventStore, su: asyncpg.Connection
) -> None:
    written = await fill(keyed)
    q = f'"{keyed.schema}"'
    await su.execute(f"DELETE FROM {q}.events WHERE event_id = $1", written[0].event_id)
    report = await keyed.verify(key=KEY)
    assert [(p.kind, p.ref) for p in report.problems] == [("deleted", written[0].event_id)]
    # Both the row and its link: the chain has a hole where it was.
    await su.execute(f"DELETE FROM {q}.audit_log WHERE ref = $1", written[0].event_id)
    chain = audit.event_chain("acme", written[0].topic, 0)
    kinds = problems(await keyed.verify(key=KEY))
    assert ("deleted", chain, 2) in kinds or ("rewritten", chain, 2) in kinds


async def test_a_row_inserted_behind_the_monitors_back_is_found(
    keyed: PostgresEventStore, su: asyncpg.Connection
) -> None:
    await fill(keyed)
    ghost = records(make_request(query_id="q-ghost").all[:1], partition=0, first_offset=999)[0]
    plain = PostgresEventStore(keyed._pool, keyed.schema, chain=False)  # the table, not the chain
    await plain.record_event(ghost)
    report = await keyed.verify(key=KEY)
    assert [(p.kind, p.ref) for p in report.problems] == [("inserted", ghost.event_id)]


async def test_reordered_rows_are_found(keyed: PostgresEventStore, su: asyncpg.Connection) -> None:
    written = await fill(keyed)
    q = f'"{keyed.schema}"'
    # Swap what links 1 and 2 of one chain say, each link left intact but in the other's place.
    chain = audit.event_chain("acme", written[0].topic, 0)
    await su.execute(f"DROP INDEX {q}.audit_log_ref_idx")
    await su.execute(
        f"UPDATE {q}.audit_log AS a SET ref = b.ref, content_digest = b.content_digest, "
        "prev_hash = b.prev_hash, hash = b.hash, seq = a.seq "
        f"FROM {q}.audit_log AS b "
        "WHERE a.chain = $1 AND b.chain = $1 AND a.seq + b.seq = 3 AND a.seq <> b.seq",
        chain,
    )
    found = problems(await keyed.verify(key=KEY))
    assert ("edited", chain, 1) in found
    assert all(c == chain for _, c, _ in found)


async def test_a_chain_rebuilt_after_an_edit_is_caught_by_the_signed_checkpoint(
    keyed: PostgresEventStore, su: asyncpg.Connection
) -> None:
    written = await fill(keyed)
    q = f'"{keyed.schema}"'
    target = written[1]
    chain = audit.event_chain("acme", target.topic, target.kafka_partition)
    # Edit a row, then recompute its link and every link after it, as someone who read this code would.
    await su.execute(
        f"""UPDATE {q}.events SET data = jsonb_set(data, '{{question}}', '"rewritten"') """
        "WHERE event_id = $1",
        target.event_id,
    )
    links = await su.fetch(
        f"SELECT a.*, {q}.event_content_digest(e) AS now FROM {q}.audit_log a "
        f"JOIN {q}.events e ON e.event_id = a.ref WHERE chain = $1 ORDER BY seq",
        chain,
    )
    prev = audit.ZERO
    for r in links:
        h = audit.link_hash(prev, bytes(r["now"]), r["seq"], chain, r["kind"], r["ref"], r["tenant"])
        await su.execute(
            f"UPDATE {q}.audit_log SET content_digest = $1, prev_hash = $2, hash = $3 "
            "WHERE chain = $4 AND seq = $5",
            bytes(r["now"]),
            prev,
            h,
            chain,
            r["seq"],
        )
        prev = h
    # The chain alone looks fine now; the heads the checkpoints recorded do not.
    report = await keyed.verify(key=KEY)
    assert {(p.kind, p.chain) for p in report.problems} == {("rewritten", chain)}
    # Emptying the checkpoints' heads would hide it from a check without the key, not from one with it.
    await su.execute(f"UPDATE {q}.audit_checkpoints SET heads = '{{}}'::jsonb")
    assert (await keyed.verify()).ok
    assert {p.kind for p in (await keyed.verify(key=KEY)).problems} == {"forged"}


async def test_the_record_is_append_only_even_for_its_owner(
    keyed: PostgresEventStore, database_url: str
) -> None:
    await fill(keyed, 1)
    conn = await asyncpg.connect(database_url)
    q = f'"{keyed.schema}"'
    try:
        for sql in (
            f"UPDATE {q}.audit_log SET seq = seq + 100",
            f"DELETE FROM {q}.audit_log",
            f"TRUNCATE {q}.audit_log",
            f"DELETE FROM {q}.audit_checkpoints",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()


async def test_erasing_a_user_redacts_their_requests_and_verify_stays_green(
    keyed: PostgresEventStore, su: asyncpg.Connection
) -> None:
    await fill(keyed, 2)  # user u-7 asked both
    other = make_request(query_id="q-other")
    other_records = records(
        [
            other.submitted.model_copy(
                update={"data": other.submitted.data.model_copy(update={"user_id": "u-8"})}
            )
        ],
        partition=3,
    )
    await keyed.record_batch(other_records, [])
    erased = await keyed.erase("acme", user_id="u-7", key=KEY)
    assert len(erased) == 8
    assert all(e.action == "redact" and e.mac for e in erased)
    q = f'"{keyed.schema}"'
    questions = await su.fetch(
        f"SELECT data ->> 'question' AS q, erased_at FROM {q}.events ORDER BY event_time"
    )
    assert [r["q"] for r in questions if r["erased_at"] is None] == [other.submitted.data.question]
    assert await su.fetchval(f"SELECT count(*) FROM {q}.events WHERE data::text LIKE '%u-7%'") == 0
    assert await su.fetchval(
        f"SELECT sum((a ->> 'cost_usd')::numeric) FROM {q}.events, "
        f"jsonb_array_elements(data -> 'cascade' -> 'attempts') a WHERE type LIKE '%completed%'"
    ) == Decimal("0.00082")  # the accounts survive
    report = await keyed.verify(key=KEY)
    assert report.ok, report.problems
    assert report.erasures == 8
    assert await keyed.erase("acme", user_id="u-7", key=KEY) == []  # again: nothing left to erase


async def test_erasing_a_tenant_takes_its_dead_letters_bodies_too(
    keyed: PostgresEventStore, su: asyncpg.Connection
) -> None:
    await fill(keyed, 1)
    await su.execute(f'UPDATE "{keyed.schema}".dead_letters SET tenant = $1', "acme")
    # (an intruder's edit; erasing over it is refused by verify below)
    erased = await keyed.erase("acme", key=KEY)
    assert {e.kind for e in erased} == {"event", "dead_letter"}
    report = await keyed.verify(key=KEY)
    assert [p.kind for p in report.problems] == ["edited"]  # the edit made before the erasure shows


async def test_purge_deletes_by_type_and_time_and_verify_stays_green(
    keyed: PostgresEventStore, su: asyncpg.Connection
) -> None:
    written = await fill(keyed, 2)
    future = datetime.now(UTC) + timedelta(days=1)
    completed = written[3].type
    assert await keyed.count_before("acme", completed, future) == 2
    purged = await keyed.purge("acme", completed, future, key=KEY)
    assert [e.action for e in purged] == ["purge", "purge"]
    assert await keyed.count_before("acme", completed, future) == 0
    assert await keyed.purge("acme", written[0].type, datetime.now(UTC) - timedelta(days=1), key=KEY) == []
    pairs = await keyed.tenants_and_types()
    assert ("acme", completed) not in pairs
    assert ("acme", written[0].type) in pairs
    report = await keyed.verify(key=KEY)
    assert report.ok, report.problems


async def test_the_monitor_applies_its_retention_policy_on_a_schedule(
    keyed: PostgresEventStore, settings: MonitorSettings, pg_schema: str
) -> None:
    written = await fill(keyed, 2)
    completed, submitted = written[3].type, written[0].type
    policy = {"acme/answers.completed": "0.0002h"}  # under a second: the rows just written expire
    app = create_app(
        settings.model_copy(
            update={
                "db_schema": pg_schema,
                "retention": policy,
                "purge_interval_s": 0.05,
                "audit_key": SecretStr(KEY.decode()),  # the purges' erasure records are signed with it
            }
        ),
        MonitorDeps(store=keyed, retention=keyed),
    )
    future = datetime.now(UTC) + timedelta(days=1)

    async def purged() -> bool:
        return await keyed.count_before("acme", completed, future) == 0

    async with Harness(app):
        await eventually(purged)

    assert await keyed.count_before("acme", submitted, future) == 2  # no rule for it: kept
    report = await keyed.verify(key=KEY)
    assert report.ok, report.problems
    assert report.erasures == 2  # each purged row left a signed erasure record


async def test_two_writers_of_one_chain_do_not_fork_it(
    keyed: PostgresEventStore, settings: MonitorSettings
) -> None:
    # A consumer that lost its partition and does not know yet writes the same chain as its successor:
    # the one that commits second fails on (chain, seq) and is retried, after the other's links.
    other = await PostgresEventStore.open(settings.model_copy(update={"db_schema": keyed.schema}))
    a = records(make_request(query_id="q-a").all[:1], partition=0, first_offset=1)
    b = records(make_request(query_id="q-b").all[:1], partition=0, first_offset=2)
    try:
        async with keyed._pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.execute(keyed._insert_event, *event_row(a[0]))
            await keyed._link(conn, await conn.fetch(keyed._probe_events, [a[0].event_id]), [])
            second = asyncio.create_task(other.record_batch(b, []))
            await asyncio.sleep(0.5)  # it reads the same head and waits on our link's key
            await tx.commit()
            with pytest.raises(DependencyUnavailable, match="same audit chain"):
                await second
        await other.record_batch(b, [])  # the retry
    finally:
        await other.aclose()
    report = await keyed.verify()
    assert report.ok, report.problems
    assert report.rows == 2


async def test_the_writer_role_can_insert_and_read_but_never_update_or_delete(
    keyed: PostgresEventStore, database_url: str, settings: MonitorSettings
) -> None:
    role = f"rw_{keyed.schema}"[:60]
    admin = await asyncpg.connect(database_url)
    try:
        await grant_writer(admin, keyed.schema, role)
        parts = urlsplit(database_url)
        url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
        writer = await PostgresEventStore.open(
            settings.model_copy(
                update={
                    "db_schema": keyed.schema,
                    "database_url": SecretStr(url),
                    "migrate_on_startup": False,
                }
            )
        )
        try:
            await fill(writer, 1)
            assert (await writer.verify()).ok
            conn = await asyncpg.connect(url)
            try:
                for sql in (
                    "UPDATE {q}.events SET topic = 'x'",
                    "DELETE FROM {q}.events",
                    "DELETE FROM {q}.erasures",
                ):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await conn.execute(sql.format(q=f'"{keyed.schema}"'))
            finally:
                await conn.close()
        finally:
            await writer.aclose()
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def test_the_verify_command_says_ok_or_names_the_problem(
    keyed: PostgresEventStore, su: asyncpg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = await fill(keyed, 1)
    monkeypatch.setenv("MONITOR_DATABASE_URL", database_url)
    monkeypatch.setenv("MONITOR_DB_SCHEMA", keyed.schema)
    monkeypatch.setenv("MONITOR_AUDIT_KEY", KEY.decode())
    ok = await asyncio.to_thread(CliRunner().invoke, audit_command, ["verify"])
    assert ok.exit_code == 0, ok.output
    assert "checked 5 rows" in ok.output
    assert "OK" in ok.output
    await su.execute(f'DELETE FROM "{keyed.schema}".events WHERE event_id = $1', written[2].event_id)
    bad = await asyncio.to_thread(CliRunner().invoke, audit_command, ["verify"])
    assert bad.exit_code == 1
    assert "deleted: chain acme|" in bad.output
    assert str(written[2].event_id) in bad.output
    erased = await asyncio.to_thread(
        CliRunner().invoke, audit_command, ["erase", "--tenant", "acme", "--user", "u-7", "--yes"]
    )
    assert erased.exit_code == 0
    assert "erased 3 event(s)" in erased.output
    shown = await asyncio.to_thread(CliRunner().invoke, audit_command, ["show", "q-0", "--tenant", "acme"])
    assert shown.exit_code == 0, shown.output
    assert "question\n  (erased)" in shown.output
    assert written[0].data["question"] not in shown.output


def test_a_retention_policy_it_cannot_read_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_RETENTION", '{"acme": "30 days"}')
    result = CliRunner().invoke(audit_command, ["purge", "--dry-run"])
    assert result.exit_code == 1
    assert "MONITOR_RETENTION: retention for 'acme': '30 days' is not a duration" in result.output
