"""`ragbus trace`: spans from the local span file drawn as a tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragbus.client.trace import TraceNotFound, load_trace, render_tree

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
