"""The pytest plugin: the session broker carries a FastStream round trip under the test's own prefix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faststream.kafka import KafkaBroker

from ragbus.common.broker import consumer_options
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics
from ragbus.stack.broker import local_kafka_settings, ping_kafka
from ragbus.stack.testing import docker_reachable


def test_kafka_settings_use_local_timeouts_and_the_tests_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SESSION_TIMEOUT_MS", "HEARTBEAT_INTERVAL_MS", "FETCH_MAX_WAIT_MS", "METADATA_MAX_AGE_MS"):
        monkeypatch.delenv(f"KAFKA_{name}", raising=False)
    settings = local_kafka_settings("127.0.0.1:1234", "t1.")
    assert settings.bootstrap == "127.0.0.1:1234"
    assert settings.group_id("embed") == "t1.ragbus-embed"
    assert (settings.session_timeout_ms, settings.heartbeat_interval_ms) == (2000, 500)
    assert settings.fetch_max_wait_ms <= 25
    assert settings.metadata_max_age_ms == 30_000  # see LOCAL_KAFKA: not every second


def test_an_explicit_kafka_variable_wins_over_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SESSION_TIMEOUT_MS", "6000")
    assert local_kafka_settings("kafka:9092").session_timeout_ms == 6000


def test_docker_is_skipped_cheaply_where_no_engine_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    assert docker_reachable() is False


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_the_session_broker_carries_a_faststream_round_trip(
    kafka_bootstrap: str, kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    await ping_kafka(kafka_bootstrap)
    assert kafka_settings.bootstrap == kafka_bootstrap
    assert kafka_settings.topic_prefix == topic_prefix
    topic = Topics(kafka_settings.topic_prefix)("plugin.roundtrip.v1")
    assert topic.startswith(topic_prefix)

    broker = KafkaBroker(kafka_settings.bootstrap)
    got: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    @broker.subscriber(topic, **consumer_options("plugin-test", kafka_settings))
    async def collect(body: dict[str, str]) -> None:
        await got.put(body)

    await broker.start()
    try:
        await broker.publish({"hello": "bus"}, topic)
        assert await asyncio.wait_for(got.get(), timeout=30) == {"hello": "bus"}
    finally:
        await broker.stop()
