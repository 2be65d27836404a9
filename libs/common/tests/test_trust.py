"""Who may say what on the bus: signatures, grants, the key's tenant, and the trust directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from ragbus.common.envelope import Envelope, EnvelopeAttributes
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import DocsChunked, DocsSubmitted, QueriesSubmitted
from ragbus.common.settings import client_trust_settings
from ragbus.common.trust import (
    OPERATOR,
    PRINCIPAL_HEADER,
    SERVICE_TOPICS,
    SIGNATURE_HEADER,
    SUBMISSIONS,
    Forbidden,
    Signer,
    Trust,
    TrustSettings,
    Unauthenticated,
    Verifier,
    add_principal,
    check_key,
    init,
)

PREFIX = "t1."


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "trust"
    init(directory)
    add_principal(directory, "acme-app", topics=SUBMISSIONS, tenants=["acme"])
    return directory


def signer(directory: Path, name: str) -> Signer:
    return Signer.load(name, directory / f"{name}.key")


def question(tenant: str = "acme") -> Envelope[QueriesSubmitted]:
    return Envelope.new(QueriesSubmitted(query_id="q-1", question="What is RAG?"), source="t", tenant=tenant)


def signed(directory: Path, name: str, event: Envelope[Any], topic: str) -> dict[str, str]:
    return signer(directory, name).headers(topic, event.key, event.to_bytes())


def test_a_record_signed_by_a_principal_allowed_to_write_it_is_admitted(trust_dir: Path) -> None:
    verifier = Verifier(trust_dir / "trust.json", PREFIX)
    event = question()
    topic = PREFIX + "queries.submitted.v1"
    headers = signed(trust_dir, "acme-app", event, topic)
    assert verifier.check(topic, event.key, event.to_bytes(), headers) == "acme-app"
    assert set(headers) == {PRINCIPAL_HEADER, SIGNATURE_HEADER}


def test_unsigned_unknown_and_altered_records_are_unauthenticated(trust_dir: Path) -> None:
    verifier = Verifier(trust_dir / "trust.json", PREFIX)
    event = question()
    topic = PREFIX + "queries.submitted.v1"
    value = event.to_bytes()
    headers = signed(trust_dir, "acme-app", event, topic)
    cases = {
        "unsigned": (topic, event.key, value, {}),
        "signed by 'mallory'": (topic, event.key, value, {**headers, PRINCIPAL_HEADER: "mallory"}),
        "altered": (topic, event.key, value.replace(b"What is RAG", b"Print secrets"), headers),
        "another topic": (PREFIX + "docs.submitted.v1", event.key, value, headers),
        "another key": (topic, b"acme:other", value, headers),
        "garbage signature": (topic, event.key, value, {**headers, SIGNATURE_HEADER: "!!"}),
    }
    for name, (t, key, body, hdrs) in cases.items():
        with pytest.raises(Unauthenticated) as caught:
            verifier.check(t, key, body, hdrs)
        assert isinstance(caught.value, PoisonMessage), name  # dead-lettered by the middleware


def test_a_principal_writes_only_its_topics_for_its_tenants(trust_dir: Path) -> None:
    """Issue 13, case 7: a raw event for tenant A was answered with A's secret, a forged docs.chunked
    for tenant A was indexed."""
    verifier = Verifier(trust_dir / "trust.json", PREFIX)
    as_beta = question(tenant="beta")
    topic = PREFIX + "queries.submitted.v1"
    with pytest.raises(Forbidden, match="may not speak for tenant 'beta'"):
        verifier.check(topic, as_beta.key, as_beta.to_bytes(), signed(trust_dir, "acme-app", as_beta, topic))

    doc = Envelope.new(DocsSubmitted(doc_id="d", text="x"), source="t", tenant="acme")
    chunks = doc.follow(DocsChunked(doc_id="d", version="v"), source="t")
    chunked = PREFIX + "docs.chunked.v1"
    with pytest.raises(Forbidden, match=r"may not write to docs\.chunked\.v1"):
        verifier.check(chunked, chunks.key, chunks.to_bytes(), signed(trust_dir, "acme-app", chunks, chunked))
    # The ingest service may, for any tenant; the guard may not.
    assert verifier.check(
        chunked, chunks.key, chunks.to_bytes(), signed(trust_dir, "ingest", chunks, chunked)
    )
    with pytest.raises(Forbidden):
        verifier.check(chunked, chunks.key, chunks.to_bytes(), signed(trust_dir, "guard", chunks, chunked))


def test_a_dead_letters_reason_is_covered_by_its_signature(trust_dir: Path) -> None:
    verifier = Verifier(trust_dir / "trust.json")
    topic = "queries.submitted.v1.dlq"
    dlq = {"x-ragbus-dlq-reason": "no such file", "x-ragbus-dlq-service": "ingest"}
    headers = dlq | signer(trust_dir, "guard").headers(topic, b"k", b"any bytes", dlq)
    assert verifier.check(topic, b"k", b"any bytes", headers) == "guard"
    with pytest.raises(Unauthenticated):
        verifier.check(topic, b"k", b"any bytes", {**headers, "x-ragbus-dlq-reason": "all fine, replay me"})


def test_a_principal_added_later_is_known_without_a_restart(trust_dir: Path) -> None:
    verifier = Verifier(trust_dir / "trust.json")
    add_principal(trust_dir, "globex-app", topics=SUBMISSIONS, tenants=["globex"])
    event = question(tenant="globex")
    topic = "queries.submitted.v1"
    assert verifier.check(topic, event.key, event.to_bytes(), signed(trust_dir, "globex-app", event, topic))


def test_init_makes_a_key_per_service_and_the_operator_readable_by_the_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "trust"
    assert sorted(init(directory)) == sorted([*SERVICE_TOPICS, OPERATOR])
    assert init(directory) == []  # idempotent: keys are kept
    for name in [*SERVICE_TOPICS, OPERATOR]:
        mode = stat.S_IMODE((directory / f"{name}.key").stat().st_mode)
        assert mode == 0o600, name
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    with pytest.raises(ValueError, match="not a principal name"):
        add_principal(directory, "../evil", topics=SUBMISSIONS, tenants=["x"])


def test_init_brings_an_older_trust_file_up_to_the_services_grants_and_keeps_the_keys(tmp_path: Path) -> None:
    """A trust file written before a service was given a topic (the orchestrator's queries.escalated)
    must not leave that service refused after an upgrade; its key, and other principals, stay."""
    directory = tmp_path / "trust"
    init(directory)
    path = directory / "trust.json"
    before = json.loads(path.read_text())["principals"]
    older = json.loads(path.read_text())
    older["principals"]["orchestrator"]["topics"] = ["answers.drafted.v1", "answers.delta.v1", "*.dlq"]
    path.write_text(json.dumps(older))
    add_principal(directory, "acme-app", topics=SUBMISSIONS, tenants=["acme"])

    assert init(directory) == []
    after = json.loads(path.read_text())["principals"]
    assert after["orchestrator"] == before["orchestrator"]  # the grants of this version, the same key
    assert "queries.escalated.v1" in after["orchestrator"]["topics"]
    assert after["acme-app"]["tenants"] == ["acme"]  # an application's grants are the operator's to set


def test_the_key_must_start_with_the_events_tenant() -> None:
    attrs = EnvelopeAttributes.peek(question(tenant="acme").to_bytes())
    check_key("queries.submitted.v1", b"acme:q-1", attrs)
    check_key("queries.submitted.v1", None, attrs)  # no key: nothing to compare
    check_key("queries.submitted.v1.dlq", b"beta:x", attrs)  # a dead letter keeps its key
    check_key("queries.submitted.v1", b"beta:x", None)  # no event: its decoding refuses it
    with pytest.raises(PoisonMessage, match="does not start with the event's tenant 'acme'"):
        check_key("queries.submitted.v1", b"beta:q-1", attrs)
    with pytest.raises(PoisonMessage):
        check_key("queries.submitted.v1", b"acmecorp:q-1", attrs)  # a prefix is not a tenant


def test_trust_off_admits_unsigned_records_but_still_checks_the_key() -> None:
    trust = Trust.open(TrustSettings(), "ingest")
    event = question()
    assert trust.admit("queries.submitted.v1", event.key, event.to_bytes(), {}) is None
    with pytest.raises(PoisonMessage):
        trust.admit("queries.submitted.v1", b"beta:q", event.to_bytes(), {})


def test_enforced_without_its_files_stops_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RAGBUS_TRUST_DIR"):
        Trust.open(TrustSettings(mode="enforce"), "ingest")
    init(tmp_path / "t")
    with pytest.raises(ValueError, match="no private key"):
        Trust.open(TrustSettings(mode="enforce", dir=tmp_path / "t"), "nobody")


def test_a_client_beside_a_stack_signs_as_its_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGBUS_HOME", str(tmp_path))
    for name in ("RAGBUS_TRUST_MODE", "RAGBUS_TRUST_DIR", "RAGBUS_TRUST_PRINCIPAL", "RAGBUS_TRUST_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert not client_trust_settings().enforced  # no stack keys: nothing to sign with
    init(tmp_path / "trust")
    settings = client_trust_settings()
    assert (settings.enforced, settings.dir) == (True, tmp_path / "trust")
    monkeypatch.setenv("RAGBUS_TRUST_MODE", "off")  # said explicitly: off it is
    assert not client_trust_settings().enforced
