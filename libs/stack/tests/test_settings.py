"""One settings class for the local stack: every variable the README documents, one default database."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragbus.common.settings import DEFAULT_DATABASE_URL, monitor_schema_for
from ragbus.monitor.settings import MonitorSettings
from ragbus.stack.settings import UP_GATEWAY_PORT, UP_HEALTH_PORT, StackSettings

VARIABLES = (
    "RAGBUS_HOME",
    "RAGBUS_BROKER_PORT",
    "RAGBUS_BROKER_BINARY",
    "RAGBUS_MODEL_PORT",
    "RAGBUS_MODEL_NAME",
    "RAGBUS_MODEL_THREADS",
    "RAGBUS_MODEL_CTX_SIZE",
    "RAGBUS_MODEL_CACHE_RAM_MIB",
    "RAGBUS_HEALTH_PORT",
    "RAGBUS_GATEWAY_PORT",
    "MONITOR_DATABASE_URL",
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP",
    "ORCHESTRATOR_CHAT_BASE_URL",
    "MONITOR_DB_SCHEMA",
    "GATEWAY_DB_SCHEMA",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_local_stack_of_the_readme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    settings = StackSettings()
    assert settings.home == Path("/home/someone/.ragbus")
    assert (settings.broker.port, settings.model.port, settings.model.threads) == (9092, 8080, 0)
    assert (settings.health_port, settings.up_health_port) == (None, UP_HEALTH_PORT)
    assert (settings.gateway_port, settings.gateway_url) == (UP_GATEWAY_PORT, "http://127.0.0.1:8090")
    assert (settings.monitor_schema, settings.gateway_schema) == ("ragbus", "ragbus_gateway")
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert (settings.kafka_bootstrap, settings.chat_base_url) == (None, None)


def test_each_documented_variable_reaches_its_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        "RAGBUS_HOME": str(tmp_path),
        "RAGBUS_BROKER_PORT": "19092",
        "RAGBUS_BROKER_BINARY": "/opt/tansu",
        "RAGBUS_MODEL_PORT": "18080",
        "RAGBUS_MODEL_NAME": "gemma3",
        "RAGBUS_MODEL_THREADS": "2",
        "RAGBUS_MODEL_CTX_SIZE": "4096",
        "RAGBUS_MODEL_CACHE_RAM_MIB": "64",
        "RAGBUS_HEALTH_PORT": "18079",
        "RAGBUS_GATEWAY_PORT": "18090",
        "DATABASE_URL": "postgresql://app@db:5432/app",
        "KAFKA_BOOTSTRAP": "kafka:9092",
        "ORCHESTRATOR_CHAT_BASE_URL": "https://api.example.com/v1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = StackSettings()
    assert settings.home == tmp_path
    assert (settings.broker.port, settings.broker.binary) == (19092, Path("/opt/tansu"))
    assert (settings.model.port, settings.model.threads) == (18080, 2)
    assert (settings.model.ctx_size, settings.model.cache_ram_mib) == (4096, 64)
    assert (settings.model.name, settings.model.served_alias) == ("gemma3", "gemma3-270m")
    assert (settings.health_port, settings.up_health_port) == (18079, 18079)
    assert (settings.gateway_port, settings.gateway_url) == (18090, "http://127.0.0.1:18090")
    assert settings.gateway_schema == monitor_schema_for(tmp_path) + "_gateway"
    assert settings.database_url == "postgresql://app@db:5432/app"
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.chat_base_url == "https://api.example.com/v1"


def test_the_monitors_database_wins_over_the_general_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/general")
    monkeypatch.setenv("MONITOR_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/monitor")
    assert StackSettings().database_url.endswith("/monitor")


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGBUS_MODEL_THREADS", "")
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "")
    settings = StackSettings()
    assert (settings.model.threads, settings.database_url, settings.kafka_bootstrap) == (
        0,
        DEFAULT_DATABASE_URL,
        None,
    )


def test_a_home_with_a_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv("RAGBUS_HOME", "~/stack")
    assert StackSettings().home == Path("/home/someone/stack")


def test_each_home_has_a_monitor_schema_of_its_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert StackSettings().monitor_schema == "ragbus"  # the default home keeps the monitor's default
    first, second = tmp_path / "stack-a", tmp_path / "stack-b"
    schemas = {
        monitor_schema_for(first),
        monitor_schema_for(second),
        monitor_schema_for(tmp_path / ".ragbus"),
    }
    assert len(schemas) == 3
    assert monitor_schema_for(first) == monitor_schema_for(first)  # stable: the record survives restarts
    assert monitor_schema_for(first).startswith("ragbus_stack_a_")
    for schema in schemas:
        MonitorSettings(db_schema=schema)  # a name the monitor accepts
    monkeypatch.setenv("RAGBUS_HOME", str(first))
    assert StackSettings().monitor_schema == monitor_schema_for(first)
    monkeypatch.setenv("MONITOR_DB_SCHEMA", "audit")
    assert StackSettings().monitor_schema == "audit"  # the user's choice wins
