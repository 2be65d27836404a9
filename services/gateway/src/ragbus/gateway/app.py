"""The gateway service: an HTTP server (uvicorn, `web.py`) that is one more Kafka client.

It asks through the ragbus client library (libs/client), as the CLI does: one client publishes every
request's `queries.submitted` and reads the replies without a consumer group (from "now", on every
partition), so each replica sees every answer and keeps those it waits for, matched by query id (fresh
UUIDv7s the client makes, never taken from a request). Being the code that touches Kafka, it lives
here, in the composition root.

`create_app(settings)` returns a RagbusApp like every service's, so the runner hosts it the same way
(`ragbus serve gateway`, `ragbus up`): the service skeleton opens its clients
(the bus client, the key store; retried in the background while one is down, the HTTP API answering
503 meanwhile) and the HTTP server starts after them and stops first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator, Mapping, Sequence
from functools import partial

import uvicorn
from aiokafka.errors import KafkaError
from starlette.types import ASGIApp

from ragbus.client.client import Document, RagbusClient, RequestFailed
from ragbus.common.app import RagbusApp
from ragbus.common.events import (
    AnswersDelta,
    DocsDeleted,
    DocsSubmitted,
    FeedbackSubmitted,
    QueriesSubmitted,
    QueryOptions,
)
from ragbus.common.logging import get_logger
from ragbus.common.service import Clients, Service
from ragbus.gateway.adapters.monitor_record import PostgresRequestRecord
from ragbus.gateway.adapters.postgres import PostgresKeyStore
from ragbus.gateway.adapters.traces import JaegerTraces, SpanFileTraces
from ragbus.gateway.ports import Answered, AnswerTimeout, AnswerUnavailable, IndexedDocument, TraceSource
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps
from ragbus.gateway.web import create_web_app

SERVICE = "gateway"
log = get_logger("ragbus.gateway")


async def open_deps(settings: GatewaySettings, clients: Clients) -> GatewayDeps:
    keys = clients.add("database", await PostgresKeyStore.open(settings))
    answerer = clients.add("bus_client", await BusAnswerer.open(settings))
    # Requests' stories: the monitor's schema in the same database, read over the same pool.
    requests = PostgresRequestRecord(keys.pool, settings.monitor_schema)
    traces = trace_source(settings)
    if traces is not None:
        # Not in /healthz: traces are best effort (Jaeger down makes the trace endpoint a 503, not the
        # gateway unhealthy).
        clients.add_closer(traces)
    return GatewayDeps(
        answerer=answerer, keys=keys, documents=keys.documents, requests=requests, traces=traces
    )


def trace_source(settings: GatewaySettings) -> TraceSource | None:
    """Where the requests' spans are: Jaeger's query API when there is a Jaeger (GATEWAY_JAEGER_URL, or
    beside the OTLP endpoint), else the local span file when spans go there (no OTLP endpoint), else
    nowhere the gateway can read (a collector of its own)."""
    jaeger = settings.jaeger()
    if jaeger is not None:
        url, ui_url = jaeger
        log.info("traces read from Jaeger", url=url, ui_url=ui_url)
        return JaegerTraces(url, ui_url)
    if not settings.telemetry.otlp_endpoint:
        return SpanFileTraces(settings.telemetry.span_file)
    log.warning(
        "the requests' traces cannot be shown: spans go over OTLP to a collector and GATEWAY_JAEGER_URL "
        "names no Jaeger to read them from",
        otlp_endpoint=settings.telemetry.otlp_endpoint,
    )
    return None


@contextlib.contextmanager
def _classified() -> Generator[None, None, None]:
    """The client's failures as the port's: no answer in time, or the stack refused or is away."""
    try:
        yield
    except TimeoutError as exc:  # the client's WaitTimeout too
        raise AnswerTimeout(str(exc)) from exc
    except RequestFailed as exc:
        raise AnswerUnavailable(str(exc)) from exc
    except KafkaError as exc:
        raise AnswerUnavailable(f"the bus is unavailable: {exc}") from exc


class BusAnswerer:
    def __init__(self, client: RagbusClient, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    @classmethod
    async def open(cls, settings: GatewaySettings) -> BusAnswerer:
        # It signs as the gateway (a principal of its own in the trust file, any tenant: docs/trust.md).
        trust = settings.trust.model_copy(update={"principal": settings.trust.principal or SERVICE})
        client = RagbusClient(
            settings.kafka, source=settings.source, telemetry=settings.telemetry, trust=trust
        )
        await client.start()
        return cls(client, settings.answer_timeout_s)

    async def ask(
        self,
        tenant: str,
        question: str,
        *,
        conversation_id: str | None,
        groups: Sequence[str],
        options: QueryOptions,
        on_delta: Callable[[AnswersDelta], None] | None = None,
    ) -> Answered:
        try:
            result = await self._client.ask(
                question,
                conversation_id=conversation_id,
                options=options,
                timeout=self._timeout_s,
                on_delta=on_delta,
                groups=groups,
                tenant=tenant,
            )
        except TimeoutError as exc:
            raise AnswerTimeout(f"no answer within {self._timeout_s:.0f} s") from exc
        except RequestFailed as exc:
            raise AnswerUnavailable(str(exc)) from exc
        except KafkaError as exc:
            raise AnswerUnavailable(f"the bus is unavailable: {exc}") from exc
        if result.event.tenantid != tenant:
            # A reply under our query id for another tenant is never shown (ids are ours, so this is
            # someone replaying them on the bus); the asker gets an error, not that tenant's answer.
            log.warning("reply of another tenant ignored", query_id=result.answer.query_id)
            raise AnswerUnavailable("the reply to this question came for another tenant")
        return Answered(result.answer, result.trace_id)

    async def ingest(self, tenant: str, document: DocsSubmitted) -> IndexedDocument:
        d = document
        doc = Document(
            doc_id=d.doc_id, text=d.text, uri=d.uri, content=d.content, filename=d.filename, title=d.title,
            content_type=d.content_type,
            metadata=dict(d.metadata), groups=tuple(d.groups), chunking=d.chunking,
        )  # fmt: skip
        with _classified():
            (indexed,) = await self._client.ingest([doc], stall_timeout=self._timeout_s, tenant=tenant)
        return IndexedDocument(
            indexed.version, indexed.chunks, indexed.unchanged, indexed.removed, indexed.skipped,
            indexed.duplicate_of,
        )  # fmt: skip

    async def delete(self, tenant: str, doc_id: str) -> IndexedDocument:
        with _classified():
            deleted = await self._client.delete(doc_id, timeout=self._timeout_s, tenant=tenant)
        return IndexedDocument(deleted.version, removed=deleted.removed)

    async def feedback(self, tenant: str, query_id: str, rating: str, comment: str | None) -> bool:
        try:
            recorded = await self._client.feedback(
                query_id, rating, comment, timeout=self._timeout_s, tenant=tenant
            )
        except TimeoutError as exc:
            raise AnswerTimeout(str(exc)) from exc
        except RequestFailed as exc:
            raise AnswerUnavailable(str(exc)) from exc
        except KafkaError as exc:
            raise AnswerUnavailable(f"the bus is unavailable: {exc}") from exc
        return recorded.known

    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        await self._client.close()


class _Server(uvicorn.Server):
    """uvicorn inside a host that owns the signals (FastStream's run, the stack's runner)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """The ASGI app on uvicorn, bound to `settings.host:port` (port 0: a free one, then in `port`)."""

    def __init__(self, settings: GatewaySettings, web: ASGIApp) -> None:
        self.settings = settings
        self.web = web
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def start(self) -> None:
        # Bound here, not by uvicorn: a port in use is an OSError at startup (uvicorn would sys.exit).
        sock = socket.socket(socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: a response goes out as headers, then body, in two writes,
        # and with Nagle's algorithm the second waits for the client's delayed ACK (~40 ms each).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.settings.host, self.settings.port))
        sock.listen(2048)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.web, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=5
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="ragbus-gateway-http")
        while not self._server.started and not self._task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
        log.info("gateway listening", url=self.url)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


def create_app(settings: GatewaySettings | None = None, deps: GatewayDeps | None = None) -> RagbusApp:
    settings = settings or GatewaySettings()
    opener = partial(open_deps, settings)
    # What it publishes goes out through the client (BusAnswerer), not `service.bus`; declared here for
    # the AsyncAPI document and the trust file's grant (ragbus.common.trust.SERVICE_TOPICS).
    service: Service[GatewayDeps] = Service(
        SERVICE,
        settings,
        deps=deps,
        open_deps=opener,
        publishes=[QueriesSubmitted, FeedbackSubmitted, DocsSubmitted, DocsDeleted],
    )

    async def health() -> Mapping[str, str]:
        return await service.app.health()

    http = HttpServer(settings, create_web_app(settings, service.deps, health))
    service.app.after_startup(http.start)
    service.app.on_shutdown(http.stop)
    service.app.http = http  # type: ignore[attr-defined]  # the bound port, for tests and the CLI
    return service.app
