"""The migrator against the real PostgreSQL (marked `integration`): idempotent, all in the configured
schema, safe when two monitors start at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ragbus.common.errors import DependencyUnavailable
from ragbus.monitor.adapters.migrator import Migration, MigrationError, load_migrations, migrate
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.settings import MonitorSettings


@pytest.fixture
async def conn(database_url: str, pg_schema: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(database_url)
    yield c
    await c.close()


async def objects_in(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT c.relname, c.relkind::text AS relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
        schema,
    )
    return {r["relname"]: r["relkind"] for r in rows}


def test_the_package_ships_its_migrations_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [(m.version, m.name) for m in migrations] == [
        (1, "events"),
        (2, "dead_letters"),
        (3, "request_summary"),
        (4, "query_ids"),
        (5, "event_digest"),
        (6, "audit_chain"),
        (7, "request_story"),
    ]


@pytest.mark.integration
async def test_migrations_apply_once_and_again_without_error(
    conn: asyncpg.Connection, pg_schema: str
) -> None:
    assert await migrate(conn, pg_schema) == [1, 2, 3, 4, 5, 6, 7]
    assert await migrate(conn, pg_schema) == []

    objects = await objects_in(conn, pg_schema)
    tables = {name for name, kind in objects.items() if kind == "r"}
    views = {name for name, kind in objects.items() if kind == "v"}
    indexes = {name for name, kind in objects.items() if kind == "i"}
    assert tables == {
        "events",
        "dead_letters",
        "schema_migrations",
        "audit_log",
        "audit_checkpoints",
        "erasures",
    }
    assert views == {"request_summary"}
    assert {
        "events_correlation_idx",
        "events_tenant_time_idx",
        "events_type_time_idx",
        "events_query_id_idx",
        "dead_letters_topic_time_idx",
        "dead_letters_event_idx",
    } <= indexes
    rows = await conn.fetch(f'SELECT version, name FROM "{pg_schema}".schema_migrations ORDER BY version')
    assert [tuple(r) for r in rows] == [
        (1, "events"),
        (2, "dead_letters"),
        (3, "request_summary"),
        (4, "query_ids"),
        (5, "event_digest"),
        (6, "audit_chain"),
        (7, "request_story"),
    ]


@pytest.mark.integration
async def test_two_monitors_migrating_at_once_apply_each_migration_once(
    database_url: str, pg_schema: str
) -> None:
    a, b = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        done_a, done_b = await asyncio.gather(migrate(a, pg_schema), migrate(b, pg_schema))
    finally:
        await a.close()
        await b.close()
    assert sorted(done_a + done_b) == [1, 2, 3, 4, 5, 6, 7]
    assert not set(done_a) & set(done_b)


@pytest.mark.integration
async def test_a_failed_migration_leaves_nothing_half_done_and_releases_the_lock(
    conn: asyncpg.Connection, database_url: str, pg_schema: str
) -> None:
    good = Migration(1, "first", "CREATE TABLE first (id int);")
    bad = Migration(2, "broken", "CREATE TABLE second (id int); SELECT no_such_function();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(conn, pg_schema, [good, bad])

    assert set(await objects_in(conn, pg_schema)) >= {"first"}
    assert "second" not in await objects_in(conn, pg_schema)
    # Another session can take the lock (it would wait forever otherwise) and finish the job.
    other = await asyncpg.connect(database_url)
    try:
        fixed = Migration(2, "broken", "CREATE TABLE second (id int);")
        assert await asyncio.wait_for(migrate(other, pg_schema, [good, fixed]), 5) == [2]
    finally:
        await other.close()


@pytest.mark.integration
async def test_an_applied_migration_that_was_edited_stops_the_monitor(
    conn: asyncpg.Connection, pg_schema: str
) -> None:
    await migrate(conn, pg_schema, [Migration(1, "first", "CREATE TABLE first (id int);")])
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(conn, pg_schema, [Migration(1, "first", "CREATE TABLE first (id bigint);")])


@pytest.mark.integration
async def test_without_migrations_the_store_says_it_is_not_ready(
    settings: MonitorSettings, pg_schema: str
) -> None:
    # migrate_on_startup off and nobody migrated yet: writes wait (retryable), they are not dead-lettered.
    store = await PostgresEventStore.open(
        settings.model_copy(update={"db_schema": pg_schema, "migrate_on_startup": False})
    )
    try:
        with pytest.raises(DependencyUnavailable, match="tables are missing"):
            await store.ping()
    finally:
        await store.aclose()
