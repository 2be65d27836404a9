"""`ragbus keys` as an operator runs it, against PostgreSQL: create prints the key once, list shows no
secret, revoke ends it; the key then authenticates (or not) against the gateway's store."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner, Result

from ragbus.client.cli import main
from ragbus.gateway.adapters.postgres import PostgresKeyStore
from ragbus.gateway.keys import hash_key, looks_like_key
from ragbus.gateway.settings import GatewaySettings

pytestmark = pytest.mark.integration


async def test_keys_are_created_listed_and_revoked(pg_schema: str, database_url: str) -> None:
    env = {"GATEWAY_DATABASE_URL": database_url, "GATEWAY_DB_SCHEMA": pg_schema}
    runner = CliRunner()

    async def invoke(*args: str) -> Result:  # the CLI runs its own loop: in a thread beside the test's
        return await asyncio.to_thread(runner.invoke, main, list(args), env=env)

    async def ragbus(*args: str) -> str:
        result = await invoke(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    key = (await ragbus("keys", "create", "--tenant", "acme", "--name", "web", "--group", "staff")).strip()
    assert looks_like_key(key)
    record = json.loads(await ragbus("keys", "create", "--tenant", "globex", "--json"))
    assert record["tenant"] == "globex"
    assert looks_like_key(record["key"])

    listed = json.loads(await ragbus("keys", "list", "--json"))
    assert sorted(k["tenant"] for k in listed) == ["acme", "globex"]
    assert key not in json.dumps(listed)
    assert "acme  web  groups staff" in await ragbus("keys", "list", "--tenant", "acme")

    store = await PostgresKeyStore.open(GatewaySettings(database_url=database_url, db_schema=pg_schema))
    try:
        found = await store.find(hash_key(key))
        assert found is not None
        assert (found.tenant, found.groups) == ("acme", ("staff",))
        await ragbus("keys", "revoke", found.key_id)
        assert await store.find(hash_key(key)) is None
    finally:
        await store.aclose()
    again = await invoke("keys", "revoke", found.key_id)
    assert again.exit_code == 1
    assert "no active key" in again.output
    assert "REVOKED" in await ragbus("keys", "list", "--all", "--tenant", "acme")


async def test_a_key_is_created_with_some_scopes_and_an_unknown_scope_is_refused(
    pg_schema: str, database_url: str
) -> None:
    env = {"GATEWAY_DATABASE_URL": database_url, "GATEWAY_DB_SCHEMA": pg_schema}
    runner = CliRunner()

    async def invoke(*args: str) -> Result:
        return await asyncio.to_thread(runner.invoke, main, list(args), env=env)

    made = await invoke("keys", "create", "--tenant", "acme", "--scope", "audit", "--scope", "ask", "--json")
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["scopes"] == ["ask", "audit"]  # in one order, whatever the order given
    everything = json.loads((await invoke("keys", "create", "--tenant", "acme", "--json")).stdout)
    assert everything["scopes"] == ["ask", "ingest", "audit"]  # the default: every scope
    listed = (await invoke("keys", "list", "--tenant", "acme")).stdout
    assert f"{record['key_id']}  acme  scopes ask,audit" in listed
    assert f"{everything['key_id']}  acme  created" in listed  # all scopes: nothing to say

    refused = await invoke("keys", "create", "--tenant", "acme", "--scope", "ask,admin")
    assert refused.exit_code == 1
    assert "unknown scope admin: the scopes are ask, ingest, audit" in refused.output

    store = await PostgresKeyStore.open(GatewaySettings(database_url=database_url, db_schema=pg_schema))
    try:
        found = await store.find(hash_key(record["key"]))
        assert found is not None
        assert found.scopes == ("ask", "audit")
    finally:
        await store.aclose()
