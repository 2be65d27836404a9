"""Personal data stored redacted for the tenants whose policy says so (MONITOR_REDACT_PII): the rule on a
record, the shields adapter, and the monitor end to end over FastStream's in-memory broker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from faststream.kafka import TestKafkaBroker

from ragbus.common.topics import Topics
from ragbus.monitor.adapters.memory import InMemoryEventStore
from ragbus.monitor.adapters.pii import ShieldsPersonalData
from ragbus.monitor.app import create_app
from ragbus.monitor.domain import redact_record
from ragbus.monitor.ports import EventRecord
from ragbus.monitor.settings import MonitorSettings
from ragbus.monitor.usecases import MonitorDeps

from .conftest import HEADERS

QUESTION = "I am Jane Roe, jane.roe@example.com, +44 20 7946 0958: is my card 4111 1111 1111 1111 safe?"


def test_free_text_is_redacted_at_any_depth_and_ids_are_not(
    record_of: Callable[..., EventRecord], request_of: Callable[..., Any]
) -> None:
    req = request_of(question=QUESTION, answer="Write to jane.roe@example.com [1].")
    record = record_of(req.completed)
    data = {
        **record.data,
        "question": QUESTION,
        "citations": [{"n": 1, "doc_id": "jane.roe@example.com", "quote": "call +44 20 7946 0958"}],
    }
    record = dataclasses.replace(record, data=data)
    out = redact_record(record, ShieldsPersonalData().redact)
    assert "jane.roe@example.com" not in out.data["question"]
    assert "[REDACTED:EMAIL]" in out.data["question"]
    assert "4111" not in out.data["question"]
    assert out.data["answer"] == "Write to [REDACTED:EMAIL] [1]."
    assert out.data["citations"][0]["quote"] == "call [REDACTED:PHONE]"
    assert out.data["citations"][0]["doc_id"] == "jane.roe@example.com"  # an id, not free text
    assert out.data["query_id"] == record.data["query_id"]
    assert record.data["question"] == QUESTION  # the input is left alone


def test_text_without_personal_data_is_kept_as_it_is() -> None:
    text = "Does vitamin D lower the risk of fractures in older adults?"
    assert ShieldsPersonalData().redact(text) == text


async def test_only_the_tenants_that_ask_are_stored_redacted(
    settings: MonitorSettings, request_of: Callable[..., Any]
) -> None:
    store = InMemoryEventStore()
    app = create_app(settings, MonitorDeps(store, ShieldsPersonalData(), frozenset({"acme"})))
    t = Topics(settings.kafka.topic_prefix)
    acme, beta = request_of(tenant="acme", question=QUESTION), request_of(tenant="beta", question=QUESTION)
    async with TestKafkaBroker(app.kafka_broker) as br:
        for event in (acme.submitted, beta.submitted):
            await br.publish(event.to_bytes(), t(type(event.data).topic), key=event.key, headers=HEADERS)
    [stored_acme] = await store.events("acme", acme.submitted.correlationid)
    [stored_beta] = await store.events("beta", beta.submitted.correlationid)
    assert "jane.roe@example.com" not in stored_acme.data["question"]
    assert stored_acme.data["question"].count("[REDACTED:") >= 3
    assert stored_beta.data["question"] == QUESTION
    # The digest is the event's as published: a redelivery is still told from a reused id.
    assert stored_acme.digest == acme.submitted.digest
