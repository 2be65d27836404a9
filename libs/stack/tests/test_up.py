"""`ragbus up`, `down`, `status`: what they start, the settings they hand the services, what they print."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragbus.stack import cli
from ragbus.stack.process import free_port
from ragbus.stack.up import _kafka_env, services_process


def test_the_services_run_as_the_serve_command_with_their_health_port(ragbus_home: Path) -> None:
    proc = services_process(18079)
    assert proc.spec.argv == (sys.executable, "-m", "ragbus.stack.serve", "all", "--health-port", "18079")
    assert proc.spec.address == "http://127.0.0.1:18079/healthz"
    assert proc.home == ragbus_home


def test_the_services_get_local_kafka_timeouts_unless_a_variable_sets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SESSION_TIMEOUT_MS", "HEARTBEAT_INTERVAL_MS", "FETCH_MAX_WAIT_MS", "METADATA_MAX_AGE_MS"):
        monkeypatch.delenv(f"KAFKA_{name}", raising=False)
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "5")
    assert _kafka_env("127.0.0.1:19092") == {
        "KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "KAFKA_METADATA_MAX_AGE_MS": "1000",
    }  # and KAFKA_FETCH_MAX_WAIT_MS=5 reaches the services as it is, in their environment


@pytest.fixture
def down_database(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    return url


def test_status_of_a_stack_that_is_not_up(ragbus_home: Path, down_database: str) -> None:
    result = CliRunner().invoke(cli.status, [], color=False)
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "ragbus status",
        f"  postgres     down     {down_database}",
        "  broker: stopped",
        "  model: stopped",
        "  services: stopped",
    ]


def test_down_of_a_stack_that_is_not_up_touches_nothing(ragbus_home: Path, down_database: str) -> None:
    result = CliRunner().invoke(cli.down, [])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "ragbus down",
        "  services: not running",
        "  model: not running",
        "  broker: not running",
        f"  postgres: left running at {down_database} (not started by ragbus)",
    ]
