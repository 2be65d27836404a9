"""Unit tests of the pure rules: what becomes an `events` row, a `dead_letters` row, or poison."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ragbus.common.envelope import Envelope
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import DeadLetter, DocsSubmitted, FeedbackSubmitted, QueriesSubmitted
from ragbus.common.topics import Topics
from ragbus.monitor.domain import RawMessage, dead_letter_record, event_record, trace_id_of

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def question(text: str = "What is RAG?", tenant: str = "acme") -> Envelope[QueriesSubmitted]:
    return Envelope.new(
        QueriesSubmitted(query_id="q-1", question=text), source="ragbus/client", tenant=tenant
    )


def on_topic(body: bytes, topic: str = "queries.submitted.v1", **kw: Any) -> RawMessage:
    return RawMessage(topic=topic, partition=2, offset=41, value=body, **kw)


def test_an_event_becomes_a_row_with_its_attributes_and_kafka_position() -> None:
    event = question()
    ts = int(datetime(2026, 5, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
    msg = on_topic(
        event.to_bytes(),
        "prod.queries.submitted.v1",
        key=event.key,
        headers={"traceparent": TRACEPARENT},
        timestamp_ms=ts,
    )

    row = event_record(msg, Topics("prod."))

    assert row.event_id == event.id
    assert (row.topic, row.type, row.source) == ("prod.queries.submitted.v1", event.type, "ragbus/client")
    assert (row.tenant, row.correlation_id, row.subject, row.causation_id) == ("acme", "q-1", "q-1", None)
    assert row.event_time == event.time
    assert (row.kafka_partition, row.kafka_offset, row.kafka_key) == (2, 41, "acme:q-1")
    assert row.kafka_timestamp == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert row.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert row.data["question"] == "What is RAG?"


def test_fields_this_version_does_not_know_are_kept() -> None:
    body = json.loads(question().to_bytes())
    body["data"]["language"] = "en"  # added by a newer producer
    row = event_record(on_topic(json.dumps(body).encode()), Topics())
    assert row.data["language"] == "en"


def test_a_follow_up_event_carries_its_cause() -> None:
    first = question()
    feedback = first.follow(FeedbackSubmitted(query_id="q-1", rating="down"), source="ragbus/client")
    row = event_record(on_topic(feedback.to_bytes(), "feedback.submitted.v1"), Topics())
    assert (row.causation_id, row.correlation_id) == (first.id, "q-1")


def _with(**changes: Any) -> bytes:
    body = json.loads(question().to_bytes())
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "topic", "why"),
    [
        (b"\xff\xfe not json at all", "queries.submitted.v1", "not a valid ragbus event"),
        (b'["a", "list"]', "queries.submitted.v1", "not a valid ragbus event"),
        (_with(type="io.ragbus.queries.unknown.v1"), "queries.submitted.v1", "unknown event type"),
        (_with(data__question=None), "queries.submitted.v1", "question"),
        (_with(id="not-a-uuid"), "queries.submitted.v1", "id"),
        (question().to_bytes(), "answers.completed.v1", "does not belong on topic"),
        (question("What is \x00RAG?").to_bytes(), "queries.submitted.v1", r"U\+0000"),
        (b"[" * 100_000 + b"]" * 100_000, "queries.submitted.v1", "nested 100000 levels deep"),
    ],
    ids=["bytes", "not-an-object", "unknown-type", "invalid-data", "bad-id", "wrong-topic", "nul", "deep"],
)
def test_what_is_not_a_valid_event_of_its_topic_is_poison(body: bytes, topic: str, why: str) -> None:
    with pytest.raises(PoisonMessage, match=why):
        event_record(on_topic(body, topic), Topics())


def dlq_headers(**changes: Any) -> dict[str, str]:
    letter = DeadLetter(
        original_topic="docs.submitted.v1",
        partition=1,
        offset=7,
        service="ingest",
        error_type="JSONDecodeError",
        reason="Expecting value: line 1 column 1 (char 0)",
        attempts=1,
        failed_at=datetime(2026, 5, 1, 9, 30, tzinfo=UTC),
    )
    return {"traceparent": TRACEPARENT, **letter.model_copy(update=changes).to_headers()}


def letter_msg(body: bytes = b"\x89PNG\r\n\x1a\n garbage", **kw: Any) -> RawMessage:
    kw.setdefault("headers", dlq_headers())
    return RawMessage(
        topic="docs.submitted.v1.dlq", partition=0, offset=3, value=body, key=b"acme:doc-1", **kw
    )


def test_a_dead_letter_nested_too_deep_to_parse_is_kept_whole() -> None:
    body = b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    row = dead_letter_record(letter_msg(body))
    assert row.body == body
    assert row.event_id is None  # not read as an event, and no RecursionError


def test_a_dead_letter_keeps_its_bytes_and_why_it_failed() -> None:
    row = dead_letter_record(letter_msg())

    assert row.body == b"\x89PNG\r\n\x1a\n garbage"
    assert (row.dlq_topic, row.original_topic) == ("docs.submitted.v1.dlq", "docs.submitted.v1")
    assert (row.original_partition, row.original_offset) == (1, 7)
    assert (row.service, row.error_type, row.attempts) == ("ingest", "JSONDecodeError", 1)
    assert row.reason == "Expecting value: line 1 column 1 (char 0)"
    assert row.failed_at == datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    assert (row.event_id, row.tenant) == (None, None)  # the body is not an event
    assert row.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert row.headers["x-ragbus-dlq-service"] == "ingest"
    assert row.kafka_key == "acme:doc-1"


def test_a_dead_letter_that_is_an_event_names_it() -> None:
    event = Envelope.new(DocsSubmitted(doc_id="doc-1", text="x"), source="ragbus/cli", tenant="acme")
    row = dead_letter_record(letter_msg(event.to_bytes()))
    assert (row.event_id, row.tenant, row.correlation_id) == (event.id, "acme", "doc-1")


def test_dead_letter_ids_tell_redeliveries_from_new_failures() -> None:
    once = dead_letter_record(letter_msg())
    # The same dead letter read again, even at another position of the .dlq topic, is the same row.
    again = dead_letter_record(
        RawMessage(
            topic="docs.submitted.v1.dlq",
            partition=0,
            offset=99,
            value=letter_msg().value,
            headers=dlq_headers(),
        )
    )
    assert again.id == once.id
    # Another service failing on the same message is another fact.
    assert dead_letter_record(letter_msg(headers=dlq_headers(service="embed"))).id != once.id
    # Other bytes at the same offset: the broker lost its log and started again at 0.
    assert dead_letter_record(letter_msg(b"other bytes")).id != once.id


def test_a_hand_made_dead_letter_is_kept_with_what_can_be_read() -> None:
    no_headers = dead_letter_record(
        RawMessage(topic="queries.submitted.v1.dlq", partition=0, offset=5, value=b"oops")
    )
    assert no_headers.original_topic == "queries.submitted.v1"
    assert "no reason given" in no_headers.reason
    assert (no_headers.service, no_headers.original_offset, no_headers.failed_at) == (None, None, None)

    partial = dead_letter_record(
        letter_msg(headers={"x-ragbus-dlq-reason": "replayed by hand", "x-ragbus-dlq-attempts": "many"})
    )
    assert (partial.reason, partial.attempts) == ("replayed by hand", None)


def test_dead_letter_text_with_nul_is_made_storable_and_the_body_left_alone() -> None:
    row = dead_letter_record(letter_msg(b"a\x00b", headers=dlq_headers(reason="bad \x00 byte")))
    assert row.reason == "bad \ufffd byte"
    assert row.body == b"a\x00b"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": TRACEPARENT}, "4bf92f3577b34da6a3ce929d0e0e4736"),
        ({"traceparent": TRACEPARENT.upper()}, "4bf92f3577b34da6a3ce929d0e0e4736"),
        ({}, None),
        ({"traceparent": "garbage"}, None),
        ({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, None),
    ],
)
def test_trace_id_comes_from_the_w3c_header(headers: dict[str, str], expected: str | None) -> None:
    assert trace_id_of(headers) == expected


def test_no_key_is_stored_as_none() -> None:
    msg = RawMessage(
        topic="queries.submitted.v1", partition=0, offset=0, value=question().to_bytes(), key=b""
    )
    assert event_record(msg, Topics()).kafka_key is None
