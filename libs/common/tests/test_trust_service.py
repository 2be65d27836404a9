"""Trust enforced in a service, on the in-memory broker: what it refuses, and that what it publishes
(its replies and its dead letters) is signed as itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import DocsChunked, DocsSubmitted
from ragbus.common.service import Service
from ragbus.common.settings import ServiceSettings
from ragbus.common.testing import Harness, component_settings, consume, consumer_record
from ragbus.common.topics import DOCS_CHUNKED, DOCS_SUBMITTED
from ragbus.common.trust import SUBMISSIONS, Signer, TrustSettings, Verifier, add_principal, init


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    init(tmp_path)
    add_principal(tmp_path, "acme-app", topics=SUBMISSIONS, tenants=["acme"])
    return tmp_path


def ingest_like(settings: ServiceSettings) -> Service[Any]:
    service: Service[Any] = Service("ingest", settings, deps=object(), publishes=[DocsChunked])

    @service.subscriber(DOCS_SUBMITTED)
    async def on_submitted(event: Envelope[DocsSubmitted]) -> None:
        await service.bus.reply(event, DocsChunked(doc_id=event.data.doc_id, version="v1"))

    return service


def headers_of(trust_dir: Path, name: str, topic: str, event: Envelope[Any]) -> list[tuple[str, bytes]]:
    signed = Signer.load(name, trust_dir / f"{name}.key").headers(topic, event.key, event.to_bytes())
    return [("content-type", CE_CONTENT_TYPE.encode()), *((k, v.encode()) for k, v in signed.items())]


async def test_only_a_signed_request_for_its_principals_tenant_is_processed(trust_dir: Path) -> None:
    settings = component_settings(ServiceSettings, "tr.", trust=TrustSettings(mode="enforce", dir=trust_dir))
    service = ingest_like(settings)
    topic = service.topics(DOCS_SUBMITTED)

    def doc(doc_id: str, tenant: str = "acme") -> Envelope[DocsSubmitted]:
        return Envelope.new(DocsSubmitted(doc_id=doc_id, text="x"), source="app", tenant=tenant)

    good, unsigned, spoofed, wrong_key = doc("good"), doc("unsigned"), doc("spoofed", "beta"), doc("key")
    async with Harness(service.app) as h:
        await consume(
            service.broker,
            consumer_record(topic, good, offset=1, headers=headers_of(trust_dir, "acme-app", topic, good)),
            consumer_record(topic, unsigned, offset=2),
            consumer_record(
                topic, spoofed, offset=3, headers=headers_of(trust_dir, "acme-app", topic, spoofed)
            ),
            consumer_record(topic, wrong_key, offset=4, key=b"beta:key"),
        )

    [reply] = h.received(DOCS_CHUNKED)
    assert reply.event().data.doc_id == "good"
    verifier = Verifier(trust_dir / "trust.json", "tr.")
    assert verifier.check(service.topics(DOCS_CHUNKED), reply.key, reply.value, reply.headers) == "ingest"
    reasons = {
        letter.letter().original_topic + f"@{letter.letter().offset}": letter.letter() for letter in h.dead
    }
    assert [r.error_type for r in reasons.values()] == ["Unauthenticated", "Forbidden", "PoisonMessage"]
    assert "unsigned" in reasons[f"{topic}@2"].reason
    assert "may not speak for tenant 'beta'" in reasons[f"{topic}@3"].reason
    assert "does not start with the event's tenant" in reasons[f"{topic}@4"].reason
    for letter in h.dead:  # the dead letters are the service's word: signed by it, reasons included
        assert verifier.check(
            service.topics(DOCS_SUBMITTED) + ".dlq", letter.key, letter.value, letter.headers
        )
    # The producer's own signature is kept aside in the letter, for a replay to restore.
    assert reasons[f"{topic}@3"].original_principal == "acme-app"
    assert reasons[f"{topic}@2"].original_principal is None
