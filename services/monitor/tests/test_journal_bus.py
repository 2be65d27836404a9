"""The journal and the dead letters on record, against a real broker and PostgreSQL: what `ragbus up`
re-drives after a fresh broker, and `ragbus dlq --from-record`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ragbus.client.cli import main
from ragbus.common import trust
from ragbus.common.envelope import Envelope, parse_event
from ragbus.common.events import DeadLetter
from ragbus.common.settings import KafkaSettings
from ragbus.common.testing import read_topic_until
from ragbus.common.topics import QUERIES_SUBMITTED, Topics
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.cli import redrive_after_broker_loss
from ragbus.monitor.domain import RawMessage, dead_letter_record
from ragbus.monitor.ports import EventRecord
from ragbus.monitor.settings import MonitorSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Trust on, with keys made as `ragbus up` makes them: the CLI signs as the operator."""
    directory = tmp_path / "trust"
    trust.init(directory)
    monkeypatch.setenv("RAGBUS_TRUST_MODE", "enforce")
    monkeypatch.setenv("RAGBUS_TRUST_DIR", str(directory))
    return directory


async def test_after_a_fresh_broker_the_unfinished_submissions_are_published_again_signed(
    settings: MonitorSettings,
    pg_store: PostgresEventStore,
    kafka_settings: KafkaSettings,
    enforced: Path,
    request_of: Callable[..., Any],
    record_of: Callable[[Envelope[Any]], EventRecord],
) -> None:
    answered, lost = request_of(query_id="q-1"), request_of(query_id="q-2", question="Where did it go?")
    await pg_store.record_batch([*(record_of(e) for e in answered.all), record_of(lost.submitted)], [])

    said = await redrive_after_broker_loss(
        settings.database_url.get_secret_value(), settings.db_schema, kafka_settings
    )

    assert said == "re-drove 1 submission with no outcome (queries.submitted.v1 1)"
    topic = Topics(kafka_settings.topic_prefix)(QUERIES_SUBMITTED)
    [record] = await read_topic_until(kafka_settings, topic, 1)
    again = parse_event(record.value)
    assert (again.id, again.digest, record.key) == (
        lost.submitted.id,
        lost.submitted.digest,
        lost.submitted.key,
    )
    # Signed as the operator, and admitted by the services' check like any submission.
    checker = trust.Trust.open(trust.TrustSettings(), "ingest", kafka_settings.topic_prefix)
    headers = {k: v.decode() for k, v in record.headers}
    assert headers[trust.PRINCIPAL_HEADER] == trust.OPERATOR
    checker.admit(topic, record.key, record.value, headers)


async def test_dead_letters_are_listed_and_replayed_from_the_record(
    settings: MonitorSettings,
    pg_store: PostgresEventStore,
    kafka_settings: KafkaSettings,
    monkeypatch: pytest.MonkeyPatch,
    request_of: Callable[..., Any],
) -> None:
    t = Topics(kafka_settings.topic_prefix)
    question = request_of(query_id="q-9").submitted
    letter = DeadLetter(
        original_topic=t(QUERIES_SUBMITTED),
        partition=0,
        offset=3,
        service="guard",
        error_type="ValidationError",
        reason="question too long",
        attempts=1,
        failed_at=question.time,
        original_principal="acme-app",
        original_signature="app-signature",
    )
    headers = {"content-type": "application/cloudevents+json", **letter.to_headers()}
    headers |= {trust.PRINCIPAL_HEADER: "guard", trust.SIGNATURE_HEADER: "guard-signature"}
    msg = RawMessage(
        topic=t.dlq(QUERIES_SUBMITTED), partition=1, offset=7, value=question.to_bytes(), key=question.key,
        headers=headers,
    )  # fmt: skip
    await pg_store.record_dead_letter(dead_letter_record(msg))
    env = {
        "MONITOR_DATABASE_URL": settings.database_url.get_secret_value(),
        "MONITOR_DB_SCHEMA": settings.db_schema,
        "KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "RAGBUS_TRUST_MODE": "off",
    }

    listed = await asyncio.to_thread(CliRunner().invoke, main, ["dlq", "--from-record"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"{t(QUERIES_SUBMITTED)}: 1 dead letter" in listed.output
    assert f"{t.dlq(QUERIES_SUBMITTED)}#1@7  guard" in listed.output
    assert "ValidationError: question too long" in listed.output

    replayed = await asyncio.to_thread(CliRunner().invoke, main, ["dlq", "replay", "--from-record"], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 message" in replayed.output
    [record] = await read_topic_until(kafka_settings, t(QUERIES_SUBMITTED), 1)
    assert (record.value, record.key) == (question.to_bytes(), question.key)
    sent = dict(record.headers)
    assert sent[trust.PRINCIPAL_HEADER] == b"acme-app"  # the producer's signature, not the guard's
    assert sent[trust.SIGNATURE_HEADER] == b"app-signature"
    assert not any(k.startswith("x-ragbus-dlq-") for k in sent)
    # After a fresh broker, `ragbus up` says they are still on record, and where to read them.
    said = await redrive_after_broker_loss(
        settings.database_url.get_secret_value(), settings.db_schema, kafka_settings
    )
    assert said == "nothing unfinished on record; 1 dead letter on record: `ragbus dlq --from-record`"
