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


async def test_a_header_that_is_not_utf8_is_dead_lettered_not_dropped(harness: Harness) -> None:
    # Any Kafka client may send header bytes FastStream cannot decode; that happens before the
    # handler's scope, so the middleware must catch it on the way out.
    from aiokafka.structs import ConsumerRecord
    from faststream.kafka.subscriber.usecase import DefaultSubscriber

    body = doc("bad-header")
    async with TestKafkaBroker(harness.broker) as br:
        record = ConsumerRecord(
            topic=harness.t(DOCS_SUBMITTED),
            partition=0,
            offset=7,
            timestamp=0,
            timestamp_type=0,
            key=b"acme:bad-header",
            value=body,
            checksum=None,
            serialized_key_size=15,
            serialized_value_size=len(body),
            headers=[("content-type", CE_CONTENT_TYPE.encode()), ("x-broken", b"\xff\xfe")],
        )
        subscriber = next(
            s
            for s in harness.broker.subscribers
            if isinstance(s, DefaultSubscriber) and harness.t(DOCS_SUBMITTED) in s.topic_names
        )
        await subscriber.consume(record)
        await harness.send(br, doc("ok-after"))
    assert harness.done == ["ok-after"]
    assert len(harness.dead) == 1
    dead_body, headers = harness.dead[0]
    assert dead_body == body
    letter = DeadLetter.from_headers(headers)
    assert letter.error_type == "UnicodeDecodeError"
    assert letter.offset == 7
    assert "x-broken" not in headers  # the undecodable header is not carried over
