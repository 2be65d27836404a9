"""`ragbus up`, `down`, `status`: what they start, the settings they hand the services, what they print."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from click.testing import CliRunner

from ragbus.common.admin import ensure_topics
from ragbus.common.settings import KafkaSettings, monitor_schema_for
from ragbus.common.topics import Topics
from ragbus.stack import cli
from ragbus.stack.broker import broker_handle, broker_process
from ragbus.stack.postgres import postgres_status
from ragbus.stack.process import free_port
from ragbus.stack.settings import StackSettings
from ragbus.stack.up import _kafka_env, services_env, services_process


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
        "KAFKA_METADATA_MAX_AGE_MS": "30000",
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
        f"  postgres     down     {down_database}  schema {monitor_schema_for(ragbus_home)}",
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


# --- what `up` tells the services -------------------------------------------------------------------


def test_the_services_may_read_the_directory_up_was_started_from_never_its_home(
    ragbus_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INGEST_ALLOWED_ROOTS", "MONITOR_DB_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    env = services_env(StackSettings(), tmp_path)
    assert env["INGEST_ALLOWED_ROOTS"] == str(tmp_path)
    assert env["RAGBUS_HOME"] == str(ragbus_home)  # ingest's denied root by default
    assert env["MONITOR_DB_SCHEMA"] == monitor_schema_for(ragbus_home)
    monkeypatch.setenv("INGEST_ALLOWED_ROOTS", "/srv/docs")
    assert "INGEST_ALLOWED_ROOTS" not in services_env(StackSettings(), tmp_path)  # the user's reaches them
    monkeypatch.setenv("MONITOR_DB_SCHEMA", "audit")
    assert services_env(StackSettings(), tmp_path)["MONITOR_DB_SCHEMA"] == "audit"


def test_the_gateway_gets_the_stacks_port_keys_schema_and_the_monitors_record(
    ragbus_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MONITOR_DB_SCHEMA", "GATEWAY_DB_SCHEMA", "RAGBUS_GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONITOR_DATABASE_URL", "postgresql://app@db:5432/app")
    env = services_env(StackSettings(), tmp_path)
    assert env["GATEWAY_PORT"] == "8090"
    assert env["GATEWAY_DATABASE_URL"] == "postgresql://app@db:5432/app"
    assert env["GATEWAY_DB_SCHEMA"] == monitor_schema_for(ragbus_home) + "_gateway"
    assert env["GATEWAY_MONITOR_SCHEMA"] == env["MONITOR_DB_SCHEMA"] == monitor_schema_for(ragbus_home)
    monkeypatch.setenv("RAGBUS_GATEWAY_PORT", "18090")
    monkeypatch.setenv("GATEWAY_DB_SCHEMA", "keys")
    env = services_env(StackSettings(), tmp_path)
    assert (env["GATEWAY_PORT"], env["GATEWAY_DB_SCHEMA"]) == ("18090", "keys")


def test_the_monitor_signs_with_a_key_of_the_stacks_own_kept_across_restarts(
    ragbus_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MONITOR_AUDIT_KEY", "MONITOR_AUDIT_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    key_file = Path(services_env(StackSettings(), tmp_path)["MONITOR_AUDIT_KEY_FILE"])
    assert key_file == ragbus_home / "audit.key"
    key = key_file.read_text()
    assert len(key.strip()) == 64
    assert key_file.stat().st_mode & 0o777 == 0o600
    services_env(StackSettings(), tmp_path)
    assert key_file.read_text() == key  # made once
    monkeypatch.setenv("MONITOR_AUDIT_KEY", "the operator's own")
    assert "MONITOR_AUDIT_KEY_FILE" not in services_env(StackSettings(), tmp_path)


# --- a failed `up` ----------------------------------------------------------------------------------


def run_up(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "RAGBUS_", "MONITOR_"))}
    return subprocess.run(
        [sys.executable, "-c", "from ragbus.stack.cli import up; up()", *args],
        env={**clean, "RAGBUS_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_up_with_a_kafka_bootstrap_nobody_answers_fails_in_one_line_before_starting_anything(
    ragbus_home: Path,
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    result = run_up(ragbus_home, "--detach", KAFKA_BOOTSTRAP=bootstrap, RAGBUS_BROKER_PORT="19092")
    assert result.returncode == 1
    assert result.stdout == f"ragbus up (RAGBUS_HOME={ragbus_home})\n"  # not even PostgreSQL was touched
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"ragbus: error: no Kafka broker answers at KAFKA_BOOTSTRAP={bootstrap} (cannot connect"
    )
    assert line.endswith("start it, or unset KAFKA_BOOTSTRAP and `ragbus up` starts its own on port 19092")
    assert not list(ragbus_home.glob("run/*.pid"))  # no broker, no model server, no services


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("broker_before", [False, True], ids=["started-by-up", "running-before"])
async def test_a_failed_up_stops_what_it_started_and_only_that(
    ragbus_home: Path, database_url: str, busy_port: int, broker_before: bool
) -> None:
    if not (await postgres_status(database_url)).up:
        pytest.skip(f"PostgreSQL not reachable at {database_url}")
    port = free_port()
    before = await broker_process(port=port, home=ragbus_home).start(detach=True) if broker_before else None
    try:
        # The broker on RAGBUS_BROKER_PORT starts (or is reused); the services cannot: their health
        # port is taken.
        result = await asyncio.to_thread(
            run_up,
            ragbus_home,
            "--detach",
            "--no-model",
            RAGBUS_BROKER_PORT=str(port),
            RAGBUS_HEALTH_PORT=str(busy_port),
            MONITOR_DATABASE_URL=database_url,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"broker       ready    127.0.0.1:{port}  pid " in result.stdout
        assert result.stderr == (
            f"ragbus: error: services: port {busy_port} on 127.0.0.1 is already in use by a process ragbus "
            "did not start; stop it or choose another port (RAGBUS_HEALTH_PORT)\n"
        )
        broker = broker_handle(port, home=ragbus_home)
        if broker_before:
            assert before is not None
            assert broker.running_pid() == before.pid  # it ran before this `up`: left alone
            assert "started by this failed" not in result.stdout
        else:
            assert broker.running_pid() is None
            assert "  broker       stopped  pid " in result.stdout
            assert "started by this failed `ragbus up`" in result.stdout
    finally:
        await broker_handle(port, home=ragbus_home).stop(grace_s=5.0)


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_up_with_the_gateway_port_taken_says_so_and_stops_what_it_started(
    ragbus_home: Path, database_url: str, busy_port: int
) -> None:
    if not (await postgres_status(database_url)).up:
        pytest.skip(f"PostgreSQL not reachable at {database_url}")
    port = free_port()
    try:
        result = await asyncio.to_thread(
            run_up,
            ragbus_home,
            "--detach",
            "--no-model",
            RAGBUS_BROKER_PORT=str(port),
            RAGBUS_HEALTH_PORT=str(free_port()),
            RAGBUS_GATEWAY_PORT=str(busy_port),
            MONITOR_DATABASE_URL=database_url,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr == (
            f"ragbus: error: gateway: port {busy_port} on 127.0.0.1 is already in use by another process; "
            "stop it or choose another port (RAGBUS_GATEWAY_PORT)\n"
        )
        assert broker_handle(port, home=ragbus_home).running_pid() is None  # started by it, stopped
    finally:
        await broker_handle(port, home=ragbus_home).stop(grace_s=5.0)


# --- `down` and what the in-memory broker still holds ----------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_down_says_how_many_queued_events_are_lost_with_the_broker(
    ragbus_home: Path, down_database: str
) -> None:
    running = await broker_process(port=free_port(), home=ragbus_home).start(detach=False)
    kafka = KafkaSettings(bootstrap=running.address)
    t = Topics()
    await ensure_topics(kafka, t.all_with_dlq)
    producer = AIOKafkaProducer(bootstrap_servers=running.address)
    await producer.start()
    # Partition 0 of topics that have several (KAFKA_PARTITIONS): the offsets committed below are its.
    for _ in range(5):
        await producer.send_and_wait(t("docs.submitted.v1"), b"{}", partition=0)
    for _ in range(2):
        await producer.send_and_wait(t("answers.completed.v1"), b"{}", partition=0)
    await producer.stop()
    # ingest processed 2 of the 5 documents, the monitor all of them; nobody read the answers yet.
    for group, done in (("ragbus-ingest", 2), ("ragbus-monitor", 5)):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=running.address, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        consumer.assign([TopicPartition(t("docs.submitted.v1"), 0)])
        await consumer.commit({TopicPartition(t("docs.submitted.v1"), 0): done})
        await consumer.stop()

    result = await asyncio.to_thread(CliRunner().invoke, cli.down, [])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[3] == (
        "  broker: 5 queued events no service has processed go with the broker (it keeps them in memory "
        "only): docs.submitted.v1 3 (ingest), answers.completed.v1 2 (unread); the next `ragbus up` "
        "re-drives the submissions among them from the monitor's record (`ragbus journal`)"
    )
    assert lines[4] == f"  broker: stopped (pid {running.pid})"


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_down_says_nothing_of_a_backlog_when_nothing_is_queued(
    ragbus_home: Path, down_database: str
) -> None:
    running = await broker_process(port=free_port(), home=ragbus_home).start(detach=False)
    result = await asyncio.to_thread(CliRunner().invoke, cli.down, [])
    assert result.output.splitlines()[3] == f"  broker: stopped (pid {running.pid})"
