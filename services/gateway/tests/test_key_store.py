"""One contract for both key stores (memory, PostgreSQL): keys are found by hash while active, listed
per tenant without secrets, revoked once; the PostgreSQL one migrates its own schema, once. The same for
the document logs: per tenant, and a late outcome never overwrites a newer submission."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ragbus.gateway.adapters.memory import MemoryDocumentLog, MemoryKeyStore
from ragbus.gateway.adapters.migrator import load_migrations, quote_ident
from ragbus.gateway.adapters.postgres import PostgresDocumentLog, PostgresKeyStore
from ragbus.gateway.keys import hash_key, new_key
from ragbus.gateway.ports import SCOPES, DocumentLog, KeyStore
from ragbus.gateway.settings import GatewaySettings


@pytest.fixture
def memory_store() -> MemoryKeyStore:
    return MemoryKeyStore()


@pytest.fixture
async def pg_store(pg_schema: str, database_url: str) -> AsyncIterator[PostgresKeyStore]:
    settings = GatewaySettings(database_url=database_url, db_schema=pg_schema)
    store = await PostgresKeyStore.open(settings)
    yield store
    await store.aclose()


@pytest.fixture(params=["memory", pytest.param("pg", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> KeyStore:
    """Each test that takes `store` runs against the in-memory store and against PostgreSQL."""
    found: KeyStore = request.getfixturevalue(f"{request.param}_store")
    return found


async def test_a_key_is_found_by_its_hash_with_its_tenant_groups_and_rate(store: KeyStore) -> None:
    new = new_key()
    created = await store.create(new, "acme", name="web", groups=["staff", "eng"], rate_per_minute=30)
    assert (created.key_id, created.tenant, created.name) == (new.key_id, "acme", "web")
    found = await store.find(hash_key(new.key))
    assert found is not None
    assert (found.key_id, found.tenant, found.groups, found.rate_per_minute) == (
        new.key_id,
        "acme",
        ("staff", "eng"),
        30,
    )
    assert found.last_used_at is not None
    assert await store.find(hash_key(new_key().key)) is None


async def test_keys_are_listed_per_tenant_and_a_revoked_one_is_no_longer_found(store: KeyStore) -> None:
    a, b, c = new_key(), new_key(), new_key()
    await store.create(a, "acme")
    await store.create(b, "acme")
    await store.create(c, "globex")
    assert {k.key_id for k in await store.list("acme")} == {a.key_id, b.key_id}
    assert len(await store.list()) == 3
    assert await store.revoke(a.key_id)
    assert not await store.revoke(a.key_id)  # once
    assert not await store.revoke("000000000000")
    assert await store.find(a.key_hash) is None
    assert {k.key_id for k in await store.list("acme")} == {b.key_id}
    revoked = [k for k in await store.list("acme", include_revoked=True) if k.key_id == a.key_id]
    assert revoked[0].revoked_at is not None


@pytest.mark.integration
async def test_the_table_holds_the_hash_and_never_the_key(
    pg_store: PostgresKeyStore, pg_schema: str, database_url: str
) -> None:
    new = new_key()
    await pg_store.create(new, "acme")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f"SELECT * FROM {quote_ident(pg_schema)}.api_keys")
        versions = await conn.fetch(f"SELECT version FROM {quote_ident(pg_schema)}.schema_migrations")
    finally:
        await conn.close()
    (row,) = rows
    assert row["key_hash"] == new.key_hash
    assert new.key not in [str(v) for v in row.values()]
    assert [r["version"] for r in versions] == [m.version for m in load_migrations()]
    # Opening again (another replica, a restart) applies nothing twice.
    again = await PostgresKeyStore.open(GatewaySettings(database_url=database_url, db_schema=pg_schema))
    await again.aclose()


@pytest.fixture
def memory_documents() -> MemoryDocumentLog:
    return MemoryDocumentLog()


@pytest.fixture
def pg_documents(pg_store: PostgresKeyStore) -> PostgresDocumentLog:
    return pg_store.documents


@pytest.fixture(params=["memory", pytest.param("pg", marks=pytest.mark.integration)])
def documents(request: pytest.FixtureRequest) -> DocumentLog:
    """Each test that takes `documents` runs against the in-memory log and against PostgreSQL."""
    found: DocumentLog = request.getfixturevalue(f"{request.param}_documents")
    return found


async def test_a_documents_outcome_is_recorded_unless_a_later_submission_replaced_it(
    documents: DocumentLog,
) -> None:
    first = await documents.submitted("acme", "d1", "s1", "Title")
    assert (first.status, first.title, first.submission) == ("submitted", "Title", "s1")
    await documents.finished(dataclasses.replace(first, status="indexed", version="v1", chunks=4))
    got = await documents.get("acme", "d1")
    assert got is not None
    assert (got.status, got.version, got.chunks) == ("indexed", "v1", 4)
    assert await documents.get("globex", "d1") is None  # per tenant

    second = await documents.submitted("acme", "d1", "s2", None)
    assert (second.status, second.version, second.chunks) == ("submitted", None, None)
    await documents.finished(dataclasses.replace(first, status="failed", reason="late"))  # the old one
    got = await documents.get("acme", "d1")
    assert got is not None
    assert (got.status, got.submission) == ("submitted", "s2")


async def test_a_tenants_documents_are_listed_latest_first_without_the_deleted(
    documents: DocumentLog,
) -> None:
    for doc_id in ("d1", "d2", "d3"):
        await documents.submitted("acme", doc_id, f"s-{doc_id}", doc_id.upper())
        await asyncio.sleep(0.002)  # distinct submission times
    await documents.submitted("globex", "g1", "s-g1", None)
    gone = await documents.get("acme", "d2")
    assert gone is not None
    await documents.finished(dataclasses.replace(gone, status="deleted"))
    assert [d.doc_id for d in await documents.list("acme")] == ["d3", "d1"]
    assert [d.doc_id for d in await documents.list("acme", limit=1)] == ["d3"]
    assert [d.doc_id for d in await documents.list("globex")] == ["g1"]


async def test_a_key_has_every_scope_unless_made_with_fewer_and_no_unknown_one(store: KeyStore) -> None:
    full, narrow = new_key(), new_key()
    assert (await store.create(full, "acme")).scopes == SCOPES
    made = await store.create(narrow, "acme", scopes=["audit", "ingest"])
    assert made.scopes == ("ingest", "audit")
    found = await store.find(narrow.key_hash)
    assert found is not None
    assert found.scopes == ("ingest", "audit")
    assert (found.allows("audit"), found.allows("ask")) == (True, False)
    for wrong in (["admin"], []):
        with pytest.raises(ValueError, match="scope"):
            await store.create(new_key(), "acme", scopes=wrong)  # type: ignore[arg-type]
    assert {k.key_id for k in await store.list("acme")} == {full.key_id, narrow.key_id}


@pytest.mark.integration
async def test_a_key_made_before_scopes_existed_keeps_every_scope(pg_schema: str, database_url: str) -> None:
    """Migration 0003 adds the scopes: a key already in the table then has all of them, so it goes on
    working as it did; the table itself refuses an unknown scope."""
    old = [m for m in load_migrations() if m.version < 3]
    q = quote_ident(pg_schema)
    key = new_key()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE SCHEMA {q}")
        await conn.execute(
            f"CREATE TABLE {q}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in old:  # the schema as a gateway of before made it
            await conn.execute(f"SET search_path TO {q}")
            await conn.execute(m.sql)
            await conn.execute(
                f"INSERT INTO {q}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version, m.name, m.checksum,
            )  # fmt: skip
        await conn.execute(
            f"INSERT INTO {q}.api_keys (key_id, key_hash, tenant) VALUES ($1, $2, 'acme')",
            key.key_id, key.key_hash,
        )  # fmt: skip
    finally:
        await conn.close()

    store = await PostgresKeyStore.open(GatewaySettings(database_url=database_url, db_schema=pg_schema))
    try:
        found = await store.find(key.key_hash)
        assert found is not None
        assert found.scopes == SCOPES
        with pytest.raises(asyncpg.CheckViolationError):
            await store.pool.execute(
                f"INSERT INTO {q}.api_keys (key_id, key_hash, tenant, scopes) "
                "VALUES ('x', 'y', 'acme', '{admin}')"
            )
    finally:
        await store.aclose()
