"""Draw one trace from the local span file as a tree (what `ragbus trace ID` prints)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragbus.common.telemetry import read_spans


class TraceNotFound(LookupError):
    pass


_HEX = frozenset("0123456789abcdef")


def trace_of_query(path: Path, query_id: str) -> str | None:
    """The trace id of the request whose query id is `query_id` (its spans carry `ragbus.query_id`)."""
    for span in read_spans(path):
        if (span.get("attributes") or {}).get("ragbus.query_id") == query_id:
            return str(span["trace_id"])
    return None


def load_trace(path: Path, trace_id: str) -> list[dict[str, Any]]:
    """The spans of the trace whose id is `trace_id` or starts with it (at least 8 hex digits), or of
    the request whose query id it is."""
    key = trace_id.strip()
    trace_id = key.lower()
    if not _HEX.issuperset(trace_id) or len(trace_id) != 32:
        found = trace_of_query(path, key)
        if found is not None:
            trace_id = found
        elif not _HEX.issuperset(trace_id):
            raise TraceNotFound(f"no trace of query {key} in {path}, and it is not a trace id")
    if len(trace_id) < 8:
        raise TraceNotFound("give at least 8 hex digits of the trace id, or a query id")
    spans = [s for s in read_spans(path) if str(s.get("trace_id", "")).startswith(trace_id)]
    ids = {s["trace_id"] for s in spans}
    if not spans:
        raise TraceNotFound(f"no spans of trace {trace_id} in {path}")
    if len(ids) > 1:
        raise TraceNotFound(f"{trace_id} matches {len(ids)} traces; give more digits")
    return spans


def orphans(spans: list[dict[str, Any]]) -> int:
    """How many spans name a parent that is not (yet) in the file."""
    ids = {s["span_id"] for s in spans}
    return sum(1 for s in spans if s.get("parent_id") and s["parent_id"] not in ids)


def await_trace(
    path: Path,
    trace_id: str,
    *,
    wait_s: float = 5.0,
    settle_s: float = 1.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """`load_trace`, re-read until the trace is complete or `wait_s` has passed.

    Each process exports its spans in batches (every 500 ms), so right after an answer arrives the
    file can hold the client's and monitor's spans but not yet the orchestrator's. A trace counts as
    complete once every parent is recorded and its newest span ended `settle_s` ago; an old trace
    returns at once, a fresh one costs at most `wait_s`.
    """
    deadline = clock() + wait_s
    while True:
        try:
            spans = load_trace(path, trace_id)
        except TraceNotFound:
            if clock() >= deadline:
                raise
        else:
            newest_s = max(s["end_ns"] for s in spans) / 1e9
            if (not orphans(spans) and clock() - newest_s >= settle_s) or clock() >= deadline:
                return spans
        sleep(0.1)


def render_tree(spans: list[dict[str, Any]]) -> str:
    """The spans as an indented tree: name, service, start offset and duration."""
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        parent = s.get("parent_id")
        children[parent if parent in by_id else None].append(s)
    for group in children.values():
        group.sort(key=lambda s: s["start_ns"])
    t0 = min(s["start_ns"] for s in spans)
    t1 = max(s["end_ns"] for s in spans)
    lines = [f"trace {spans[0]['trace_id']}  ({len(spans)} spans, {(t1 - t0) / 1e6:.1f} ms)"]

    def walk(span: dict[str, Any], prefix: str, last: bool) -> None:
        start = (span["start_ns"] - t0) / 1e6
        took = (span["end_ns"] - span["start_ns"]) / 1e6
        orphan = " (parent not recorded)" if span.get("parent_id") and span["parent_id"] not in by_id else ""
        status = "" if span.get("status") in (None, "UNSET", "OK") else f"  !{span['status']}"
        branch = "└─ " if last else "├─ "
        lines.append(
            f"{prefix}{branch}{span['name']}  [{span.get('service')}]  +{start:.1f} ms  "
            f"{took:.1f} ms{status}{orphan}{_summary(span.get('attributes') or {})}"
        )
        kids = children.get(span["span_id"], [])
        for i, child in enumerate(kids):
            walk(child, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    roots = children.get(None, [])
    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    return "\n".join(lines)


def _summary(attributes: dict[str, Any]) -> str:
    """What a span did, in a few words: hits of a retrieval, a tier's verdict, a model call's tokens."""
    parts = []
    if "ragbus.retrieval.hits" in attributes:
        parts.append(
            f"{attributes['ragbus.retrieval.hits']} hits, top {attributes.get('ragbus.retrieval.top_score')}"
        )
    if "ragbus.tier.accepted" in attributes:
        parts.append("accepted" if attributes["ragbus.tier.accepted"] else "escalated")
        if cost := attributes.get("ragbus.tier.cost_usd"):
            parts.append(f"${cost:.6f}")
    if "gen_ai.usage.input_tokens" in attributes:
        tokens_in, tokens_out = (
            attributes["gen_ai.usage.input_tokens"],
            attributes.get("gen_ai.usage.output_tokens"),
        )
        parts.append(f"{tokens_in} -> {tokens_out} tokens")
    if "ragbus.embed.chunks" in attributes:
        parts.append(f"{attributes['ragbus.embed.chunks']} chunks")
    return f"  ({', '.join(parts)})" if parts else ""
