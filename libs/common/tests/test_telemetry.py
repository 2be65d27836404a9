"""The span file of the embedded stack: appended by every process, rotated so it never grows without
bound, read back (both generations) by `ragbus trace` and the gateway."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from ragbus.common.telemetry import SpanFileExporter, read_spans, rotated


def provider(path: Path, max_bytes: int, service: str) -> TracerProvider:
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(SimpleSpanProcessor(SpanFileExporter(path, max_bytes)))
    return p


def test_the_span_file_rotates_past_its_size_and_both_generations_are_read(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    # Two processes' exporters on one file, as `ragbus up` and a CLI client have.
    one, two = provider(path, 4_000, "one"), provider(path, 4_000, "two")
    names = []
    for i in range(200):
        name = f"span-{i:03d}"
        with (one if i % 2 else two).get_tracer("t").start_as_current_span(name):
            names.append(name)

    assert rotated(path).exists()
    # Bounded: this generation and the one before, each under the limit plus the last span written.
    assert path.stat().st_size < 4_600
    assert rotated(path).stat().st_size < 4_600
    kept = [s["name"] for s in read_spans(path)]
    assert kept == names[-len(kept) :]  # the newest spans, oldest first, none lost between the files
    assert 10 < len(kept) < 60  # and the oldest ones are gone
    newest = next(s for s in read_spans(path) if s["name"] == names[-1])
    assert [s["name"] for s in read_spans(path, newest["trace_id"])] == [names[-1]]


def test_reading_a_span_file_that_is_not_there_yet_finds_nothing(tmp_path: Path) -> None:
    assert list(read_spans(tmp_path / "spans.jsonl")) == []
