"""The one service skeleton: every ragbus service is a `Service`, its dependencies, and a few handlers.

    def create_app(settings: EmbedSettings | None = None, deps: EmbedDeps | None = None) -> RagbusApp:
        settings = settings or EmbedSettings()
        service = Service(SERVICE, settings, deps=deps, open_deps=partial(open_deps, settings),
                          publishes=[DocsIndexed])

        @service.subscriber(topics.DOCS_CHUNKED)
        async def on_chunked(event: Envelope[DocsChunked]) -> None:
            result = await usecases.index_part(service.deps(), event)
            await service.bus.reply(event, result, seq=event.data.part)

        return service.app

What it does for every service alike:
- the broker (tracing, the retry / dead-letter middleware), the topic names under the prefix, the `Bus`
  that publishes the declared events (and lists them in the AsyncAPI document), the consumer defaults;
- the dependencies' lifecycle, svcs-style: `open_deps(clients)` builds the clients and registers each
  one (`clients.add(name, client)`) with its `ping()` (the health check) and `aclose()`. One startup
  policy: a dependency that is down (`DependencyUnavailable`, a connection error or a timeout) does
  not stop the service. It starts, `/healthz` reports the dependency, handlers get
  `DependencyUnavailable` (so their messages wait with backoff in the middleware), and the opening is
  retried with backoff in the background until it succeeds. Any other error while opening is a
  misconfiguration and stops the service at startup.
- deps handed in by the caller (tests, a runner sharing clients) are used as they are and never closed.
- scheduled maintenance jobs (`every`), run while the dependencies are open and stopped at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from faststream.kafka import KafkaBroker

from ragbus.common.app import HealthCheck, RagbusApp
from ragbus.common.broker import consumer_options, make_broker
from ragbus.common.bus import Bus
from ragbus.common.errors import RETRYABLE, DependencyUnavailable
from ragbus.common.events import EventData
from ragbus.common.keyed import OrderKey, keyed, record_key
from ragbus.common.logging import get_logger, setup_logging
from ragbus.common.middleware import backoff_delay, dead_letter
from ragbus.common.settings import ServiceSettings
from ragbus.common.topics import Topics
from ragbus.common.trust import Trust

log = get_logger("ragbus.service")

D = TypeVar("D")
C = TypeVar("C", bound="Client")
H = TypeVar("H", bound=Callable[..., Awaitable[None]])


class Client(Protocol):
    """What a service's client offers the skeleton: a health check and a close."""

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


class Closeable(Protocol):
    async def aclose(self) -> None: ...


class Clients:
    """The clients one opening of a service's dependencies made, in the order they were added."""

    def __init__(self) -> None:
        self._checks: dict[str, HealthCheck] = {}
        self._closers: list[Closeable] = []

    def add(self, name: str, client: C) -> C:
        """Register a client: `name` in /healthz (its `ping()`), closed when the service stops."""
        self._checks[name] = client.ping
        self._closers.append(client)
        return client

    def add_closer(self, closeable: Closeable) -> None:
        """Register something to close that has no health check of its own."""
        self._closers.append(closeable)

    @property
    def checks(self) -> Mapping[str, HealthCheck]:
        return dict(self._checks)

    async def aclose(self) -> None:
        """Close every client, newest first; one that fails to close does not keep the others open."""
        while self._closers:
            closeable = self._closers.pop()
            try:
                await closeable.aclose()
            except Exception:
                log.exception("a client failed to close", client=repr(closeable))


OpenDeps = Callable[[Clients], Awaitable[D]]


class _Lifecycle(Generic[D]):
    """Opens the dependencies at startup (retrying in the background while they are down), closes them
    at shutdown, and tells handlers and /healthz where they stand."""

    def __init__(
        self, service: str, settings: ServiceSettings, deps: D | None, open_deps: OpenDeps[D] | None
    ) -> None:
        if deps is None and open_deps is None:
            raise TypeError("a service needs its deps or an open_deps function")
        self.service = service
        self.retry = settings.retry
        self.owned = deps is None
        self.opener = open_deps if deps is None else None
        self.value = deps
        self.clients = Clients()
        self.waiting_for: str | None = None  # why the dependencies are not open yet
        self.task: asyncio.Task[None] | None = None

    def get(self) -> D:
        if self.value is None:
            reason = self.waiting_for or "starting"
            raise DependencyUnavailable(f"the {self.service} service's dependencies are not open: {reason}")
        return self.value

    def checks(self) -> Mapping[str, HealthCheck]:
        # Open (or closed at shutdown, when their pings report the closed clients): the clients' own.
        if self.value is not None or self.clients.checks:
            return self.clients.checks
        reason = self.waiting_for or "starting"

        async def not_open() -> None:
            raise DependencyUnavailable(reason)

        return {"dependencies": not_open}

    async def _open_once(self) -> None:
        assert self.opener is not None
        clients = Clients()
        try:
            value = await self.opener(clients)
        except BaseException:
            await clients.aclose()
            raise
        self.clients, self.value, self.waiting_for = clients, value, None

    async def start(self) -> None:
        if self.opener is None or self.value is not None:
            return
        try:
            await self._open_once()
        except RETRYABLE as exc:
            self.waiting_for = f"{type(exc).__name__}: {exc}"
            log.warning(
                "a dependency is down: starting anyway, messages wait until it is back",
                service=self.service,
                error=self.waiting_for,
            )
            self.task = asyncio.create_task(self._keep_opening(), name=f"ragbus-{self.service}-open")

    async def _keep_opening(self) -> None:
        attempt = 1
        while self.value is None:
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, self.retry))
            try:
                await self._open_once()
            except RETRYABLE as exc:
                self.waiting_for = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                # Startup would have stopped on this; now the service runs on and reports it.
                self.waiting_for = f"{type(exc).__name__}: {exc} (not retried: fix and restart)"
                log.exception("cannot open the dependencies", service=self.service)
                return
        log.info("dependencies open", service=self.service, attempts=attempt)

    async def stop(self) -> None:
        await _cancel(self.task)
        self.task = None
        if self.owned:
            self.value = None
            await self.clients.aclose()


class _Every:
    """A job run every `seconds` while the service runs: the first run one interval after startup, none
    while the dependencies are not open, never two at once. A run that fails is logged; the next comes
    on time."""

    def __init__(
        self,
        service: str,
        name: str,
        seconds: float,
        job: Callable[[], Awaitable[object]],
        ready: Callable[[], bool],
    ) -> None:
        self.service, self.name, self.seconds, self.job, self.ready = service, name, seconds, job, ready
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name=f"ragbus-{self.service}-{self.name}")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            if not self.ready():
                continue
            try:
                await self.job()
            except Exception as exc:
                log.exception("a scheduled job failed", service=self.service, job=self.name, error=str(exc))

    async def stop(self) -> None:
        await _cancel(self.task)
        self.task = None


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task, if any, and wait for it to end."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Service(Generic[D]):
    """One ragbus service: broker, bus, consumer defaults and dependency lifecycle, for its handlers.

    `deps`, when given, are the dependencies themselves (the caller owns them); otherwise
    `open_deps(clients)` builds them at startup and the service closes them at shutdown.
    """

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        deps: D | None = None,
        open_deps: OpenDeps[D] | None = None,
        publishes: Iterable[type[EventData]] = (),
    ) -> None:
        setup_logging(settings.log)
        self.name = name
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.trust = Trust.open(settings.trust, name, settings.kafka.topic_prefix)
        self.broker: KafkaBroker = make_broker(name, settings, self.trust)
        self.bus = Bus(self.broker, self.topics, source=f"ragbus/{name}").declare(*publishes)
        self._lifecycle = _Lifecycle(name, settings, deps, open_deps)
        self.app = RagbusApp(self.broker, service=name, topics=self.topics, checks=self._lifecycle.checks)
        self.app.on_startup(self._lifecycle.start)
        self.app.after_shutdown(self._lifecycle.stop)

    def deps(self) -> D:
        """The open dependencies; DependencyUnavailable (retried by the middleware) until they are."""
        return self._lifecycle.get()

    def subscriber(
        self,
        *topics: str,
        concurrent: bool = False,
        bulk: bool = False,
        order_by: OrderKey = record_key,
        **options: Any,
    ) -> Callable[[H], H]:
        """Subscribe a handler to these topics (names without the prefix) with the ragbus consumer
        defaults; `options` add to or override them (`batch=True`, a `decoder`, a longer fetch wait).

        `concurrent`: the handler waits on I/O for long (a model call), so the subscription (one topic)
        works on up to the service's `workers` messages at once, in order per `order_by` (the Kafka
        key by default; `keyed.subject_key` per document), with one consumer (ragbus.common.keyed).
        `bulk`: throughput matters more than each message's latency (documents): fetches wait
        `bulk_fetch_max_wait_ms`, so an idle consumer polls less.
        """
        defaults: dict[str, Any] = dict(consumer_options(self.name, self.settings.kafka))
        if bulk:
            defaults["fetch_max_wait_ms"] = self.settings.kafka.bulk_fetch_max_wait_ms
        concurrent = concurrent and self.settings.workers > 1
        if concurrent and (len(topics) != 1 or options.get("batch")):
            raise ValueError("a concurrent subscription reads one topic, one message at a time")
        subscriber = self.broker.subscriber(*(self.topics(t) for t in topics), **(defaults | options))
        if concurrent:
            # Commits after the work, per partition below the first message not done (at-least-once,
            # as AckPolicy.ACK); a rebalance waits up to half a session for the messages in work.
            keyed(
                subscriber,
                limit=self.settings.workers,
                share=self.settings.partition_workers,
                key=order_by,
                revoke_wait_s=self.settings.kafka.session_timeout_ms / 2000,
                commit_interval_s=self.settings.kafka.commit_interval_ms / 1000,
            )

        def register(handler: H) -> H:
            subscriber(handler)
            return handler

        return register

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], *, name: str) -> None:
        """Run `job` every `seconds` while the service runs (a maintenance job, such as the monitor's
        retention purge); not while its dependencies are down. Each replica runs its own: a job that
        must not run twice at once takes a lock where its data is."""
        every = _Every(self.name, name, seconds, job, lambda: self._lifecycle.value is not None)
        self.app.after_startup(every.start)
        self.app.on_shutdown(every.stop)

    async def dead_letter(self, record: Any, exc: BaseException) -> None:
        """Dead-letter one record of a batch (the middleware does it for a single message's handler)."""
        await dead_letter(
            self.broker, record, exc, service=self.name, max_bytes=self.settings.kafka.max_request_size
        )
