"""OpenTelemetry setup: one `tracer_provider(service)` call per service.

Spans go over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (Jaeger all-in-one listens on 4318),
else they are appended as JSON lines to a local span file that `ragbus trace ID` draws as a tree.
Trace context crosses the bus in the Kafka headers (W3C `traceparent`), by FastStream's telemetry
middleware.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragbus.common.settings import TelemetrySettings


def rotated(path: Path) -> Path:
    """Where the span file's previous generation is kept."""
    return path.with_name(path.name + ".1")


class SpanFileExporter(SpanExporter):
    """Appends finished spans as JSON lines; several processes may append to the same file. Past
    `max_bytes` the file becomes its `.1` (the one before is dropped), so disk use stays bounded."""

    def __init__(self, path: Path, max_bytes: int = 64 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def _rotate_if_full(self) -> None:
        try:
            if self.path.stat().st_size < self.max_bytes:
                return
        except FileNotFoundError:
            return
        # Processes share the file: one rotates, under an exclusive lock, and checks again under it, so
        # a file another process has just started is never rotated away.
        with self.path.with_name(self.path.name + ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self.path.stat().st_size >= self.max_bytes:
                    self.path.replace(rotated(self.path))
            except FileNotFoundError:
                pass

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(s), separators=(",", ":")) + "\n" for s in spans)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_full()
            # One write() per batch, O_APPEND: lines from concurrent writers do not interleave.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "name": span.name,
        "service": span.resource.attributes.get("service.name"),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {
            k: v if isinstance(v, str | int | float | bool) else list(v or ())
            for k, v in (span.attributes or {}).items()
        },
        "links": [format(link.context.span_id, "016x") for link in span.links],
    }


def read_spans(path: Path, trace_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The spans recorded in a span file and its rotated generation, oldest first (of one trace, if
    given); damaged lines are skipped."""
    for file in (rotated(path), path):
        try:
            f = file.open(encoding="utf-8")
        except FileNotFoundError:
            continue
        with f:
            for line in f:
                if trace_id is not None and trace_id not in line:
                    continue  # not this trace's: skip the parsing (the file holds every trace)
                try:
                    span = json.loads(line)
                except ValueError:
                    continue
                if trace_id is None or span.get("trace_id") == trace_id:
                    yield span


_exporters: dict[str, SpanExporter] = {}
_providers: dict[str, TracerProvider] = {}
_by_service: dict[str, TracerProvider] = {}  # the latest provider made for each service
_lock = threading.Lock()


def _exporter(settings: TelemetrySettings) -> SpanExporter:
    key = settings.otlp_endpoint or str(settings.span_file)
    with _lock:
        if key not in _exporters:
            if settings.otlp_endpoint:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                endpoint = settings.otlp_endpoint.rstrip("/")
                if not endpoint.endswith("/v1/traces"):
                    endpoint += "/v1/traces"
                _exporters[key] = OTLPSpanExporter(endpoint=endpoint)
            else:
                max_bytes = int(settings.span_file_max_mb * (1 << 20))
                _exporters[key] = SpanFileExporter(settings.span_file, max_bytes)
        return _exporters[key]


def tracer_provider(service: str, settings: TelemetrySettings | None = None) -> TracerProvider:
    """The tracer provider of one service (`service.name` = ragbus-<service>), created once per process
    and destination.

    Several services hosted in one process each get their own provider (their own service name) over
    one shared exporter.
    """
    settings = settings or TelemetrySettings()
    name = f"ragbus-{service}"
    key = f"{name}|{settings.enabled}|{settings.otlp_endpoint or settings.span_file}"
    with _lock:
        provider = _providers.get(key)
    if provider is not None:
        return provider
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if settings.enabled:
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings), schedule_delay_millis=500))
    with _lock:
        provider = _providers.setdefault(key, provider)
        _by_service[service] = provider
        return provider


def tracer(service: str) -> trace.Tracer:
    """The tracer a service's own code opens spans with (retrieval, model calls, scanners): from the
    provider its broker traces with, so the spans nest under the message's and carry its service name.
    Before the service's broker exists (a unit test, a benchmark) the global provider's: a no-op unless
    one was installed."""
    with _lock:
        provider = _by_service.get(service)
    return (provider or trace.get_tracer_provider()).get_tracer(f"ragbus.{service}")


def flush() -> None:
    """Export every pending span now (before a process exits, or before a test reads the span file)."""
    with _lock:
        providers = list(_providers.values())
    for provider in providers:
        provider.force_flush()


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


@contextmanager
def recording(service: str) -> Iterator[InMemorySpanExporter]:
    """Spans the service's own code opens (`tracer(service)`) go to memory while inside: for tests
    that read what a use case traced. The service's previous provider comes back after."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"ragbus-{service}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with _lock:
        previous = _by_service.get(service)
        _by_service[service] = provider
    try:
        yield exporter
    finally:
        with _lock:
            if previous is None:
                _by_service.pop(service, None)
            else:
                _by_service[service] = previous
