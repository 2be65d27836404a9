"""Issue 13's catalogue of bad input: every kind is dead-lettered with a reason, or answered with a
clear refusal, and the service goes on with the next message. Nothing is silently dropped or crashes.

The guard reads `queries.submitted` and ingest reads `docs.submitted`, the two doors of the stack. Each
kind is sent as raw bytes, the way any Kafka client could, followed by a valid event that must still be
processed. Kinds that break the bus's trust run against a guard that enforces it. The same middleware
and decoder run in every service, so these kinds hold for the other topics too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import DocsSubmitted, QueriesSubmitted
from ragbus.common.ids import uuid7
from ragbus.common.testing import Harness, component_settings, consume, consumer_record
from ragbus.common.topics import (
    DOCS_CHUNKED,
    DOCS_SUBMITTED,
    QUERIES_ACCEPTED,
    QUERIES_REJECTED,
    QUERIES_SUBMITTED,
)
from ragbus.common.trust import SUBMISSIONS, Signer, TrustSettings, add_principal, init

Body = bytes
Edit = Callable[[dict[str, Any]], object]


def valid_question(text: str = "What does the monitor store?") -> dict[str, Any]:
    event = Envelope.new(QueriesSubmitted(query_id=str(uuid7()), question=text), source="t", tenant="acme")
    body: dict[str, Any] = json.loads(event.to_bytes())
    return body


def valid_document() -> dict[str, Any]:
    event = Envelope.new(DocsSubmitted(doc_id="doc-1", text="Plain text."), source="t", tenant="acme")
    body: dict[str, Any] = json.loads(event.to_bytes())
    return body


def edited(base: dict[str, Any], edit: Edit) -> bytes:
    body = copy.deepcopy(base)
    edit(body)
    return json.dumps(body).encode()


def without(*path: str) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        target = body
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return edit


def setting(value: Any, *path: str) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        target = body
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value

    return edit


# Kinds that any topic's consumer refuses: what the bytes are, before any field means anything.
RAW: dict[str, Body] = {
    "empty body": b"",
    "whitespace": b"  \n\t ",
    "JSON null": b"null",
    "JSON true": b"true",
    "a number": b"42",
    "a string": b'"What does the monitor store?"',
    "an empty list": b"[]",
    "a list of an event": b"[" + json.dumps(valid_question()).encode() + b"]",
    "an empty object": b"{}",
    "truncated JSON": json.dumps(valid_question()).encode()[:-7],
    "trailing garbage": json.dumps(valid_question()).encode() + b"}}garbage",
    "invalid UTF-8": b'{"question": "\xff\xfe\xfd"}',
    "UTF-16": json.dumps(valid_question()).encode("utf-16"),
    "NUL bytes": b"\x00" * 64,
    "single quotes": str(valid_question()).encode(),
    "JSON with a comment": b'// hi\n{"specversion": "1.0"}',
    "NaN literal": b'{"specversion": NaN}',
    "nested 100 deep": b"[" * 100 + b"]" * 100,
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "objects nested 70 deep": b'{"a":' * 70 + b"1" + b"}" * 70,
    "binary noise": bytes(range(256)) * 4,
    "HTML": b"<html><body>What does the monitor store?</body></html>",
    "XML": b"<?xml version='1.0'?><event/>",
    "CSV": b"question,tenant\nWhat does the monitor store?,acme\n",
    "a plain question": b"What does the monitor store?",
    "form encoding": b"question=What+does+the+monitor+store%3F",
}

# The CloudEvents envelope broken, on a question.
ENVELOPE: dict[str, Edit] = {
    # (A missing specversion is read as "1.0", the default of the envelope model: not a bad kind.)
    "specversion 0.3": setting("0.3", "specversion"),
    "no id": without("id"),
    "id not a UUID": setting("not-a-uuid", "id"),
    "id a number": setting(42, "id"),
    "no source": without("source"),
    "empty source": setting("", "source"),
    "no type": without("type"),
    "unknown type": setting("io.ragbus.queries.invented.v1", "type"),
    "type of another topic": setting("io.ragbus.docs.submitted.v1", "type"),
    "type of a later version": setting("io.ragbus.queries.submitted.v2", "type"),
    "no time": without("time"),
    "time not a date": setting("yesterday", "time"),
    "time without a timezone": setting("2026-12-05T10:00:00", "time"),
    "time a number": setting([2026, 12, 5], "time"),
    "tenant with a colon": setting("acme:beta", "tenantid"),
    "tenant with a slash": setting("../beta", "tenantid"),
    "tenant empty": setting("", "tenantid"),
    "tenant 65 characters": setting("a" * 65, "tenantid"),
    "tenant a number": setting(7, "tenantid"),
    "no correlationid": without("correlationid"),
    "empty correlationid": setting("", "correlationid"),
    "causationid not a UUID": setting("cause", "causationid"),
    "datacontenttype text/plain": setting("text/plain", "datacontenttype"),
    "no data": without("data"),
    "data null": setting(None, "data"),
    "data a list": setting([], "data"),
    "data a string": setting("What does the monitor store?", "data"),
}

# The question's own fields broken.
QUESTION: dict[str, Edit] = {
    "no query_id": without("data", "query_id"),
    "empty query_id": setting("", "data", "query_id"),
    "query_id a list": setting(["q"], "data", "query_id"),
    "no question": without("data", "question"),
    "question a number": setting(42, "data", "question"),
    "question a list": setting(["What?"], "data", "question"),
    "question over 100,000 characters": setting("why " * 25_001, "data", "question"),
    "options a string": setting("fast", "data", "options"),
    "top_k zero": setting(0, "data", "options", "top_k"),
    "top_k negative": setting(-3, "data", "options", "top_k"),
    "top_k a word": setting("five", "data", "options", "top_k"),
    "top_k huge": setting(10**12, "data", "options", "top_k"),
    "min_tier negative": setting(-1, "data", "options", "min_tier"),
    "max_tier negative": setting(-1, "data", "options", "max_tier"),
    "max_tier a float": setting(1.5, "data", "options", "max_tier"),
    "max_cost_usd negative": setting(-0.01, "data", "options", "max_cost_usd"),
    "max_latency_ms negative": setting(-5, "data", "options", "max_latency_ms"),
    "doc_ids a string": setting("doc-1", "data", "options", "doc_ids"),
    "where a list": setting([], "data", "options", "where"),
    "where.after not a date": setting({"after": "soon"}, "data", "options", "where"),
    "where.date_field empty": setting({"date_field": ""}, "data", "options", "where"),
    "where.metadata values nested": setting({"metadata": {"a": [[1]]}}, "data", "options", "where"),
    "conversation_id a number": setting(7, "data", "conversation_id"),
    "user_id a dict": setting({"id": 1}, "data", "user_id"),
    "stream a string": setting("yes please", "data", "options", "stream"),
}

# A document's own fields broken (ingest reads them).
DOCUMENT: dict[str, Edit] = {
    "no doc_id": without("data", "doc_id"),
    "empty doc_id": setting("", "data", "doc_id"),
    "doc_id a number": setting(3, "data", "doc_id"),
    "neither text nor uri": without("data", "text"),
    "both text and uri": setting("file:///etc/hostname", "data", "uri"),
    "uri outside the allowed roots": lambda b: (b["data"].pop("text"), b["data"].update(uri="/etc/hostname")),
    "uri to a file that does not exist": lambda b: (
        b["data"].pop("text"),
        b["data"].update(uri="/nonexistent/ragbus/missing.md"),
    ),
    "uri of another scheme": lambda b: (b["data"].pop("text"), b["data"].update(uri="http://example.com/a")),
    "uri over 4096 characters": lambda b: (b["data"].pop("text"), b["data"].update(uri="/" + "a" * 5000)),
    "text a number": setting(12, "data", "text"),
    "text a list": setting(["a", "b"], "data", "text"),
    "title over 1000 characters": setting("t" * 1001, "data", "title"),
    "metadata a list": setting([1, 2], "data", "metadata"),
    "metadata value a dict": setting({"a": {"b": 1}}, "data", "metadata"),
    "metadata value a list of dicts": setting({"a": [{"b": 1}]}, "data", "metadata"),
    "content_type a number": setting(5, "data", "content_type"),
    "document of a deleted type": setting("io.ragbus.docs.deleted.v1", "type"),
}


def guard_harness(prefix: str, **settings: Any) -> Harness:
    from ragbus.guard.app import create_app
    from ragbus.guard.settings import GuardSettings

    config = component_settings(GuardSettings, prefix, ner=False, classifiers=False, **settings)
    return Harness(create_app(config), watch=[QUERIES_ACCEPTED, QUERIES_REJECTED])


@pytest.fixture
async def guard(topic_prefix: str) -> AsyncIterator[Harness]:
    async with guard_harness(topic_prefix) as harness:
        yield harness


@pytest.fixture
async def ingest(topic_prefix: str, tmp_path: Path) -> AsyncIterator[Harness]:
    from ragbus.ingest.app import create_app
    from ragbus.ingest.settings import IngestSettings

    config = component_settings(IngestSettings, topic_prefix, allowed_roots=[tmp_path], scan_injections=False)
    async with Harness(create_app(config)) as harness:
        yield harness


def refusals(harness: Harness, topic: str) -> dict[str, str]:
    """The reason of each dead letter of `topic`, by the event id or body it carried."""
    out = {}
    for letter in harness.letters(topic):
        reason = letter.letter().reason
        assert reason.strip(), "a dead letter always says why"
        out[letter.value.hex()] = reason
    return out


async def feed(harness: Harness, topic: str, bodies: dict[str, bytes], key: bytes = b"acme:k") -> None:
    name = harness.topics(topic)
    records = [consumer_record(name, body, offset=i, key=key) for i, body in enumerate(bodies.values())]
    await consume(harness.broker, *records)


async def test_every_bad_question_is_dead_lettered_or_refused_and_the_guard_goes_on(guard: Harness) -> None:
    base = valid_question()
    bodies = dict(RAW)
    bodies.update({name: edited(base, edit) for name, edit in ENVELOPE.items()})
    bodies.update({name: edited(base, edit) for name, edit in QUESTION.items()})
    after = valid_question("Which headers carry the reason of a dead letter?")
    await feed(
        guard, QUERIES_SUBMITTED, {**bodies, "(a valid question after them)": json.dumps(after).encode()}
    )

    letters = refusals(guard, QUERIES_SUBMITTED)
    rejected = {r.event().data.query_id for r in guard.received(QUERIES_REJECTED)}
    accepted = [r.event().data.query_id for r in guard.received(QUERIES_ACCEPTED)]
    missing = [
        n for n, body in bodies.items() if body.hex() not in letters and _query_id(body) not in rejected
    ]
    assert missing == [], f"neither dead-lettered nor refused: {missing}"
    assert accepted == [after["data"]["query_id"]]  # the valid one after them all, and nothing else
    assert len(bodies) >= 75


def _query_id(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["data"]["query_id"])
    except (ValueError, KeyError, TypeError):
        return None


async def test_every_bad_document_is_dead_lettered_and_ingest_goes_on(ingest: Harness) -> None:
    base = valid_document()
    bodies = {name: edited(base, edit) for name, edit in DOCUMENT.items()}
    after = valid_document()
    after["data"]["doc_id"] = "doc-after"
    await feed(
        ingest, DOCS_SUBMITTED, {**bodies, "(a valid document after them)": json.dumps(after).encode()}
    )

    letters = refusals(ingest, DOCS_SUBMITTED)
    missing = [name for name, body in bodies.items() if body.hex() not in letters]
    assert missing == [], f"not dead-lettered: {missing}"
    assert [e.data.doc_id for e in ingest.events(DOCS_CHUNKED)] == ["doc-after"]


async def test_records_that_break_the_bus_trust_are_dead_lettered(topic_prefix: str, tmp_path: Path) -> None:
    init(tmp_path)
    add_principal(tmp_path, "acme-app", topics=SUBMISSIONS, tenants=["acme"])
    acme = Signer.load("acme-app", tmp_path / "acme-app.key")
    ingest = Signer.load("ingest", tmp_path / "ingest.key")
    trust = TrustSettings(mode="enforce", dir=tmp_path)
    async with guard_harness(topic_prefix, trust=trust) as guard:
        name = guard.topics(QUERIES_SUBMITTED)

        def signed(
            signer: Signer | None, body: dict[str, Any], *, key: bytes = b"acme:k", **over: Any
        ) -> Any:
            value = json.dumps(body).encode()
            headers = [("content-type", CE_CONTENT_TYPE.encode())]
            if signer is not None:
                signature = signer.headers(over.get("signed_topic", name), over.get("signed_key", key), value)
                signature.update(over.get("headers", {}))
                headers += [(k, v.encode()) for k, v in signature.items()]
            return consumer_record(name, over.get("sent", value), key=key, headers=headers)

        kinds = {
            "unsigned": signed(None, valid_question()),
            "signed by an unknown principal": signed(
                acme, valid_question(), headers={"x-ragbus-principal": "eve"}
            ),
            "a signature that is not base64": signed(
                acme, valid_question(), headers={"x-ragbus-signature": "%%"}
            ),
            "signed for another topic": signed(acme, valid_question(), signed_topic=name + "x"),
            "signed for another key": signed(acme, valid_question(), signed_key=b"acme:other"),
            "altered after signing": signed(acme, valid_question(), sent=b'{"altered": true}'),
            "a principal for another tenant": signed(
                acme, {**valid_question(), "tenantid": "beta"}, key=b"beta:k"
            ),
            "a service writing a topic it does not own": signed(ingest, valid_question()),
            "keyed for another tenant": signed(acme, valid_question(), key=b"beta:k"),
        }
        ok = valid_question("Which headers carry the reason of a dead letter?")
        await consume(guard.broker, *kinds.values(), signed(acme, ok))

    reasons = [d.letter() for d in guard.letters(QUERIES_SUBMITTED)]
    assert len(reasons) == len(kinds)
    assert {r.error_type for r in reasons} == {"Unauthenticated", "Forbidden", "PoisonMessage"}
    assert [r.event().data.query_id for r in guard.received(QUERIES_ACCEPTED)] == [ok["data"]["query_id"]]
