"""The report's and the story's rules (ragbus.monitor.reports), on hand-made rows: exact figures."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ragbus.common.events import QueriesRejected, Verdict
from ragbus.monitor.audit_views import render_story
from ragbus.monitor.domain import summarize
from ragbus.monitor.ports import RequestSummary
from ragbus.monitor.reports import Figures, percentile, report, story, trace_link

from .stories import BASE, TRACE, make_story, traced


def attempt(tier: int, name: str, accepted: bool, ms: float, p: int = 0, c: int = 0, usd: float = 0.0) -> Any:
    return {
        "tier": tier,
        "name": name,
        "accepted": accepted,
        "reason": "",
        "latency_ms": ms,
        "prompt_tokens": p,
        "completion_tokens": c,
        "cost_usd": usd,
    }


def row(tenant: str, status: str, attempts: list[Any], latency_ms: float | None, n: int) -> RequestSummary:
    answering = next((a for a in reversed(attempts) if a["accepted"]), None)
    return RequestSummary(
        tenant=tenant,
        correlation_id=f"q-{n}",
        query_id=f"q-{n}",
        conversation_id=None,
        user_id="u-1",
        question="?",
        status=status,
        answer=None,
        status_reason=None,
        tier=answering["tier"] if answering else None,
        escalation_reason=None,
        verdicts=[],
        citations=0,
        prompt_tokens=sum(a["prompt_tokens"] for a in attempts),
        completion_tokens=sum(a["completion_tokens"] for a in attempts),
        cost_usd=sum(a["cost_usd"] for a in attempts),
        submitted_at=BASE + timedelta(minutes=n),
        completed_at=None,
        latency_ms=latency_ms,
        model=answering["name"] if answering else None,
        attempts=attempts,
    )


ROWS = [
    row(
        "acme",
        "answered",
        [attempt(0, "extractive", False, 4), attempt(1, "smol", True, 800, 400, 50, 0.0004)],
        1000,
        1,
    ),
    row("acme", "answered", [attempt(0, "extractive", True, 6)], 100, 2),
    # Blocked by the output guard: the tier answered, the guard withheld it.
    row(
        "acme",
        "blocked",
        [attempt(0, "extractive", False, 2), attempt(1, "smol", True, 1200, 600, 100, 0.0006)],
        1500,
        3,
    ),
    row("globex", "blocked", [], 50, 4),  # blocked by the input guard: no tier tried
    row("globex", "pending", [], None, 5),
]


def test_percentiles_interpolate_between_ranks_like_percentile_cont() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1500, 100, 1000], 0.5) == 1000
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10, 20, 30, 40, 50], 0.95) == pytest.approx(48.0)
    assert percentile([50, 100, 1000, 1500], 0.95) == pytest.approx(1425.0)


def test_the_figures_per_tenant() -> None:
    acme, globex, total = report(ROWS).tenants

    assert acme == Figures(
        group="acme",
        count=3,
        prompt_tokens=1000,
        completion_tokens=150,
        cost_usd=pytest.approx(0.001),  # type: ignore[arg-type]
        p50_ms=1000.0,
        p95_ms=pytest.approx(1450.0),  # type: ignore[arg-type]
        block_rate=pytest.approx(1 / 3),  # type: ignore[arg-type]
        escalation_rate=pytest.approx(2 / 3),  # type: ignore[arg-type]
    )
    # No tier tried: no escalation rate rather than 0%; the pending request is not finished.
    assert globex == Figures("globex", 2, 0, 0, 0, 50.0, 50.0, 1.0, None)
    assert (total.group, total.count, total.tokens) == ("all", 5, 1150)
    assert (total.p50_ms, total.block_rate) == (550.0, 0.5)
    assert total.p95_ms == pytest.approx(1425.0)
    assert total.escalation_rate == pytest.approx(2 / 3)


def test_the_figures_per_tier_are_of_the_attempts() -> None:
    extractive, smol = report(ROWS).tiers

    # Tier 0 was gone past twice in three attempts, and answered one request, which was not blocked.
    assert extractive == Figures(
        group="0 extractive",
        count=3,
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=0.0,
        p50_ms=4.0,
        p95_ms=pytest.approx(5.8),  # type: ignore[arg-type]
        block_rate=0.0,
        escalation_rate=pytest.approx(2 / 3),  # type: ignore[arg-type]
    )
    # Tier 1 answered twice; the output guard blocked one of the two.
    assert smol == Figures(
        group="1 smol",
        count=2,
        prompt_tokens=1000,
        completion_tokens=150,
        cost_usd=pytest.approx(0.001),  # type: ignore[arg-type]
        p50_ms=1000.0,
        p95_ms=pytest.approx(1180.0),  # type: ignore[arg-type]
        block_rate=0.5,
        escalation_rate=0.0,
    )


def test_one_tenant_has_no_total_line_and_nothing_is_an_empty_report() -> None:
    assert [f.group for f in report(ROWS[:3]).tenants] == ["acme"]
    empty = report([])
    assert (empty.tenants, empty.tiers) == ([], [])
    assert empty.as_json() == {"tenants": [], "tiers": []}


@pytest.mark.parametrize(
    ("env", "link"),
    [
        ({"RAGBUS_JAEGER_URL": "https://jaeger.example.org/"}, f"https://jaeger.example.org/trace/{TRACE}"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, f"http://127.0.0.1:16686/trace/{TRACE}"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317", "RAGBUS_JAEGER_UI_PORT": "26686"},
            f"http://jaeger:26686/trace/{TRACE}",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:9000"}, None),  # not Jaeger's: we cannot tell
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1]:4318"}, f"http://[::1]:16686/trace/{TRACE}"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url:x"}, None),
        ({}, None),  # spans to the local file: `ragbus trace ID`
    ],
)
def test_a_trace_links_to_jaeger_when_the_settings_say_where(env: dict[str, str], link: str | None) -> None:
    assert trace_link(TRACE, env) == link
    assert trace_link(None, env) is None


def test_a_story_is_told_in_order_with_offsets_from_the_question() -> None:
    s = make_story()
    events = [traced(e) for e in s.request]
    summary = summarize(events, [traced(e) for e in s.indexed])
    assert summary is not None

    told = story(summary, events, "http://127.0.0.1:16686/trace/x")

    assert [(e["offset_ms"], e["type"].split(".")[2], e["detail"]) for e in told["events"]] == [
        (0.0, "queries", "user u-7"),
        (40.0, "queries", "accepted: injection pass 0.02, pii pass (EMAIL redacted)"),
        (1174.0, "answers", "tier 1, 2 retrieved, 1 cited"),
        (1234.0, "answers", "answered; pii pass, citations pass"),
        (6234.0, "feedback", 'down "cite the trial"'),
    ]
    assert told["stages"] == [
        {"stage": "input guard", "service": "guard", "offset_ms": 10.0, "ms": 25.0},
        {"stage": "retrieval", "service": "orchestrator", "offset_ms": 60.0, "ms": 30.0},
        {"stage": "generation", "service": "orchestrator", "offset_ms": 95.0, "ms": 1055.0},
        {"stage": "output guard", "service": "guard", "offset_ms": 1190.0, "ms": 40.0},
    ]
    assert told["feedback"] == [
        {"offset_ms": 6234.0, "rating": "down", "comment": "cite the trial", "user_id": "u-7"}
    ]
    assert told["request"]["trace_url"] == "http://127.0.0.1:16686/trace/x"
    assert told["request"]["submitted_at"] == BASE.isoformat()
    assert [(x["doc_id"], x["version"], x["cited"]) for x in told["sources"]] == [
        ("doc-17", "v1", 1),
        ("doc-3", "v7", None),
    ]
    assert [(a["name"], a["accepted"]) for a in told["tiers"]] == [
        ("extractive", False),
        ("smollm2-135m", True),
    ]


def test_a_question_still_in_flight_and_one_the_input_guard_refused_are_told_too() -> None:
    s = make_story()
    pending = [traced(s.submitted)]
    refused = s.submitted.follow(
        QueriesRejected(
            query_id="q-1", reason="prompt injection", verdicts=[Verdict(check="injection", passed=False)]
        ),
        source="ragbus/guard",
    )
    for events in (pending, [*pending, traced(refused)]):
        summary = summarize(events)
        assert summary is not None
        text = render_story(story(summary, events))
        assert f"trace {TRACE}  (`ragbus trace {TRACE}`)" in text
        assert "answer\n  (none yet)" in text
        assert "tiers tried" not in text
        assert "sources" not in text
    assert "queries.rejected     ragbus/guard           rejected: prompt injection; injection FAIL" in text
    assert "  input  injection FAIL" in text
