"""The TraceSource port: one contract, run against both adapters, so that neither drifts from the other.

The same trace is recorded twice: into a span file by the real `SpanFileExporter` (what every process of
`ragbus up` writes), from spans the OpenTelemetry SDK makes with fixed ids and times; and as Jaeger's
query API returns it (`data/jaeger_trace.json`, in the shape of Jaeger's `GET /api/traces/{id}`: tags
as typed key/value pairs, times in microseconds, services in `processes`), served by a tiny HTTP server
on 127.0.0.1. Both adapters must give the same spans.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from ragbus.common.telemetry import SpanFileExporter
from ragbus.gateway.adapters.memory import MemoryRequestRecord
from ragbus.gateway.adapters.traces import JaegerTraces, SpanFileTraces
from ragbus.gateway.app import trace_source
from ragbus.gateway.ports import TraceSource, TraceSpan, TraceUnavailable
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps

DATA = Path(__file__).with_name("data")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_765_000_000_000_000_000  # ns since the epoch (whole microseconds, as Jaeger keeps them)
MS = 1_000_000

# The trace both recordings hold: the gateway publishes a question, the guard passes it on, the
# orchestrator retrieves and tries tier 1, which times out.
EXPECTED = [
    TraceSpan(
        "00f067aa0ba902b7", None, "queries.submitted.v1 publish", "ragbus-gateway", T0, T0 + 2 * MS,
        "PRODUCER", "UNSET",
        {
            "messaging.system": "kafka",
            "messaging.destination.name": "queries.submitted.v1",
            "messaging.kafka.message.key": "acme:chat-42",
            "ragbus.query_id": "q1",
        },
    ),
    TraceSpan(
        "00f067aa0ba902b8", "00f067aa0ba902b7", "queries.submitted.v1 process", "ragbus-guard",
        T0 + 5 * MS, T0 + 17 * MS, "CONSUMER", "UNSET",
        {"messaging.kafka.destination.partition": 3, "ragbus.guard.passed": True},
    ),
    TraceSpan(
        "00f067aa0ba902b9", "00f067aa0ba902b8", "queries.accepted.v1 process", "ragbus-orchestrator",
        T0 + 20 * MS, T0 + 80 * MS, "CONSUMER", "UNSET", {},
    ),
    TraceSpan(
        "00f067aa0ba902ba", "00f067aa0ba902b9", "retrieve", "ragbus-orchestrator", T0 + 22 * MS,
        T0 + 30 * MS, "INTERNAL", "UNSET", {"ragbus.retrieve.hits": 5, "ragbus.retrieve.best_score": 0.58},
    ),
    TraceSpan(
        "00f067aa0ba902bb", "00f067aa0ba902b9", "tier 1", "ragbus-orchestrator", T0 + 31 * MS,
        T0 + 76 * MS, "INTERNAL", "ERROR", {"ragbus.tier": 1, "error.type": "TimeoutError"},
    ),
]  # fmt: skip


class _FixedIds(IdGenerator):
    def __init__(self, trace_id: str, span_ids: list[str]) -> None:
        self.trace_id, self.span_ids = int(trace_id, 16), iter(int(s, 16) for s in span_ids)

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return next(self.span_ids)


def record_span_file(path: Path) -> None:
    """EXPECTED as the services of the embedded stack write it: through the OpenTelemetry SDK and the
    span file exporter, one provider per service; and a span of another trace beside it."""
    exporter = SpanFileExporter(path)
    ids = _FixedIds(TRACE_ID, [s.span_id for s in EXPECTED])
    providers: dict[str, TracerProvider] = {}
    made: dict[str, Any] = {}
    for s in EXPECTED:
        assert s.service is not None
        if s.service not in providers:
            providers[s.service] = TracerProvider(
                resource=Resource.create({"service.name": s.service}), id_generator=ids
            )
            providers[s.service].add_span_processor(SimpleSpanProcessor(exporter))
        tracer = providers[s.service].get_tracer("test")
        parent = set_span_in_context(made[s.parent_id]) if s.parent_id else Context()
        span = tracer.start_span(
            s.name, context=parent, kind=SpanKind[s.kind], start_time=s.start_ns, attributes=s.attributes
        )
        if s.status == "ERROR":
            span.set_status(Status(StatusCode.ERROR, "timed out"))
        made[s.span_id] = span
    for s in reversed(EXPECTED):  # children end first, as they do
        made[s.span_id].end(end_time=s.end_ns)
    other = TracerProvider(
        resource=Resource.create({"service.name": "ragbus-embed"}),
        id_generator=_FixedIds(OTHER_TRACE_ID, ["1111111111111111"]),
    )
    other.add_span_processor(SimpleSpanProcessor(exporter))
    other.get_tracer("test").start_span("docs.chunked.v1 process", context=Context()).end()


class FakeJaeger:
    """Jaeger's query API on 127.0.0.1: the recorded trace by its id, Jaeger's 404 for any other;
    `failing` makes every answer a 500."""

    def __init__(self) -> None:
        recorded = (DATA / "jaeger_trace.json").read_bytes()
        self.failing = False
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.paths.append(self.path)
                if fake.failing:
                    self._send(500, b'{"data":null,"errors":[{"code":500,"msg":"storage is down"}]}')
                elif self.path == f"/api/traces/{TRACE_ID}":
                    self._send(200, recorded)
                elif self.path == "/api/services":
                    self._send(200, b'{"data":["ragbus-gateway"],"total":1,"errors":null}')
                else:
                    self._send(404, b'{"data":null,"errors":[{"code":404,"msg":"trace not found"}]}')

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeJaeger:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def fake_jaeger() -> Iterator[FakeJaeger]:
    with FakeJaeger() as jaeger:
        yield jaeger


@pytest.fixture
def span_file(tmp_path: Path) -> Path:
    path = tmp_path / "spans.jsonl"
    record_span_file(path)
    return path


@pytest.fixture
async def jaeger_source(fake_jaeger: FakeJaeger) -> AsyncIterator[JaegerTraces]:
    source = JaegerTraces(fake_jaeger.url, "http://jaeger.example:16686/")
    yield source
    await source.aclose()


@pytest.fixture(params=["span_file", "jaeger"])
def source(request: pytest.FixtureRequest, span_file: Path) -> TraceSource:
    """Each contract test runs against the span file and against Jaeger's API."""
    if request.param == "span_file":
        return SpanFileTraces(span_file)
    found: TraceSource = request.getfixturevalue("jaeger_source")
    return found


# --- the contract ----------------------------------------------------------------------------------


async def test_a_traces_spans_come_with_parents_services_kinds_status_times_and_attributes(
    source: TraceSource,
) -> None:
    assert await source.spans(TRACE_ID) == EXPECTED


async def test_a_trace_with_no_spans_recorded_is_empty(source: TraceSource) -> None:
    assert await source.spans("ffffffffffffffffffffffffffffffff") == []


async def test_the_source_answers_its_health_check(source: TraceSource) -> None:
    await source.ping()


# --- each adapter's own ----------------------------------------------------------------------------


async def test_the_span_file_keeps_one_trace_apart_from_the_others_and_skips_damaged_lines(
    span_file: Path, tmp_path: Path
) -> None:
    with span_file.open("a", encoding="utf-8") as f:
        f.write('{"trace_id": "' + TRACE_ID + '", "name": "cut off\n')  # a line a crash left half written
        f.write(json.dumps({"trace_id": TRACE_ID, "name": "no ids"}) + "\n")
    source = SpanFileTraces(span_file)
    assert await source.spans(TRACE_ID) == EXPECTED
    (other,) = await source.spans(OTHER_TRACE_ID)
    assert (other.name, other.service, other.parent_id) == ("docs.chunked.v1 process", "ragbus-embed", None)
    assert source.link(TRACE_ID) is None  # nothing to open it in but the web app
    assert await SpanFileTraces(tmp_path / "none-yet.jsonl").spans(TRACE_ID) == []


async def test_jaeger_links_to_the_trace_in_its_ui_and_asks_its_api_by_trace_id(
    jaeger_source: JaegerTraces, fake_jaeger: FakeJaeger
) -> None:
    assert jaeger_source.link(TRACE_ID) == f"http://jaeger.example:16686/trace/{TRACE_ID}"
    await jaeger_source.spans(TRACE_ID)
    assert fake_jaeger.paths == [f"/api/traces/{TRACE_ID}"]
    same = JaegerTraces(fake_jaeger.url + "/")
    try:
        assert same.link(TRACE_ID) == f"{fake_jaeger.url}/trace/{TRACE_ID}"  # no UI URL: the query's
    finally:
        await same.aclose()


async def test_a_jaeger_that_fails_or_is_away_is_unavailable_not_an_empty_trace(
    jaeger_source: JaegerTraces, fake_jaeger: FakeJaeger
) -> None:
    fake_jaeger.failing = True
    with pytest.raises(TraceUnavailable, match="answered 500"):
        await jaeger_source.spans(TRACE_ID)
    with pytest.raises(TraceUnavailable):
        await jaeger_source.ping()
    fake_jaeger.__exit__()  # nobody listens there any more
    away = JaegerTraces(fake_jaeger.url, timeout_s=2)
    try:
        with pytest.raises(TraceUnavailable, match="did not answer"):
            await away.spans(TRACE_ID)
    finally:
        await away.aclose()


# --- GET /v1/requests/{id}/trace -------------------------------------------------------------------


class AwayTraces:
    """A trace source that cannot be read (Jaeger down)."""

    async def spans(self, trace_id: str) -> list[TraceSpan]:
        raise TraceUnavailable("Jaeger at http://jaeger:16686 did not answer: ConnectError")

    def link(self, trace_id: str) -> str | None:
        return f"http://jaeger:16686/trace/{trace_id}"

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _story(tenant: str, query_id: str, trace_id: str | None) -> dict[str, Any]:
    return {
        "tenant": tenant, "query_id": query_id, "correlation_id": f"corr-{query_id}",
        "submitted_at": "2026-12-05T10:00:00+00:00", "status": "answered", "trace_id": trace_id,
    }  # fmt: skip


@pytest.fixture
def traced(request_record: MemoryRequestRecord, deps: GatewayDeps) -> GatewayDeps:
    request_record.stories = [
        _story("acme", "q1", TRACE_ID),
        _story("acme", "q-untraced", None),
        _story("globex", "g1", OTHER_TRACE_ID),
    ]
    return deps


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_requests_trace_is_its_spans_in_order_with_offsets_parents_and_chosen_attributes(
    http: httpx.AsyncClient, api_key: str, traced: GatewayDeps, span_file: Path
) -> None:
    traced.traces = SpanFileTraces(span_file)
    response = await http.get("/v1/requests/chatcmpl-q1/trace", headers=auth(api_key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["request_id"], body["trace_id"], body["jaeger_url"]) == ("q1", TRACE_ID, None)
    assert body["duration_ms"] == 80.0  # first start to last end
    spans = body["spans"]
    assert [(s["name"], s["service"], s["offset_ms"], s["duration_ms"]) for s in spans] == [
        ("queries.submitted.v1 publish", "ragbus-gateway", 0.0, 2.0),
        ("queries.submitted.v1 process", "ragbus-guard", 5.0, 12.0),
        ("queries.accepted.v1 process", "ragbus-orchestrator", 20.0, 60.0),
        ("retrieve", "ragbus-orchestrator", 22.0, 8.0),
        ("tier 1", "ragbus-orchestrator", 31.0, 45.0),
    ]
    by_name = {s["name"]: s for s in spans}
    assert by_name["retrieve"]["parent_id"] == by_name["queries.accepted.v1 process"]["span_id"]
    assert (by_name["tier 1"]["status"], by_name["tier 1"]["kind"]) == ("ERROR", "INTERNAL")
    assert by_name["tier 1"]["attributes"] == {"error.type": "TimeoutError", "ragbus.tier": 1}
    assert spans[0]["start"] == "2025-12-06T05:46:40.000000Z"
    # The message key (tenant and conversation) stays in the trace store; topic and query id are shown.
    assert spans[0]["attributes"] == {
        "messaging.destination.name": "queries.submitted.v1",
        "messaging.system": "kafka",
        "ragbus.query_id": "q1",
    }


async def test_jaeger_gives_the_same_trace_and_the_link_to_its_page(
    http: httpx.AsyncClient, api_key: str, traced: GatewayDeps, jaeger_source: JaegerTraces, span_file: Path
) -> None:
    traced.traces = jaeger_source
    from_jaeger = (await http.get("/v1/requests/q1/trace", headers=auth(api_key))).json()
    assert from_jaeger["jaeger_url"] == f"http://jaeger.example:16686/trace/{TRACE_ID}"
    traced.traces = SpanFileTraces(span_file)
    from_file = (await http.get("/v1/requests/q1/trace", headers=auth(api_key))).json()
    assert from_jaeger["spans"] == from_file["spans"]


async def test_another_tenants_trace_is_not_found_and_a_request_without_one_has_no_spans(
    http: httpx.AsyncClient, api_key: str, traced: GatewayDeps, span_file: Path
) -> None:
    traced.traces = SpanFileTraces(span_file)
    other = await http.get("/v1/requests/g1/trace", headers=auth(api_key))
    assert other.status_code == 404  # globex's: as absent as one that does not exist
    assert other.json()["error"]["code"] == "not_found"
    assert (await http.get("/v1/requests/nope/trace", headers=auth(api_key))).status_code == 404
    untraced = await http.get("/v1/requests/q-untraced/trace", headers=auth(api_key))
    assert untraced.status_code == 200
    assert (untraced.json()["trace_id"], untraced.json()["spans"]) == (None, [])
    assert (await http.get("/v1/requests/q1/trace")).status_code == 401


async def test_a_trace_source_that_cannot_be_read_is_a_503_and_none_at_all_a_501(
    http: httpx.AsyncClient, api_key: str, traced: GatewayDeps
) -> None:
    traced.traces = AwayTraces()
    away = await http.get("/v1/requests/q1/trace", headers=auth(api_key))
    assert away.status_code == 503
    assert away.headers["Retry-After"] == "5"
    assert "did not answer" in away.json()["error"]["message"]
    traced.traces = None
    none = await http.get("/v1/requests/q1/trace", headers=auth(api_key))
    assert none.status_code == 501
    assert "GATEWAY_JAEGER_URL" in none.json()["error"]["message"]


# --- where the gateway reads traces from ------------------------------------------------------------


@pytest.mark.parametrize(
    ("otlp", "jaeger_url", "ui_url", "expected"),
    [
        (None, None, None, None),  # the span file: no Jaeger
        ("http://jaeger:4318", None, None, ("http://jaeger:16686", "http://jaeger:16686")),
        ("https://traces.example:4317/", None, None, ("https://traces.example:16686",) * 2),
        ("http://otel-collector:4319", None, None, None),  # a collector: where its spans go is unknown
        (
            "http://otel-collector:4318",
            "http://jaeger:16686/",  # named: the OTLP endpoint does not matter
            "http://127.0.0.1:16686",  # the browser's way there (compose's published port)
            ("http://jaeger:16686", "http://127.0.0.1:16686"),
        ),
        ("http://jaeger:4318", "off", None, None),
    ],
)
def test_jaeger_is_where_the_settings_say_or_beside_its_own_otlp_receiver(
    otlp: str | None, jaeger_url: str | None, ui_url: str | None, expected: tuple[str, str] | None
) -> None:
    settings = GatewaySettings(jaeger_url=jaeger_url, jaeger_ui_url=ui_url)
    settings.telemetry.otlp_endpoint = otlp
    assert settings.jaeger() == expected


def test_the_gateway_picks_its_trace_source_by_where_the_spans_go(tmp_path: Path) -> None:
    local = GatewaySettings()
    local.telemetry.otlp_endpoint, local.telemetry.span_file = None, tmp_path / "spans.jsonl"
    found = trace_source(local)
    assert isinstance(found, SpanFileTraces)
    assert found.path == tmp_path / "spans.jsonl"
    compose = GatewaySettings()
    compose.telemetry.otlp_endpoint = "http://jaeger:4318"
    assert isinstance(trace_source(compose), JaegerTraces)
    collector = GatewaySettings()
    collector.telemetry.otlp_endpoint = "http://otel-collector:4319"
    assert trace_source(collector) is None
