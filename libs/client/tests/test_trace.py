"""`ragbus trace`: spans from the local span file drawn as a tree."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ragbus.client.trace import TraceNotFound, await_trace, load_trace, render_tree

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(
    span_id: str, parent: str | None, name: str, start: int, end: int, trace: str = TRACE
) -> dict[str, object]:
    return {
        "trace_id": trace,
        "span_id": span_id,
        "parent_id": parent,
        "name": name,
        "service": "svc",
        "start_ns": start * 1_000_000,
        "end_ns": end * 1_000_000,
        "status": "UNSET",
    }


@pytest.fixture
def span_file(tmp_path: Path) -> Path:
    path = tmp_path / "spans.jsonl"
    lines = [
        span("a" * 16, None, "ragbus ask", 0, 3),
        span("b" * 16, "a" * 16, "queries.submitted.v1 process", 4, 9),
        span("c" * 16, "b" * 16, "queries.accepted.v1 process", 10, 30),
        span("d" * 16, "a" * 16, "queries.submitted.v1 process (monitor)", 5, 6),
        span("e" * 16, "f" * 16, "orphan", 31, 32),  # its parent was never recorded
        span("0" * 16, None, "another trace", 0, 1, trace="f" * 32),
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{damaged line\n")
    return path


def test_tree_nests_children_under_parents_in_start_order(span_file: Path) -> None:
    text = render_tree(load_trace(span_file, TRACE[:8]))
    lines = text.splitlines()
    assert lines[0] == f"trace {TRACE}  (5 spans, 32.0 ms)"
    assert lines[1].startswith("├─ ragbus ask")
    assert lines[2].startswith("│  ├─ queries.submitted.v1 process  [svc]  +4.0 ms  5.0 ms")
    assert lines[3].startswith("│  │  └─ queries.accepted.v1 process")
    assert lines[4].startswith("│  └─ queries.submitted.v1 process (monitor)")
    assert lines[5].startswith("└─ orphan")
    assert lines[5].endswith("(parent not recorded)")


def test_unknown_short_or_ambiguous_ids_are_clear_errors(span_file: Path, tmp_path: Path) -> None:
    with pytest.raises(TraceNotFound, match="no spans"):
        load_trace(span_file, "deadbeefdeadbeef")
    with pytest.raises(TraceNotFound, match="at least 8"):
        load_trace(span_file, "4bf9")
    with pytest.raises(TraceNotFound, match="no spans"):
        load_trace(tmp_path / "missing.jsonl", TRACE)


class FakeTime:
    """A clock that only moves when slept on; `on_sleep` lets a test append spans meanwhile."""

    def __init__(self, now_s: float, on_sleep: Callable[[float], None] = lambda now: None) -> None:
        self.now, self.on_sleep, self.sleeps = now_s, on_sleep, 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        self.on_sleep(self.now)


def write(path: Path, *spans: dict[str, object], append: bool = False) -> None:
    with path.open("a" if append else "w") as f:
        f.writelines(json.dumps(s) + "\n" for s in spans)


def test_an_old_complete_trace_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    write(path, span("a" * 16, None, "ragbus ask", 0, 3), span("b" * 16, "a" * 16, "process", 4, 9))
    fake = FakeTime(now_s=3600.0)
    assert len(await_trace(path, TRACE, clock=fake.clock, sleep=fake.sleep)) == 2
    assert fake.sleeps == 0


def test_a_fresh_trace_waits_for_the_spans_another_process_exports_later(tmp_path: Path) -> None:
    # The client's and monitor's spans are in the file; the orchestrator's batch comes 0.5 s later.
    path = tmp_path / "spans.jsonl"
    write(path, span("a" * 16, None, "ragbus ask", 0, 40), span("c" * 16, "b" * 16, "guard", 20, 30))
    late = span("b" * 16, "a" * 16, "queries.accepted.v1 process", 5, 15)

    def export_late(now: float) -> None:
        if now >= 0.5 and "queries.accepted" not in path.read_text():
            write(path, late, append=True)

    fake = FakeTime(now_s=0.05, on_sleep=export_late)
    spans = await_trace(path, TRACE, clock=fake.clock, sleep=fake.sleep)
    assert {s["name"] for s in spans} == {"ragbus ask", "guard", "queries.accepted.v1 process"}
    assert "parent not recorded" not in render_tree(spans)
    assert 1.0 <= fake.now < 1.2  # settled: newest span ended settle_s ago, not the whole wait


def test_a_parent_that_never_arrives_ends_the_wait_with_the_orphan_shown(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    write(path, span("e" * 16, "f" * 16, "orphan", 0, 1))
    fake = FakeTime(now_s=100.0)
    spans = await_trace(path, TRACE, wait_s=2.0, clock=fake.clock, sleep=fake.sleep)
    assert 102.0 <= fake.now < 102.2
    assert render_tree(spans).endswith("(parent not recorded)")


def test_a_trace_not_yet_in_the_file_is_awaited_then_reported(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"

    def export(now: float) -> None:
        if now >= 10.3:
            write(path, span("a" * 16, None, "x", 0, 1))

    fake = FakeTime(now_s=10.0, on_sleep=export)
    assert [s["name"] for s in await_trace(path, TRACE, clock=fake.clock, sleep=fake.sleep)] == ["x"]
    with pytest.raises(TraceNotFound, match="no spans"):
        await_trace(path, "deadbeefdeadbeef", wait_s=0.5, clock=fake.clock, sleep=fake.sleep)


def test_a_query_id_finds_its_trace_and_the_tree_says_what_each_span_did(tmp_path: Path) -> None:
    query = "019ade5e-0c4e-7f3a-9b1e-3a8f1c2d4e5f"
    spans = [
        {**span("a" * 16, None, "ragbus ask", 0, 90), "attributes": {"ragbus.query_id": query}},
        {
            **span("b" * 16, "a" * 16, "retrieval", 1, 5),
            "attributes": {"ragbus.retrieval.hits": 5, "ragbus.retrieval.top_score": 0.62},
        },
        {
            **span("c" * 16, "a" * 16, "cascade tier 1 (smollm2)", 6, 80),
            "attributes": {"ragbus.tier.accepted": False, "ragbus.tier.cost_usd": 0.00042},
        },
        {
            **span("d" * 16, "c" * 16, "chat smollm2", 6, 79),
            "attributes": {"gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 64},
        },
        {**span("0" * 16, None, "another", 0, 1, trace="f" * 32), "attributes": {"ragbus.query_id": "x"}},
    ]
    path = tmp_path / "spans.jsonl"
    write(path, *spans)

    text = render_tree(load_trace(path, query))
    assert text.startswith(f"trace {TRACE}  (4 spans")
    assert "retrieval  [svc]  +1.0 ms  4.0 ms  (5 hits, top 0.62)" in text
    assert "cascade tier 1 (smollm2)  [svc]  +6.0 ms  74.0 ms  (escalated, $0.000420)" in text
    assert "chat smollm2  [svc]  +6.0 ms  73.0 ms  (812 -> 64 tokens)" in text
    with pytest.raises(TraceNotFound, match="no trace of query 019ade5e-0000"):
        load_trace(path, "019ade5e-0000")
