"""The gateway's schema migrations: the numbered SQL files in `ragbus/gateway/migrations/`, applied in order,
once, by the scheme every ragbus service with a database shares (`ragbus.common.migrations`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragbus.common import migrations as _shared
from ragbus.common.migrations import Migration, MigrationError, quote_ident

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Migration", "MigrationError", "load_migrations", "migrate", "quote_ident"]


def load_migrations() -> list[Migration]:
    return _shared.load_migrations("ragbus.gateway")


async def migrate(
    conn: asyncpg.Connection, schema: str, migrations: list[Migration] | None = None
) -> list[int]:
    """Bring `schema` up to date (with `migrations`, the shipped ones by default)."""
    found = load_migrations() if migrations is None else migrations
    return await _shared.migrate(conn, schema, found, service="gateway")
