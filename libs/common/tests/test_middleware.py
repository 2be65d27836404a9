"""The shared retry / dead-letter middleware, through FastStream's in-memory TestKafkaBroker."""

from __future__ import annotations

from typing import Any

import pytest
from faststream.kafka import KafkaMessage, TestKafkaBroker

from ragbus.common.bus import Bus, consumer_options, make_broker, raw_decoder
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.errors import DependencyUnavailable, PoisonMessage
from ragbus.common.events import DeadLetter, DocsDeleted, DocsSubmitted
from ragbus.common.settings import RetrySettings, ServiceSettings
from ragbus.common.testing import consume, consumer_record
from ragbus.common.topics import DOCS_DELETED, DOCS_SUBMITTED, Topics

HEADERS = {"content-type": CE_CONTENT_TYPE}


class Harness:
    """A one-handler service whose behaviour each test scripts by doc_id."""

    def __init__(self, prefix: str) -> None:
        settings = ServiceSettings(
            retry=RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.005, max_attempts_unknown=3)
        )
        settings = settings.with_kafka(topic_prefix=prefix)
        self.t = Topics(prefix)
        self.broker = make_broker("test", settings)
        bus = Bus(self.broker, self.t, source="ragbus/test")
        self.calls: dict[str, int] = {}
        self.done: list[str] = []
        self.dead: list[tuple[bytes, dict[str, Any]]] = []
        self.outputs: list[Envelope[Any]] = []
        options = consumer_options("test", settings.kafka)

        @self.broker.subscriber(self.t(DOCS_SUBMITTED), **options)
        async def handle(event: Envelope[DocsSubmitted]) -> None:
            doc = event.data.doc_id
            self.calls[doc] = self.calls.get(doc, 0) + 1
            if doc.startswith("poison"):
                raise PoisonMessage("this document can never be processed")
            if doc.startswith("flaky") and self.calls[doc] < 4:
                raise DependencyUnavailable("vector store is down")
            if doc.startswith("bug"):
                raise KeyError("a bug")
            self.done.append(doc)
            await bus.reply(event, DocsDeleted(doc_id=doc))

        @self.broker.subscriber(self.t.dlq(DOCS_SUBMITTED), group_id="dlq-reader", decoder=raw_decoder)
        async def dlq(msg: KafkaMessage) -> None:
            self.dead.append((msg.body, dict(msg.headers)))

        @self.broker.subscriber(self.t(DOCS_DELETED), group_id="out-reader")
        async def out(event: Envelope[DocsDeleted]) -> None:
            self.outputs.append(event)

    async def send(self, br: Any, body: bytes) -> None:
        await br.publish(body, self.t(DOCS_SUBMITTED), headers=HEADERS)


def doc(doc_id: str) -> bytes:
    return Envelope.new(DocsSubmitted(doc_id=doc_id, text="x"), source="test").to_bytes()


@pytest.fixture
def harness(topic_prefix: str) -> Harness:
    return Harness(topic_prefix)


async def test_good_message_is_handled_and_its_output_published(harness: Harness) -> None:
    async with TestKafkaBroker(harness.broker) as br:
        body = doc("ok-1")
        await harness.send(br, body)
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
    ],
)
async def test_poison_goes_to_the_dlq_unchanged_with_its_reason_and_the_next_message_is_handled(
    harness: Harness, body: bytes, error_type: str
) -> None:
    async with TestKafkaBroker(harness.broker) as br:
        await harness.send(br, body)
        await harness.send(br, doc("ok-after"))
    assert harness.done == ["ok-after"]
    assert len(harness.dead) == 1
    dead_body, headers = harness.dead[0]
    assert dead_body == body  # nothing lost
    letter = DeadLetter.from_headers(headers)
    assert letter.error_type == error_type
    assert letter.original_topic == harness.t(DOCS_SUBMITTED)
    assert letter.service == "test"
    assert letter.reason


async def test_retryable_failure_is_retried_in_place_until_it_succeeds(harness: Harness) -> None:
    async with TestKafkaBroker(harness.broker) as br:
        await harness.send(br, doc("flaky-1"))
    assert harness.calls["flaky-1"] == 4
    assert harness.done == ["flaky-1"]
    assert harness.dead == []


async def test_unclassified_error_is_retried_then_dead_lettered(harness: Harness) -> None:
    async with TestKafkaBroker(harness.broker) as br:
        await harness.send(br, doc("bug-1"))
        await harness.send(br, doc("ok-2"))
    assert harness.calls["bug-1"] == 3
    assert harness.done == ["ok-2"]
    letter = DeadLetter.from_headers(harness.dead[0][1])
    assert (letter.error_type, letter.attempts) == ("KeyError", 3)


async def test_redelivery_produces_the_same_output_event(harness: Harness) -> None:
    async with TestKafkaBroker(harness.broker) as br:
        body = doc("ok-3")
        await harness.send(br, body)
        await harness.send(br, body)
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
