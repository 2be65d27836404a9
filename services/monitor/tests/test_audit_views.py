"""`ragbus audit show`, `ragbus audit list` and `ragbus report` as a user runs them (the `ragbus` CLI,
its plugged-in commands), against PostgreSQL holding events recorded through the store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from matplotlib.image import imread

from ragbus.client.cli import main
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.report_cli import CHARTS
from ragbus.monitor.settings import MonitorSettings

from .stories import QUESTION, REDACTED, TRACE, chunk_of, make_story, traced

pytestmark = pytest.mark.integration


@pytest.fixture
async def recorded(pg_store: PostgresEventStore) -> PostgresEventStore:
    """Three requests of acme (one blocked by the output guard), one of globex with the same query id."""
    stories = [
        make_story(tenant="acme", query_id="q-1", user_id="u-7"),
        make_story(tenant="acme", query_id="q-2", user_id="u-8", start_ms=60_000, status="blocked"),
        make_story(tenant="acme", query_id="q-3", user_id="u-7", start_ms=120_000, tier1_cost=0.00059),
        make_story(tenant="globex", query_id="q-1", user_id="g-1", start_ms=180_000),
    ]
    await pg_store.record_batch([traced(e) for s in stories for e in s.all], [])
    return pg_store


@pytest.fixture
def env(settings: MonitorSettings, recorded: PostgresEventStore) -> dict[str, str | None]:
    return {
        "MONITOR_DATABASE_URL": settings.database_url.get_secret_value(),
        "MONITOR_DB_SCHEMA": recorded.schema,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "RAGBUS_JAEGER_URL": None,
        "RAGBUS_JAEGER_UI_PORT": None,
    }


async def ragbus(env: dict[str, str | None], *args: str) -> Result:
    # The command runs its own event loop (asyncio.run): off this test's loop.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


async def test_show_tells_a_request_s_story_in_order(env: dict[str, str | None]) -> None:
    shown = await ragbus(env, "audit", "show", "q-1", "--tenant", "acme")

    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert f"trace {TRACE}  http://127.0.0.1:16686/trace/{TRACE}" in out
    assert (
        "status answered at tier 1 (smollm2-135m, prompt answer@3) in 1234 ms; 412+57 tokens, $0.00041" in out
    )
    assert f"question\n  {QUESTION}\n  as passed on (redacted):\n  {REDACTED}\n" in out
    events = [line.split()[:2] for line in out.split("events\n")[1].split("\n\n")[0].splitlines()]
    assert events == [
        ["+0", "ms"],
        ["+40", "ms"],
        ["+1174", "ms"],
        ["+1234", "ms"],
        ["+6234", "ms"],
    ]
    assert "queries.accepted     ragbus/guard           accepted: injection pass 0.02" in out
    assert "  generation     orchestrator       +95 ms     1055 ms" in out
    assert "  input  injection pass 0.02, pii pass (EMAIL redacted)" in out
    assert "  0 extractive       escalated    4.2 ms  0+0 tokens  $0  support 0.31 below 0.5" in out
    assert "  1 smollm2-135m     accepted     812 ms  412+57 tokens  $0.00041  prompt answer@3" in out
    assert '   1. [1] doc-17 @ v1  score 0.82  "Vitamin D and fractures"' in out
    assert '   2.     doc-3 @ v7  score 0.41  "Calcium intake"' in out
    assert '  +6234 ms  down "cite the trial"  (user u-7)' in out


async def test_show_as_json_for_machines(env: dict[str, str | None]) -> None:
    shown = await ragbus(env, "audit", "show", "q-3", "--json")

    assert shown.exit_code == 0, shown.output
    told = json.loads(shown.output)
    assert told["request"]["query_id"] == "q-3"
    assert told["request"]["cost_usd"] == pytest.approx(0.00059)
    assert told["request"]["trace_url"] == f"http://127.0.0.1:16686/trace/{TRACE}"
    assert [e["offset_ms"] for e in told["events"]] == [0.0, 40.0, 1174.0, 1234.0, 6234.0]
    assert told["sources"][0]["chunk_id"] == str(chunk_of("acme", "doc-17", 0))
    assert told["feedback"][0]["rating"] == "down"


async def test_show_asks_which_request_when_an_id_names_several(env: dict[str, str | None]) -> None:
    both = await ragbus(env, "audit", "show", "q-1")
    assert both.exit_code == 1
    assert "'q-1' names several requests (q-1 of globex, q-1 of acme): say which with --tenant" in both.output

    theirs = await ragbus(env, "audit", "show", "q-1", "--tenant", "globex")
    assert theirs.exit_code == 0, theirs.output
    assert "tenant globex" in theirs.output

    unknown = await ragbus(env, "audit", "show", "q-404")
    assert unknown.exit_code == 1
    assert "no request 'q-404' on record" in unknown.output


async def test_show_without_jaeger_names_the_local_trace_command(env: dict[str, str | None]) -> None:
    shown = await ragbus(env | {"OTEL_EXPORTER_OTLP_ENDPOINT": None}, "audit", "show", "q-2")
    assert shown.exit_code == 0, shown.output
    assert f"trace {TRACE}  (`ragbus trace {TRACE}`)" in shown.output
    assert "status blocked (answer contains personal data) at tier 1" in shown.output


async def test_list_filters_the_requests_newest_first(env: dict[str, str | None]) -> None:
    listed = await ragbus(env, "audit", "list", "--since", "2026-05-01", "--tenant", "acme")

    assert listed.exit_code == 0, listed.output
    header, *rows, count = listed.output.splitlines()
    assert header.split()[:4] == ["submitted", "(UTC)", "tenant", "request"]
    assert [r.split()[3] for r in rows] == ["q-3", "q-2", "q-1"]
    assert rows[0].split()[2:11] == [
        "acme", "q-3", "u-7", "answered", "1", "smollm2-135m", "469", "$0.00059", "1234",
    ]  # fmt: skip
    assert REDACTED[:30] in rows[0]  # the question as the guard redacted it
    assert "ann@example.com" not in listed.output
    assert count == "3 requests"

    by_user = await ragbus(env, "audit", "list", "--user", "u-7", "--status", "answered", "--limit", "1")
    assert [r.split()[3] for r in by_user.output.splitlines()[1:-1]] == ["q-3"]
    assert by_user.output.splitlines()[-1] == "1 request (--limit for more)"

    none = await ragbus(env, "audit", "list", "--model", "gpt-4o")
    assert none.output == "no requests on record match\n"
    lines = await ragbus(env, "audit", "list", "--until", "2026-05-04T09:02:30", "--json")
    assert [json.loads(line)["query_id"] for line in lines.output.splitlines()] == ["q-3", "q-2", "q-1"]


async def test_report_prints_the_figures_and_writes_png_charts(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    charts = tmp_path / "charts"
    reported = await ragbus(
        env, "report", "--since", "2026-05-01", "--until", "2026-06-01", "--charts", str(charts)
    )

    assert reported.exit_code == 0, reported.output
    head, tenants, tiers, written = reported.output.split("\n\n")
    assert head == "requests submitted from 2026-05-01 00:00 to 2026-06-01 00:00 (UTC)"
    assert written == f"charts in {charts}: {', '.join(CHARTS)}\n"
    assert [line.split() for line in tenants.splitlines()] == [
        ["tenant", "requests", "tokens", "cost", "p50", "ms", "p95", "ms", "blocked", "escalated"],
        ["acme", "3", "1407", "$0.00141", "1234", "1234", "33.3%", "100.0%"],
        ["globex", "1", "469", "$0.00041", "1234", "1234", "0.0%", "100.0%"],
        ["all", "4", "1876", "$0.00182", "1234", "1234", "25.0%", "100.0%"],
    ]
    assert [line.split()[:4] for line in tiers.splitlines()[1:]] == [
        ["0", "extractive", "4", "0"],
        ["1", "smollm2-135m", "4", "1876"],
    ]
    for name in CHARTS:
        image = imread(charts / name)  # a PNG that decodes, with pixels in it
        assert (charts / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert min(image.shape[:2]) > 100

    one = await ragbus(env, "report", "--since", "2026-05-01", "--tenant", "globex", "--json")
    figures = json.loads(one.output)
    assert [f["group"] for f in figures["tenants"]] == ["globex"]
    assert figures["tiers"][1]["block_rate"] == 0.0

    recent = await ragbus(env, "report")  # the last 7 days: these requests are older
    assert recent.exit_code == 0
    assert recent.output.rstrip().endswith("none on record")
