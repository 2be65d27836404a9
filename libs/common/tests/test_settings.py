"""Shared settings: where a client looks for the broker when nothing names one."""

from __future__ import annotations

import pytest

from ragbus.common.settings import KafkaSettings


def test_without_kafka_bootstrap_the_local_stacks_broker_port_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP_SERVERS", "RAGBUS_BROKER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert KafkaSettings().bootstrap == "127.0.0.1:9092"
    # A second stack on another port (`RAGBUS_BROKER_PORT=19092 ragbus up`): `ragbus ask` finds it too.
    monkeypatch.setenv("RAGBUS_BROKER_PORT", "19092")
    assert KafkaSettings().bootstrap == "127.0.0.1:19092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka:9092")  # a named broker wins
    assert KafkaSettings().bootstrap == "kafka:9092"
