"""The envelope: CloudEvents attributes, typed data, deterministic follow-ups."""

from __future__ import annotations

import json
import uuid
import zlib

import pytest
from pydantic import ValidationError

from ragbus.common.envelope import Envelope, EnvelopeAttributes, parse_event
from ragbus.common.events import (
    DOC_KEY_SHARDS,
    AnswersCompleted,
    DocsChunked,
    DocsDeleted,
    DocsSubmitted,
    QueriesAccepted,
    QueriesSubmitted,
    doc_shard,
)
from ragbus.common.ids import uuid7_time_ms


def submitted(**kw: object) -> Envelope[DocsSubmitted]:
    return Envelope.new(DocsSubmitted(doc_id="doc-1", text="Hello."), source="ragbus/test", **kw)  # type: ignore[arg-type]


def test_new_event_carries_cloudevents_attributes() -> None:
    event = submitted(tenant="acme")
    body = json.loads(event.to_bytes())
    assert body["specversion"] == "1.0"
    assert body["type"] == "io.ragbus.docs.submitted.v1"
    assert body["source"] == "ragbus/test"
    assert body["subject"] == "doc-1"
    assert body["tenantid"] == "acme"
    assert body["datacontenttype"] == "application/json"
    assert body["dataschema"].endswith("docs.submitted.v1.json")
    assert body["time"].endswith("Z")
    assert uuid.UUID(body["id"]).version == 7
    assert "causationid" not in body  # absent attributes are omitted, as CloudEvents asks
    assert event.key == f"acme:{doc_shard('doc-1')}".encode()


def test_a_tenants_documents_go_under_a_few_keys_and_each_document_under_one() -> None:
    """Order holds per document (one key each); a bulk load fills DOC_KEY_SHARDS partitions, not all."""
    keys = {DocsSubmitted(doc_id=f"d{n}", text="x").partition_key("acme") for n in range(200)}
    assert keys == {f"acme:{s}" for s in range(DOC_KEY_SHARDS)}
    doc = "paper-7"
    assert {
        DocsSubmitted(doc_id=doc, text="x").partition_key("acme"),
        DocsDeleted(doc_id=doc).partition_key("acme"),
    } == {f"acme:{doc_shard(doc)}"}
    assert doc_shard("paper-7") == zlib.crc32(b"paper-7") % DOC_KEY_SHARDS  # stable across processes


def test_round_trip_through_json() -> None:
    event = submitted()
    again = Envelope[DocsSubmitted].model_validate_json(event.to_bytes())
    assert again == event


def test_follow_is_deterministic_and_keeps_tenant_and_correlation() -> None:
    cause = submitted(tenant="acme", correlation_id="req-9")
    a = cause.follow(DocsChunked(doc_id="doc-1", version="v1"), source="ragbus/ingest", seq=0)
    b = cause.follow(DocsChunked(doc_id="doc-1", version="v1"), source="ragbus/ingest", seq=0)
    part2 = cause.follow(DocsChunked(doc_id="doc-1", version="v1", part=1, parts=2), source="x", seq=1)
    assert a.id == b.id != part2.id
    assert a.causationid == cause.id
    assert (a.tenantid, a.correlationid) == ("acme", "req-9")
    # the derived id is still time-ordered: it carries its cause's timestamp
    assert uuid7_time_ms(a.id) == uuid7_time_ms(cause.id)


def test_a_redelivery_has_the_same_digest_and_the_same_follow_up_ids() -> None:
    cause = submitted(tenant="acme")
    again = parse_event(cause.to_bytes())
    later = parse_event(cause.model_copy(update={"time": cause.time.replace(year=2030)}).to_bytes())
    assert cause.digest == again.digest == later.digest  # time and transport do not count
    chunked = DocsChunked(doc_id="doc-1", version="v1")
    assert again.follow(chunked, source="x").id == cause.follow(chunked, source="x").id


def test_an_id_reused_for_other_content_gets_follow_ups_of_its_own() -> None:
    """Issue 13, case 3: a producer that reused an event id for a different question got its answer
    under the first question's reply ids, and the monitor dropped it as a duplicate."""
    first = submitted(tenant="acme")
    other = Envelope.new(
        DocsSubmitted(doc_id="doc-1", text="Other."), source="ragbus/test", tenant="acme", event_id=first.id
    )
    elsewhere = Envelope.new(
        DocsSubmitted(doc_id="doc-1", text="Hello."), source="ragbus/test", tenant="beta", event_id=first.id
    )
    assert len({first.digest, other.digest, elsewhere.digest}) == 3
    chunked = DocsChunked(doc_id="doc-1", version="v1")
    ids = {e.follow(chunked, source="x").id for e in (first, other, elsewhere)}
    assert len(ids) == 3


def test_a_follow_up_answered_differently_when_run_again_keeps_the_ids_after_it() -> None:
    """A step that is not deterministic (a model after a restart) must not fork the flow: its second
    output is a duplicate of the first downstream, not a second answer."""
    cause = submitted(tenant="acme")
    first = cause.follow(DocsChunked(doc_id="doc-1", version="v1"), source="x")
    again = cause.follow(DocsChunked(doc_id="doc-1", version="v2"), source="x")
    assert first.id == again.id
    assert first.digest != again.digest
    indexed = DocsChunked(doc_id="doc-1", version="v9")
    assert first.follow(indexed, source="y").id == again.follow(indexed, source="y").id


def test_type_must_match_data() -> None:
    raw = json.loads(submitted().to_bytes())
    raw["type"] = "io.ragbus.docs.deleted.v1"
    with pytest.raises(ValidationError, match="does not match"):
        Envelope[DocsSubmitted].model_validate(raw)


def test_parse_event_picks_the_model_by_type() -> None:
    event = Envelope.new(DocsDeleted(doc_id="d"), source="s")
    parsed = parse_event(event.to_bytes())
    assert isinstance(parsed.data, DocsDeleted)
    with pytest.raises(ValueError, match="unknown event type"):
        parse_event(b'{"type": "io.other.thing.v1"}')


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = json.loads(submitted().to_bytes())
    raw["data"]["added_in_a_later_version"] = 1
    raw["someextension"] = "kept"
    event = Envelope[DocsSubmitted].model_validate(raw)
    assert event.data.doc_id == "doc-1"
    assert json.loads(event.to_bytes())["someextension"] == "kept"


@pytest.mark.parametrize(
    "data",
    [
        {"doc_id": "d"},  # neither text nor uri
        {"doc_id": "d", "text": "x", "uri": "/tmp/x"},  # both
        {"doc_id": "has space", "text": "x"},
        {"doc_id": "a:b", "text": "x"},  # would break the tenant:doc key
        {"doc_id": "", "text": "x"},
    ],
)
def test_bad_documents_are_refused_with_a_reason(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DocsSubmitted.model_validate(data)


def test_bad_tenant_is_refused() -> None:
    with pytest.raises(ValidationError):
        submitted(tenant="no spaces please")


def test_peek_never_raises() -> None:
    assert EnvelopeAttributes.peek(b"\xff not json") is None
    assert EnvelopeAttributes.peek(b"[]") is None
    attrs = EnvelopeAttributes.peek(submitted().to_bytes())
    assert attrs is not None
    assert attrs.type == "io.ragbus.docs.submitted.v1"


def test_query_key_prefers_conversation() -> None:
    q = Envelope.new(
        QueriesSubmitted(query_id="q1", conversation_id="c1", question="?"), source="s", tenant="t"
    )
    assert q.key == b"t:c1"
    q2 = Envelope.new(QueriesSubmitted(query_id="q1", question="?"), source="s", tenant="t")
    assert q2.key == b"t:q1"
    accepted = q.follow(QueriesAccepted(query_id="q1", conversation_id="c1", question="?"), source="g")
    done = accepted.follow(
        AnswersCompleted(query_id="q1", conversation_id="c1", status="answered", answer="a"), source="g"
    )
    assert done.key == q.key
    assert done.correlationid == q.correlationid == "q1"
