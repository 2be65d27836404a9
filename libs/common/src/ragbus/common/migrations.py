"""Schema migrations for the services that keep state in PostgreSQL (the monitor, the gateway): the
numbered SQL files in a package's `migrations/` folder (`0001_name.sql`, ...), applied in order, once.

Each file runs in its own transaction with `search_path` set to the target schema, so the SQL names its
objects unqualified and one database can hold several stacks' schemas (deployments, tests). Applied
versions and their checksums are kept in `<schema>.schema_migrations`. A session-level advisory lock,
keyed by the service and schema, serialises replicas that start together: the second waits, then finds
nothing to do. An applied file that was edited afterwards stops the migration: a released migration is
never changed, a new numbered file is added instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from ragbus.common.logging import get_logger

if TYPE_CHECKING:
    import asyncpg

log = get_logger("ragbus.migrations")

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
    """A PostgreSQL identifier, quoted: schema names cannot be query parameters, so the SQL built with
    them (the `noqa: S608` lines) splices only this and constant table and column names, never values."""
    return '"' + name.replace('"', '""') + '"'


def load_migrations(package: str) -> list[Migration]:
    """The migrations shipped in `package` (its `migrations/` folder), by version; versions must run 1,
    2, 3... without gaps."""
    folder = resources.files(package) / "migrations"
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


def lock_key(service: str, schema: str) -> int:
    """The advisory lock id of one service's migrations of one schema (a signed 64-bit int)."""
    digest = hashlib.sha256(f"ragbus.{service}.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(
    conn: asyncpg.Connection, schema: str, migrations: list[Migration], *, service: str
) -> list[int]:
    """Bring `schema` up to date with `service`'s migrations on this asyncpg connection; returns the
    versions applied now."""
    q = quote_ident(schema)
    key = lock_key(service, schema)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        # Under the lock: CREATE ... IF NOT EXISTS is not safe against a concurrent creator.
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch(f"SELECT version, name, checksum FROM {q}.schema_migrations")  # noqa: S608
        applied = {r["version"]: r for r in rows}
        known = {m.version for m in migrations}
        for m in migrations:
            row = applied.get(m.version)
            if row is not None and row["checksum"] != m.checksum:
                raise MigrationError(
                    f"migration {m.version:04d}_{row['name']} was changed after it was applied to schema "
                    f"{schema!r}; add a new migration instead of editing a released one"
                )
        newer = sorted(v for v in applied if v not in known)
        if newer:
            # A newer release migrated this schema (a rollback of the code). Migrations are additive, so
            # this version can still write; say so rather than refuse to start.
            log.warning(
                "schema is newer than this code", service=service, schema=schema, unknown_versions=newer
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
            log.info("migration applied", service=service, schema=schema, version=m.version, name=m.name)
            done.append(m.version)
        return done
    finally:
        if not conn.is_closed():  # a lost session has released its locks already
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
