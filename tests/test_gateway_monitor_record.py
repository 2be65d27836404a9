"""The gateway's reader of the monitor's record (ragbus.gateway.adapters.monitor_record) against the
monitor's own schema, migrated and written by the monitor's own store: the view is the contract between
the two services, and this test holds them to it (the gateway imports nothing of the monitor)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

from ragbus.gateway.adapters.monitor_record import PostgresRequestRecord
from ragbus.gateway.ports import RequestFilter
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.settings import MonitorSettings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def monitor_stories() -> ModuleType:
    """The monitor's test story (a request with every event of its flow), shared rather than copied."""
    path = REPO / "services/monitor/tests/stories.py"
    spec = importlib.util.spec_from_file_location("monitor_test_stories", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_gateway_reads_a_tenants_story_as_the_monitor_recorded_it(
    database_url: str, pg_schema: str
) -> None:
    stories = monitor_stories()
    store = await PostgresEventStore.open(MonitorSettings(database_url=database_url, db_schema=pg_schema))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        acme = stories.make_story()
        globex = stories.make_story(tenant="globex", query_id="q-9", start_ms=60_000)
        await store.record_batch([stories.traced(e) for e in (*acme.all, *globex.all)], [])
        record = PostgresRequestRecord(pool, pg_schema)

        s = await record.story("acme", "q-1")
        assert s is not None
        assert (s["query_id"], s["question"], s["status"], s["tier"]) == (
            "q-1",
            stories.QUESTION,
            "answered",
            1,
        )
        assert (s["model"], s["prompt_version"], s["trace_id"]) == ("smollm2-135m", "answer@3", stories.TRACE)
        assert [(x["doc_id"], x["version"], x["cited"]) for x in s["sources"]] == [
            ("doc-17", "v1", 1),
            ("doc-3", "v7", None),
        ]
        assert [x["stage"] for x in s["stages"]][:2] == ["input guard", "retrieval"]
        assert s["rating"] == "down"
        assert isinstance(s["submitted_at"], str)
        assert "user_id" not in s
        # By its correlation id too; never another tenant's.
        assert (await record.story("acme", s["correlation_id"]) or {}).get("query_id") == "q-1"
        assert await record.story("acme", "q-9") is None
        assert await record.story("globex", "q-1") is None

        listed = await record.find("acme", RequestFilter())
        assert [r["query_id"] for r in listed] == ["q-1"]
        assert "sources" not in listed[0]
        assert await record.find("acme", RequestFilter(status="blocked")) == []
        assert [r["query_id"] for r in await record.find("acme", RequestFilter(tier=1))] == ["q-1"]
        assert [r["query_id"] for r in await record.find("globex", RequestFilter(limit=5))] == ["q-9"]
    finally:
        await pool.close()
        await store.aclose()


async def test_before_the_monitor_made_its_schema_the_record_is_unavailable(
    database_url: str, pg_schema: str
) -> None:
    from ragbus.common.errors import DependencyUnavailable

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        with pytest.raises(DependencyUnavailable):  # a 503 with Retry-After, not a 500
            await PostgresRequestRecord(pool, pg_schema).story("acme", "q-1")
    finally:
        await pool.close()
