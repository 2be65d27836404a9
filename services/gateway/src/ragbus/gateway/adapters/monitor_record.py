"""The RequestRecord over the monitor's schema in PostgreSQL, read only: its `request_summary` view (the
monitor's migrations 0003 and 0007) is the contract, the columns `ragbus audit show` prints.

The gateway imports nothing of the monitor: it reads the view by name, in a read-only transaction, over
its own pool. The view's columns are added to at its end, never changed, so a newer monitor's extra
columns are simply not read here.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from ragbus.gateway.adapters.migrator import quote_ident
from ragbus.gateway.adapters.postgres import classified
from ragbus.gateway.ports import RequestFilter, RequestStory

# The view's columns a client sees (not `user_id`: a key's caller need not know who else asked).
_COLUMNS = (
    "tenant", "correlation_id", "query_id", "conversation_id", "question", "question_redacted", "status",
    "answer", "status_reason", "tier", "escalation_reason", "verdicts", "input_verdicts", "citations",
    "prompt_tokens", "completion_tokens", "cost_usd", "submitted_at", "completed_at", "latency_ms", "model",
    "prompt_version", "attempts", "cached_from", "stages", "trace_id", "rating", "feedback_comment",
)  # fmt: skip
_JSON = frozenset({"verdicts", "input_verdicts", "attempts", "stages", "sources"})


def _story(row: Any) -> RequestStory:
    story: RequestStory = {}
    for name, value in dict(row).items():
        if name in _JSON and isinstance(value, str):
            value = json.loads(value)  # asyncpg hands jsonb over as text
        elif isinstance(value, datetime):
            value = value.isoformat()
        story[name] = value
    return story


class PostgresRequestRecord:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._view = f"{quote_ident(schema)}.request_summary"

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        # Not there yet (the monitor has not migrated its schema) reads as unavailable: a 503, retried.
        with classified():
            async with self._pool.acquire() as conn, conn.transaction(readonly=True):
                # Index probes per row, which JIT compilation (~1 s on a small machine) never repays.
                await conn.execute("SET LOCAL jit = off")
                return list(await conn.fetch(sql, *args))

    async def story(self, tenant: str, request_id: str) -> RequestStory | None:
        sql = (
            f"SELECT {', '.join(_COLUMNS)}, sources FROM {self._view} "  # noqa: S608 - quote_ident
            "WHERE tenant = $1 AND (query_id = $2 OR correlation_id = $2) "
            "ORDER BY submitted_at DESC LIMIT 1"
        )
        rows = await self._fetch(sql, tenant, request_id)
        return _story(rows[0]) if rows else None

    async def find(self, tenant: str, query: RequestFilter) -> list[RequestStory]:
        # Only the filters given, each a parameter (tenant and time reach the scan of the events).
        filters = {
            "submitted_at >= ${}": query.since,
            "submitted_at < ${}": query.until,
            "status = ${}": query.status,
            "tier = ${}": query.tier,
        }
        where: list[str] = ["tenant = $1"]
        args: list[Any] = [tenant]
        for condition, value in filters.items():
            if value is not None:
                args.append(value)
                where.append(condition.format(len(args)))
        args.append(query.limit)
        sql = (
            f"SELECT {', '.join(_COLUMNS)} FROM {self._view} WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY submitted_at DESC, correlation_id LIMIT ${len(args)}"
        )
        return [_story(r) for r in await self._fetch(sql, *args)]
