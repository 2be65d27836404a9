"""Schema migrations: the numbered SQL files in `ragbus/gateway/migrations/`, applied in order, once.

The same scheme as the monitor's (its `adapters/migrator.py`; services share no code but libs): each
file runs in its own transaction with `search_path` set to the gateway's schema, applied versions and
their checksums are kept in `<schema>.schema_migrations`, and an advisory lock keyed by the schema lets
replicas start together. An applied file that was edited afterwards stops the migration.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

log = structlog.stdlib.get_logger("ragbus.gateway.migrator")

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree; a person has to look."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def quote_ident(name: str) -> str:
    """A quoted PostgreSQL identifier: the schema is spliced into SQL (`noqa: S608` lines), never values."""
    return '"' + name.replace('"', '""') + '"'


def load_migrations() -> list[Migration]:
    folder = resources.files("ragbus.gateway") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be 1..n without gaps or repeats, found {versions}")
    return found


def lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"ragbus.gateway.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Bring `schema` up to date on this connection; returns the versions applied now."""
    migrations = load_migrations()
    q = quote_ident(schema)
    key = lock_key(schema)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch(f"SELECT version, name, checksum FROM {q}.schema_migrations")  # noqa: S608
        applied = {r["version"]: r for r in rows}
        for m in migrations:
            row = applied.get(m.version)
            if row is not None and row["checksum"] != m.checksum:
                raise MigrationError(
                    f"migration {m.version:04d}_{row['name']} was changed after it was applied to schema "
                    f"{schema!r}; add a new migration instead of editing a released one"
                )
        done = []
        for m in migrations:
            if m.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {q}")
                await conn.execute(m.sql)
                await conn.execute(
                    f"INSERT INTO {q}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",  # noqa: S608
                    m.version,
                    m.name,
                    m.checksum,
                )
            log.info("migration applied", schema=schema, version=m.version, name=m.name)
            done.append(m.version)
        return done
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
