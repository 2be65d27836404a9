"""The KeyStore and the DocumentLog in PostgreSQL (asyncpg): the `api_keys` and `documents` tables of
the gateway's own schema, over one pool."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
import asyncpg.exceptions as pg

from ragbus.common.errors import DependencyUnavailable
from ragbus.gateway.adapters.migrator import migrate, quote_ident
from ragbus.gateway.keys import scopes_of
from ragbus.gateway.ports import SCOPES, ApiKey, DocumentState, NewKey, Scope
from ragbus.gateway.settings import GatewaySettings

_UNREACHABLE: tuple[type[BaseException], ...] = (
    pg.PostgresConnectionError,
    pg.InterfaceError,
    pg.OperatorInterventionError,
    pg.InsufficientResourcesError,
    pg.UndefinedTableError,  # not migrated yet (migrate_on_startup off and the step still to run)
    pg.InvalidSchemaNameError,
    OSError,
    TimeoutError,
)
_COLUMNS = "key_id, tenant, name, groups, rate_per_minute, created_at, revoked_at, last_used_at, scopes"


@contextlib.contextmanager
def classified() -> Iterator[None]:
    try:
        yield
    except _UNREACHABLE as exc:
        raise DependencyUnavailable(f"PostgreSQL unreachable: {type(exc).__name__}: {exc}") from exc


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        tenant=row["tenant"],
        name=row["name"],
        groups=tuple(row["groups"] or ()),
        rate_per_minute=row["rate_per_minute"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        scopes=tuple(s for s in SCOPES if s in row["scopes"]),  # in one order, unknown ones dropped
    )


_DOC_COLUMNS = (
    "tenant, doc_id, status, submission, title, version, chunks, unchanged, removed, duplicate_of, reason, "
    "submitted_at, updated_at"
)


class PostgresDocumentLog:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        t = f"{quote_ident(schema)}.documents"
        self._submit = (
            f"INSERT INTO {t} (tenant, doc_id, submission, status, title) "  # noqa: S608
            "VALUES ($1, $2, $3, 'submitted', $4) ON CONFLICT (tenant, doc_id) DO UPDATE SET "
            "submission = EXCLUDED.submission, status = 'submitted', title = EXCLUDED.title, version = NULL, "
            "chunks = NULL, unchanged = NULL, removed = NULL, duplicate_of = NULL, reason = NULL, "
            f"submitted_at = now(), updated_at = now() RETURNING {_DOC_COLUMNS}"
        )
        self._finish = (
            f"UPDATE {t} SET status = $4, version = $5, chunks = $6, unchanged = $7, removed = $8, "  # noqa: S608
            "duplicate_of = $9, reason = $10, updated_at = now() "
            "WHERE tenant = $1 AND doc_id = $2 AND submission = $3"
        )
        self._get = f"SELECT {_DOC_COLUMNS} FROM {t} WHERE tenant = $1 AND doc_id = $2"  # noqa: S608
        self._list = (
            f"SELECT {_DOC_COLUMNS} FROM {t} WHERE tenant = $1 AND status <> 'deleted' "  # noqa: S608
            "ORDER BY submitted_at DESC, doc_id LIMIT $2"
        )

    async def submitted(self, tenant: str, doc_id: str, submission: str, title: str | None) -> DocumentState:
        with classified():
            row = await self._pool.fetchrow(self._submit, tenant, doc_id, submission, title)
        return DocumentState(**dict(row))

    async def finished(self, state: DocumentState) -> None:
        s = state
        with classified():
            await self._pool.execute(
                self._finish, s.tenant, s.doc_id, s.submission, s.status, s.version, s.chunks, s.unchanged,
                s.removed, s.duplicate_of, s.reason,
            )  # fmt: skip

    async def get(self, tenant: str, doc_id: str) -> DocumentState | None:
        with classified():
            row = await self._pool.fetchrow(self._get, tenant, doc_id)
        return DocumentState(**dict(row)) if row is not None else None

    async def list(self, tenant: str, *, limit: int = 200) -> list[DocumentState]:
        with classified():
            rows = await self._pool.fetch(self._list, tenant, limit)
        return [DocumentState(**dict(r)) for r in rows]


class PostgresKeyStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self.pool = pool  # shared with the monitor's record reader (adapters/monitor_record.py)
        self.documents = PostgresDocumentLog(pool, schema)  # the same pool, closed with this store
        t = f"{quote_ident(schema)}.api_keys"
        self._insert = (
            f"INSERT INTO {t} (key_id, key_hash, tenant, name, groups, rate_per_minute, scopes) "  # noqa: S608
            f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}"
        )
        # The lookup notes the use too, in the same round trip (a cache miss: at most once per key_cache_s).
        self._find = (
            f"UPDATE {t} SET last_used_at = now() WHERE key_hash = $1 AND revoked_at IS NULL "  # noqa: S608
            f"RETURNING {_COLUMNS}"
        )
        self._list = f"SELECT {_COLUMNS} FROM {t}"  # noqa: S608
        self._revoke = f"UPDATE {t} SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL"  # noqa: S608
        self._ping = f"SELECT max(version) FROM {quote_ident(schema)}.schema_migrations"  # noqa: S608

    @classmethod
    async def open(cls, settings: GatewaySettings) -> PostgresKeyStore:
        """Connect, and migrate the schema if the settings say so. DependencyUnavailable while down."""
        with classified():
            pool = await asyncpg.create_pool(
                settings.database_url.get_secret_value(),
                min_size=1,
                max_size=settings.pool_max_size,
                timeout=settings.connect_timeout_s,
                command_timeout=settings.command_timeout_s,
                server_settings={"application_name": "ragbus-gateway"},
            )
            try:
                if settings.migrate_on_startup:
                    async with pool.acquire() as conn:
                        await migrate(conn, settings.db_schema)
            except BaseException:
                await pool.close()
                raise
        return cls(pool, settings.db_schema)

    async def create(
        self,
        new: NewKey,
        tenant: str,
        *,
        name: str | None = None,
        groups: Sequence[str] = (),
        rate_per_minute: int | None = None,
        scopes: Sequence[Scope] = SCOPES,
    ) -> ApiKey:
        with classified():
            row = await self._pool.fetchrow(
                self._insert, new.key_id, new.key_hash, tenant, name, list(groups), rate_per_minute,
                list(scopes_of(scopes)),
            )  # fmt: skip
        return _key(row)

    async def find(self, key_hash: str) -> ApiKey | None:
        with classified():
            row = await self._pool.fetchrow(self._find, key_hash)
        return _key(row) if row is not None else None

    async def list(self, tenant: str | None = None, *, include_revoked: bool = False) -> list[ApiKey]:
        where, args = [], []
        if tenant is not None:
            args.append(tenant)
            where.append(f"tenant = ${len(args)}")
        if not include_revoked:
            where.append("revoked_at IS NULL")
        sql = self._list + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at, key_id"
        with classified():
            rows = await self._pool.fetch(sql, *args)
        return [_key(r) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        with classified():
            status = await self._pool.execute(self._revoke, key_id)
        return bool(status.endswith(" 1"))

    async def ping(self) -> None:
        with classified():
            await self._pool.fetchval(self._ping)

    async def aclose(self) -> None:
        await self._pool.close()
