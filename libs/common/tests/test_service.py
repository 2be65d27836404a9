"""The service skeleton's one startup policy and client lifecycle, on the in-memory broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from ragbus.common.envelope import Envelope
from ragbus.common.errors import DependencyUnavailable
from ragbus.common.events import DocsDeleted, DocsSubmitted
from ragbus.common.service import Clients, OpenDeps, Service
from ragbus.common.settings import RetrySettings, ServiceSettings
from ragbus.common.testing import Harness, component_settings, eventually
from ragbus.common.topics import DOCS_DELETED, DOCS_SUBMITTED


@dataclass
class FakeClient:
    name: str
    log: list[str]
    up: bool = True
    fail_close: bool = False

    async def ping(self) -> None:
        if not self.up:
            raise DependencyUnavailable(f"{self.name} is down")

    async def aclose(self) -> None:
        self.log.append(f"closed {self.name}")
        if self.fail_close:
            raise RuntimeError(f"{self.name} would not close")


@dataclass
class Deps:
    store: FakeClient


@dataclass
class Opener:
    """open_deps for the tests: down for the first `down_for` calls, or failing with `error`."""

    log: list[str] = field(default_factory=list)
    down_for: int = 0
    error: Exception | None = None
    calls: int = 0

    async def __call__(self, clients: Clients) -> Deps:
        self.calls += 1
        model = clients.add("model", FakeClient("model", self.log))
        if self.error is not None:
            raise self.error
        if self.calls <= self.down_for:
            raise DependencyUnavailable("database refused the connection")
        store = clients.add("store", FakeClient("store", self.log))
        self.log.append(f"opened with {model.name}")
        return Deps(store=store)


def make_service(
    prefix: str, *, deps: Deps | None = None, opener: OpenDeps[Deps] | None = None
) -> Service[Deps]:
    retry = RetrySettings(initial_backoff_s=0.05, max_backoff_s=0.1)
    settings = component_settings(ServiceSettings, prefix, retry=retry)
    service = Service("test", settings, deps=deps, open_deps=opener, publishes=[DocsDeleted])

    @service.subscriber(DOCS_SUBMITTED)
    async def handle(event: Envelope[DocsSubmitted]) -> None:
        service.deps()  # DependencyUnavailable until open: the message waits
        await service.bus.reply(event, DocsDeleted(doc_id=event.data.doc_id))

    return service


async def test_a_dependency_down_at_startup_does_not_stop_the_service(topic_prefix: str) -> None:
    opener = Opener(down_for=3)
    service = make_service(topic_prefix, opener=opener)
    async with Harness(service.app) as bus:
        down = await service.app.health()
        delivery = asyncio.create_task(bus.send(DocsSubmitted(doc_id="d1", text="x")))
        await asyncio.sleep(0.05)
        assert not delivery.done()  # waits for the dependency, neither dropped nor dead-lettered
        await asyncio.wait_for(delivery, 5)
        up = await service.app.health()

    assert down == {"kafka": "ok", "dependencies": down["dependencies"]}
    assert "database refused the connection" in down["dependencies"]
    assert up == {"kafka": "ok", "model": "ok", "store": "ok"}
    assert opener.calls == 4  # retried in the background with backoff
    assert [e.data.doc_id for e in bus.events(DOCS_DELETED)] == ["d1"]
    assert bus.letters(DOCS_SUBMITTED) == []
    # Each failed attempt closed what it had opened; the last opening's clients closed at shutdown.
    assert opener.log == ["closed model"] * 3 + ["opened with model", "closed store", "closed model"]


async def test_a_misconfiguration_stops_the_service_at_startup(topic_prefix: str) -> None:
    opener = Opener(error=ValueError("the store holds 768-d vectors, the model makes 384-d"))
    service = make_service(topic_prefix, opener=opener)
    with pytest.raises(ValueError, match="768-d"):
        async with Harness(service.app):
            pass
    assert opener.log == ["closed model"]  # what it had opened is closed again


async def test_health_reports_each_client_by_name(topic_prefix: str) -> None:
    opener = Opener()
    service = make_service(topic_prefix, opener=opener)
    async with Harness(service.app):
        service.deps().store.up = False
        health = await service.app.health()
    assert health["model"] == "ok"
    assert health["store"].startswith("error")
    assert "store is down" in health["store"]


async def test_a_client_that_fails_to_close_does_not_keep_the_others_open(topic_prefix: str) -> None:
    log: list[str] = []

    async def opener(clients: Clients) -> Deps:
        clients.add("first", FakeClient("first", log))
        return Deps(store=clients.add("second", FakeClient("second", log, fail_close=True)))

    service = make_service(topic_prefix, opener=opener)
    async with Harness(service.app):
        pass
    assert log == ["closed second", "closed first"]


async def test_dependencies_handed_in_are_used_and_left_open(topic_prefix: str) -> None:
    log: list[str] = []
    given = Deps(store=FakeClient("store", log))
    service = make_service(topic_prefix, deps=given)
    async with Harness(service.app) as bus:
        await bus.send(DocsSubmitted(doc_id="d1", text="x"))
    assert service.deps() is given
    assert [e.data.doc_id for e in bus.events(DOCS_DELETED)] == ["d1"]
    assert log == []  # the caller owns them


def test_a_service_needs_its_deps_or_a_way_to_open_them(topic_prefix: str) -> None:
    with pytest.raises(TypeError, match="open_deps"):
        make_service(topic_prefix)


def test_a_concurrent_subscription_works_on_the_services_workers_at_once_through_one_consumer() -> None:
    """Issue 13: a question waiting for a model held up every question behind it on one consumer; and
    one consumer per worker polled the broker that many times over (ragbus.common.keyed)."""
    from faststream.kafka.subscriber.usecase import DefaultSubscriber

    from ragbus.common.keyed import KeyedSubscriber

    settings = component_settings(ServiceSettings, "cs.").model_copy(update={"workers": 3})
    service: Service[object] = Service("test", settings, deps=object())

    @service.subscriber(DOCS_SUBMITTED, concurrent=True)
    async def slow(event: Envelope[DocsSubmitted]) -> None: ...

    @service.subscriber(DOCS_DELETED)
    async def other(event: Envelope[DocsDeleted]) -> None: ...

    by_topic = {s.topic_names[0]: s for s in service.broker.subscribers}  # type: ignore[attr-defined]
    concurrent, plain = by_topic[service.topics(DOCS_SUBMITTED)], by_topic[service.topics(DOCS_DELETED)]
    assert isinstance(concurrent, KeyedSubscriber)
    assert concurrent.limit == 3
    assert type(plain) is DefaultSubscriber  # only what asks for it
    with pytest.raises(ValueError, match="one topic"):
        service.subscriber(DOCS_SUBMITTED, DOCS_DELETED, concurrent=True)


def test_a_bulk_subscription_polls_at_the_document_pace_and_others_at_the_request_pace() -> None:
    """Tansu answers an idle fetch only when its wait ends: every idle consumer polls once per wait, so
    the document topics' consumers wait longer (`KAFKA_BULK_FETCH_MAX_WAIT_MS`) than a request's hop."""
    settings = component_settings(ServiceSettings, "bk.")
    service: Service[object] = Service("test", settings, deps=object())

    @service.subscriber(DOCS_SUBMITTED, bulk=True)
    async def documents(event: Envelope[DocsSubmitted]) -> None: ...

    @service.subscriber(DOCS_DELETED)
    async def other(event: Envelope[DocsDeleted]) -> None: ...

    waits = {
        s.topic_names[0]: s._connection_args["fetch_max_wait_ms"]  # type: ignore[attr-defined]
        for s in service.broker.subscribers
    }
    assert waits == {
        service.topics(DOCS_SUBMITTED): settings.kafka.bulk_fetch_max_wait_ms,
        service.topics(DOCS_DELETED): settings.kafka.fetch_max_wait_ms,
    }
    assert settings.kafka.bulk_fetch_max_wait_ms > settings.kafka.fetch_max_wait_ms


async def test_a_scheduled_job_runs_only_while_the_deps_are_open_and_outlives_a_failed_run(
    topic_prefix: str,
) -> None:
    opener = Opener(down_for=4)  # open after a few retries (0.05-0.1 s each)
    service = make_service(topic_prefix, opener=opener)
    runs: list[int] = []

    async def job() -> None:
        runs.append(opener.calls)  # the deps were open: opener.calls is past its failures
        service.deps()
        if len(runs) == 2:
            raise RuntimeError("the second run fails")

    service.every(0.02, job, name="tick")
    async with Harness(service.app):
        await eventually(lambda: len(runs) >= 4)
    stopped = len(runs)
    await asyncio.sleep(0.1)

    assert all(calls == 5 for calls in runs)  # not one run while the dependencies were down
    assert len(runs) == stopped  # none after shutdown
