"""The shared retry / dead-letter middleware, through FastStream's in-memory TestKafkaBroker."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from faststream.kafka import KafkaMessage, TestKafkaBroker

from ragbus.common.broker import consumer_options, make_broker, raw_decoder
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.errors import DependencyUnavailable, PoisonMessage
from ragbus.common.events import DeadLetter, DocsDeleted, DocsSubmitted
from ragbus.common.middleware import backoff_delay
from ragbus.common.service import Service
from ragbus.common.settings import RetrySettings, ServiceSettings
from ragbus.common.testing import Harness, Received, component_settings, consume, consumer_record
from ragbus.common.topics import DOCS_DELETED, DOCS_SUBMITTED, Topics

HEADERS = {"content-type": CE_CONTENT_TYPE}


class Scripted:
    """A one-handler service (the real skeleton) whose behaviour each test scripts by doc_id."""

    def __init__(self, prefix: str) -> None:
        retry = RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.005, max_attempts_unknown=3)
        service: Service[object] = Service(
            "test", component_settings(ServiceSettings, prefix, retry=retry), deps=object()
        )
        self.calls: dict[str, int] = {}
        self.done: list[str] = []

        @service.subscriber(DOCS_SUBMITTED)
        async def handle(event: Envelope[DocsSubmitted]) -> None:
            doc = event.data.doc_id
            self.calls[doc] = self.calls.get(doc, 0) + 1
            if doc.startswith("poison"):
                raise PoisonMessage("this document can never be processed")
            if doc.startswith("flaky") and self.calls[doc] < 4:
                raise DependencyUnavailable("vector store is down")
            if doc.startswith("bug"):
                raise KeyError("a bug")
            if doc.startswith("broker-down") and self.calls[doc] < 6:
                # What publishing raises while the broker is away (aiokafka's errors are RuntimeErrors).
                raise (KafkaConnectionError if self.calls[doc] % 2 else KafkaTimeoutError)()
            self.done.append(doc)
            await service.bus.reply(event, DocsDeleted(doc_id=doc))

        self.harness = Harness(service.app, watch=[DOCS_DELETED])
        self.t = service.topics

    @property
    def dead(self) -> list[Received]:
        return self.harness.letters(DOCS_SUBMITTED)

    @property
    def outputs(self) -> list[Envelope[Any]]:
        return self.harness.events(DOCS_DELETED)

    async def send(self, body: bytes) -> None:
        await self.harness.send_raw(DOCS_SUBMITTED, body)


def doc(doc_id: str) -> bytes:
    return Envelope.new(DocsSubmitted(doc_id=doc_id, text="x"), source="test").to_bytes()


@pytest.fixture
def harness(topic_prefix: str) -> Scripted:
    return Scripted(topic_prefix)


async def test_good_message_is_handled_and_its_output_published(harness: Scripted) -> None:
    async with harness.harness:
        body = doc("ok-1")
        await harness.send(body)
    assert harness.done == ["ok-1"]
    assert [e.data.doc_id for e in harness.outputs] == ["ok-1"]
    assert harness.outputs[0].causationid == Envelope[DocsSubmitted].model_validate_json(body).id


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        (b"not json at all", "JSONDecodeError"),
        (b"\xff\xfe binary", "UnicodeDecodeError"),
        (b'{"specversion": "1.0"}', "ValidationError"),
        (doc("poison-1"), "PoisonMessage"),
        (b"[" * 100_000 + b"]" * 100_000, "TooDeep"),  # was a RecursionError
    ],
)
async def test_poison_goes_to_the_dlq_unchanged_with_its_reason_and_the_next_message_is_handled(
    harness: Scripted, body: bytes, error_type: str
) -> None:
    async with harness.harness:
        await harness.send(body)
        await harness.send(doc("ok-after"))
    assert harness.done == ["ok-after"]
    assert len(harness.dead) == 1
    assert harness.dead[0].value == body  # nothing lost
    letter = harness.dead[0].letter()
    assert letter.error_type == error_type
    assert letter.original_topic == harness.t(DOCS_SUBMITTED)
    assert letter.service == "test"
    assert letter.reason


async def test_retryable_failure_is_retried_in_place_until_it_succeeds(harness: Scripted) -> None:
    async with harness.harness:
        await harness.send(doc("flaky-1"))
    assert harness.calls["flaky-1"] == 4
    assert harness.done == ["flaky-1"]
    assert harness.dead == []


async def test_a_broker_that_cannot_be_reached_is_waited_for_not_dead_lettered(harness: Scripted) -> None:
    async with harness.harness:
        await harness.send(doc("broker-down-1"))
    assert harness.calls["broker-down-1"] == 6  # past max_attempts_unknown (3)
    assert harness.done == ["broker-down-1"]
    assert harness.dead == []


async def test_unclassified_error_is_retried_then_dead_lettered(harness: Scripted) -> None:
    async with harness.harness:
        await harness.send(doc("bug-1"))
        await harness.send(doc("ok-2"))
    assert harness.calls["bug-1"] == 3
    assert harness.done == ["ok-2"]
    letter = harness.dead[0].letter()
    assert (letter.error_type, letter.attempts) == ("KeyError", 3)


async def test_redelivery_produces_the_same_output_event(harness: Scripted) -> None:
    async with harness.harness:
        body = doc("ok-3")
        await harness.send(body)
        await harness.send(body)
    assert len(harness.outputs) == 2
    assert harness.outputs[0].id == harness.outputs[1].id


async def test_an_event_with_binary_headers_is_handled_with_them_escaped(topic_prefix: str) -> None:
    # Kafka headers are bytes; any producer may add binary ones. FastStream's own parser would fail
    # on them before any handler scope and the record would be committed with only a log line.
    settings = ServiceSettings().with_kafka(topic_prefix=topic_prefix)
    broker = make_broker("test", settings)
    t = Topics(topic_prefix)
    seen: list[dict[str, Any]] = []

    @broker.subscriber(t(DOCS_SUBMITTED), **consumer_options("test", settings.kafka))
    async def handle(event: Envelope[DocsSubmitted], msg: KafkaMessage) -> None:
        seen.append({"doc": event.data.doc_id, **msg.headers})

    body = doc("binary-header")
    headers = [("content-type", CE_CONTENT_TYPE.encode()), ("x-schema-id", b"\x00\xff\xfe"), ("x-null", None)]
    async with TestKafkaBroker(broker):
        await consume(broker, consumer_record(t(DOCS_SUBMITTED), body, offset=7, headers=headers))
    assert seen == [
        {
            "doc": "binary-header",
            "content-type": CE_CONTENT_TYPE,
            "x-schema-id": "\x00\\xff\\xfe",
            "x-null": "",
        }
    ]


async def test_a_record_that_fails_before_the_handler_is_dead_lettered_not_dropped(topic_prefix: str) -> None:
    settings = ServiceSettings().with_kafka(topic_prefix=topic_prefix)
    broker = make_broker("test", settings)
    t = Topics(topic_prefix)
    handled: list[str] = []
    dead: list[tuple[bytes, dict[str, Any]]] = []

    async def picky_parser(msg: Any, original_parser: Any) -> Any:
        if b"unparseable" in msg.value:
            raise ValueError("this record cannot be parsed")
        return await original_parser(msg)

    @broker.subscriber(t(DOCS_SUBMITTED), **consumer_options("test", settings.kafka), parser=picky_parser)
    async def handle(event: Envelope[DocsSubmitted]) -> None:
        handled.append(event.data.doc_id)

    @broker.subscriber(t.dlq(DOCS_SUBMITTED), group_id="dlq-reader", decoder=raw_decoder)
    async def dlq(msg: KafkaMessage) -> None:
        dead.append((msg.body, dict(msg.headers)))

    bad = doc("unparseable")
    async with TestKafkaBroker(broker) as br:
        await consume(broker, consumer_record(t(DOCS_SUBMITTED), bad, offset=7))
        await br.publish(doc("ok-after"), t(DOCS_SUBMITTED), headers=HEADERS)
    assert handled == ["ok-after"]
    assert [body for body, _ in dead] == [bad]
    letter = DeadLetter.from_headers(dead[0][1])
    assert (letter.error_type, letter.reason, letter.offset) == (
        "ValueError",
        "this record cannot be parsed",
        7,
    )
    assert dead[0][1]["content-type"] == CE_CONTENT_TYPE


def test_backoff_grows_to_its_cap_and_stays_there_for_as_long_as_an_outage_lasts() -> None:
    policy = RetrySettings(initial_backoff_s=0.2, max_backoff_s=30.0)
    early = [backoff_delay(n, policy) for n in (1, 2, 3)]
    assert 0.1 <= early[0] <= 0.2
    assert 0.2 <= early[1] <= 0.4
    assert 0.4 <= early[2] <= 0.8
    # Hours of outage are thousands of attempts; 2**n must not overflow into an error that would
    # end the retrying (and dead-letter the message) at attempt ~1,025.
    for attempt in (50, 1_025, 100_000):
        assert 15.0 <= backoff_delay(attempt, policy) <= 30.0


async def test_a_message_too_large_for_the_broker_is_dead_lettered_cut_to_fit_with_its_digest(
    harness: Scripted,
) -> None:
    # Issue 13: a 5 MB question's dead letter could not be published (1 MB producer limit), so it left
    # no trace at all.
    body = b'{"question": "' + b"why? " * 1_000_000 + b'"'  # 5 MB, and not an event
    async with harness.harness:
        await harness.send(body)
        await harness.send(doc("ok-after"))
    assert harness.done == ["ok-after"]
    [dead] = harness.dead
    letter = dead.letter()
    assert letter.original_size == len(body)
    assert letter.original_sha256 == hashlib.sha256(body).hexdigest()
    assert 1_040_000 < len(dead.value) <= 1_048_576 - 2048  # as much as fits the default request limit
    assert body.startswith(dead.value)
    assert letter.reason


async def test_a_message_that_fits_is_dead_lettered_whole_without_a_digest(harness: Scripted) -> None:
    async with harness.harness:
        await harness.send(b"not json")
    letter = harness.dead[0].letter()
    assert (harness.dead[0].value, letter.original_size, letter.original_sha256) == (b"not json", None, None)
