"""`ragbus dlq`: dead letters read from a real broker, and replayed once each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from ragbus.client.cli import main
from ragbus.client.dlq import dlq_topics, read_letters, replay
from ragbus.common.admin import ensure_topics
from ragbus.common.events import DeadLetter
from ragbus.common.kafka import client_options
from ragbus.common.settings import KafkaSettings
from ragbus.common.testing import read_topic, read_topic_until
from ragbus.common.topics import DOCS_SUBMITTED, QUERIES_SUBMITTED, Topics

pytestmark = pytest.mark.integration


def letter_headers(topic: str, offset: int, service: str) -> list[tuple[str, bytes]]:
    letter = DeadLetter(
        original_topic=topic,
        partition=0,
        offset=offset,
        service=service,
        error_type="ValidationError",
        reason="give exactly one of `text` or `uri`",
        attempts=1,
        failed_at=datetime(2026, 11, 29, 9, 30, tzinfo=UTC),
    )
    return [
        ("content-type", b"application/cloudevents+json"),
        *((k, v.encode()) for k, v in letter.to_headers().items()),
    ]


async def dead_letter(kafka: KafkaSettings, base: str, value: bytes, offset: int, service: str) -> None:
    """What the shared middleware publishes when `service` cannot process offset `offset` of `base`."""
    t = Topics(kafka.topic_prefix)
    producer = AIOKafkaProducer(**client_options(kafka))
    await producer.start()
    try:
        headers = letter_headers(t(base), offset, service)
        await producer.send_and_wait(t.dlq(base), value, key=b"acme:doc-1", headers=headers)
    finally:
        await producer.stop()


Row = tuple[bytes | None, bytes, dict[str, bytes]]


def rows(records: list[Any]) -> list[Row]:
    return [(r.key, r.value, dict(r.headers)) for r in records]


async def read_all(kafka: KafkaSettings, topic: str) -> list[Row]:
    return rows(await read_topic(kafka, topic))


async def read_until(kafka: KafkaSettings, topic: str, count: int) -> list[Row]:
    return rows(await read_topic_until(kafka, topic, count))


async def test_letters_are_listed_and_each_message_replayed_once(kafka_settings: KafkaSettings) -> None:
    t = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, [*t.all_with_dlq])
    # One bad document that two consumers dead-lettered, and one bad question.
    await dead_letter(kafka_settings, DOCS_SUBMITTED, b'{"bad": "doc"}', 4, "ingest")
    await dead_letter(kafka_settings, DOCS_SUBMITTED, b'{"bad": "doc"}', 4, "monitor")
    await dead_letter(kafka_settings, QUERIES_SUBMITTED, b"\xff not json", 9, "guard")

    letters = await read_letters(kafka_settings)
    assert [(x.original_topic, x.letter.service if x.letter else None) for x in letters] == [
        (t(DOCS_SUBMITTED), "ingest"),
        (t(DOCS_SUBMITTED), "monitor"),
        (t(QUERIES_SUBMITTED), "guard"),
    ]
    assert [x.original_topic for x in await read_letters(kafka_settings, [QUERIES_SUBMITTED])] == [
        t(QUERIES_SUBMITTED)
    ]

    dry = await replay(kafka_settings, dry_run=True)
    assert (len(dry.published), dry.duplicates) == (2, 1)
    assert await read_all(kafka_settings, t(DOCS_SUBMITTED)) == []  # a dry run publishes nothing

    done = await replay(kafka_settings)
    assert (len(done.published), done.duplicates) == (2, 1)
    [(key, value, headers)] = await read_until(kafka_settings, t(DOCS_SUBMITTED), 1)
    assert (key, value) == (b"acme:doc-1", b'{"bad": "doc"}')  # the original key and bytes
    assert headers == {"content-type": b"application/cloudevents+json"}  # the reason stays behind
    assert [v for _, v, _ in await read_until(kafka_settings, t(QUERIES_SUBMITTED), 1)] == [b"\xff not json"]

    # Replayed letters are recorded as such; only what failed since is replayed next time.
    assert (await replay(kafka_settings)).published == []
    await dead_letter(kafka_settings, QUERIES_SUBMITTED, b"\xff not json", 12, "guard")
    again = await replay(kafka_settings)
    assert [x.letter.offset for x in again.published if x.letter] == [12]


async def test_the_cli_lists_letters_with_their_reason_and_replays_them(
    kafka_settings: KafkaSettings,
) -> None:
    t = Topics(kafka_settings.topic_prefix)
    env = {"KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix}
    runner = CliRunner()

    empty = await _invoke(runner, ["dlq"], env)
    assert empty.output.strip() == "no dead letters", empty.output

    await ensure_topics(kafka_settings, dlq_topics(t))
    await dead_letter(kafka_settings, DOCS_SUBMITTED, b'{"bad": "doc"}', 4, "ingest")
    listed = await _invoke(runner, ["dlq"], env)
    lines = listed.output.splitlines()
    assert lines[0] == f"{t(DOCS_SUBMITTED)}: 1 dead letter"
    assert "ingest  2026-11-29 09:30:00  ValidationError: give exactly one of `text` or `uri`" in lines[1]

    replayed = await _invoke(runner, ["dlq", "replay", "--topic", DOCS_SUBMITTED], env)
    assert replayed.output.splitlines()[-1] == "replayed 1 message"
    unknown = await _invoke(runner, ["dlq", "--topic", "nope.v1"], env)
    assert unknown.exit_code == 1
    assert "unknown topic 'nope.v1'" in unknown.output


async def _invoke(runner: CliRunner, args: list[str], env: dict[str, str]) -> Any:
    # The CLI runs its own event loop (asyncio.run), so it runs in a thread beside the test's loop.

    return await asyncio.to_thread(runner.invoke, main, args, env=env)


def test_a_replay_carries_its_producers_signature_not_the_dead_lettering_services() -> None:
    """A refused record must not come back trusted: the letter's own signature (the service's) stays
    behind, the producer's (kept in x-ragbus-dlq-original-*) is restored, and an unsigned original
    stays unsigned."""
    from ragbus.common.letters import Letter, replay_headers
    from ragbus.common.trust import PRINCIPAL_HEADER, SIGNATURE_HEADER

    def letter_with(**original: str) -> Letter:
        dead = DeadLetter(
            original_topic="docs.submitted.v1",
            service="ingest",
            error_type="FileNotFoundError",
            reason="no such file",
            failed_at=datetime.now(UTC),
            **original,
        )
        headers = {"content-type": "application/cloudevents+json", **dead.to_headers()}
        headers |= {PRINCIPAL_HEADER: "ingest", SIGNATURE_HEADER: "service-signature"}
        raw = tuple((k, v.encode()) for k, v in headers.items())
        return Letter("docs.submitted.v1.dlq", 0, 3, b"acme:doc-1", b"{}", raw, dead)

    signed = replay_headers(letter_with(original_principal="acme-app", original_signature="app-signature"))
    assert signed == [
        ("content-type", b"application/cloudevents+json"),
        (PRINCIPAL_HEADER, b"acme-app"),
        (SIGNATURE_HEADER, b"app-signature"),
    ]
    assert replay_headers(letter_with()) == [("content-type", b"application/cloudevents+json")]
