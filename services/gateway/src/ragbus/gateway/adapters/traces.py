"""The TraceSource port's two adapters: the local span file (the embedded stack, `ragbus up`, where
spans go to `RAGBUS_HOME/spans.jsonl`) and Jaeger's query API (spans sent over OTLP to Jaeger).

Both give the same `TraceSpan`s for the same trace (tests/test_traces.py runs one contract against
each): OpenTelemetry's span kinds and status codes, times in ns since the epoch, attributes as the
OpenTelemetry SDK recorded them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ragbus.common.telemetry import read_spans
from ragbus.gateway.ports import TraceSpan, TraceUnavailable


class SpanFileTraces:
    """Spans from the JSON-lines file that every process of the embedded stack appends to
    (`ragbus.common.telemetry.SpanFileExporter`); no link: there is no UI beside it but this one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def spans(self, trace_id: str) -> list[TraceSpan]:
        try:
            found = await asyncio.to_thread(lambda: list(read_spans(self.path, trace_id)))
        except OSError as exc:
            raise TraceUnavailable(f"cannot read the span file {self.path}: {exc}") from exc
        spans = [_from_file(s) for s in found]
        return sorted((s for s in spans if s is not None), key=lambda s: s.start_ns)

    def link(self, trace_id: str) -> str | None:
        return None

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _from_file(span: dict[str, Any]) -> TraceSpan | None:
    try:
        return TraceSpan(
            span_id=str(span["span_id"]),
            parent_id=span.get("parent_id"),
            name=str(span["name"]),
            service=span.get("service"),
            start_ns=int(span["start_ns"]),
            end_ns=int(span.get("end_ns") or span["start_ns"]),
            kind=str(span.get("kind") or "INTERNAL"),
            status=str(span.get("status") or "UNSET"),
            attributes=dict(span.get("attributes") or {}),
        )
    except (KeyError, TypeError, ValueError):
        return None  # a damaged line, like those read_spans skips


# Tags Jaeger adds to an OTLP span, or that carry what TraceSpan has in fields of its own.
_JAEGER_TAGS = frozenset(
    {
        "span.kind",
        "otel.status_code",
        "otel.status_description",
        "error",
        "internal.span.format",
        "otel.scope.name",
        "otel.scope.version",
        "otel.library.name",
        "otel.library.version",
    }
)


class JaegerTraces:
    """Spans from Jaeger's query service (`GET {url}/api/traces/{trace_id}`, the API its UI uses), and
    the link to the trace's page in its UI (`{ui_url}/trace/{trace_id}`)."""

    def __init__(
        self,
        url: str,
        ui_url: str | None = None,
        *,
        timeout_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.ui_url = (ui_url or url).rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def spans(self, trace_id: str) -> list[TraceSpan]:
        try:
            response = await self._client.get(f"{self.url}/api/traces/{quote(trace_id, safe='')}")
        except httpx.HTTPError as exc:
            raise TraceUnavailable(
                f"Jaeger at {self.url} did not answer: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code == 404:
            return []  # not (yet) there: Jaeger's "trace not found"
        if response.status_code != 200:
            raise TraceUnavailable(
                f"Jaeger at {self.url} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise TraceUnavailable(f"Jaeger at {self.url} answered something that is not JSON") from exc
        spans = [s for trace in body.get("data") or [] if trace for s in _from_jaeger(trace)]
        return sorted(spans, key=lambda s: s.start_ns)

    def link(self, trace_id: str) -> str | None:
        return f"{self.ui_url}/trace/{quote(trace_id, safe='')}"

    async def ping(self) -> None:
        try:
            response = await self._client.get(f"{self.url}/api/services")
        except httpx.HTTPError as exc:
            raise TraceUnavailable(f"Jaeger at {self.url} did not answer: {exc}") from exc
        if response.status_code != 200:
            raise TraceUnavailable(f"Jaeger at {self.url} answered {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _from_jaeger(trace: dict[str, Any]) -> list[TraceSpan]:
    """One trace of Jaeger's API model (`data[i]`): spans with `references`, tags as typed key/value
    pairs, times in microseconds, and the service of each span in `processes`."""
    processes = trace.get("processes") or {}
    out = []
    for span in trace.get("spans") or []:
        tags = {t["key"]: t.get("value") for t in span.get("tags") or [] if "key" in t}
        parent = next(
            (r.get("spanID") for r in span.get("references") or [] if r.get("refType") == "CHILD_OF"), None
        )
        status = str(tags.get("otel.status_code") or ("ERROR" if tags.get("error") is True else "UNSET"))
        start_us = int(span.get("startTime") or 0)
        process = processes.get(span.get("processID")) or {}
        out.append(
            TraceSpan(
                span_id=str(span.get("spanID")),
                parent_id=parent,
                name=str(span.get("operationName") or ""),
                service=process.get("serviceName"),
                start_ns=start_us * 1000,
                end_ns=(start_us + int(span.get("duration") or 0)) * 1000,
                kind=str(tags.get("span.kind") or "internal").upper(),
                status=status.upper(),
                attributes={k: v for k, v in tags.items() if k not in _JAEGER_TAGS},
            )
        )
    return out
