"""ManagedProcess: pid file, readiness, reuse, stop by PID, and the errors a user sees.

A tiny TCP server written by the test stands in for the real servers, so these run in a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ragbus.stack.process import (
    KEEP_LOGS,
    LocalInfraError,
    ManagedProcess,
    NotReady,
    ProcessSpec,
    free_port,
    rotate,
)

SERVER = """
import signal, socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
print("booting", mode, flush=True)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "exit":
    print("fatal: bad configuration", flush=True)
    sys.exit(3)
if mode == "never":
    time.sleep(120)
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen()
while True:
    conn, _ = sock.accept()
    conn.close()
"""


async def tcp_probe(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except OSError as exc:
        raise NotReady(str(exc)) from None
    writer.close()


@pytest.fixture
def server_script(tmp_path: Path) -> Path:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return path


def spec(script: Path, mode: str = "serve", port: int | None = None) -> ProcessSpec:
    port = port or free_port()
    argv = (sys.executable, str(script), str(port), mode)
    return ProcessSpec("toy", argv, f"127.0.0.1:{port}", tcp_probe, port=port)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    return state != "Z"


def pids_running(script: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and str(script).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:  # exited meanwhile
            continue
    return found


async def test_start_writes_pid_and_log_under_ragbus_home_and_serves(
    ragbus_home: Path, server_script: Path
) -> None:
    proc = ManagedProcess(spec(server_script))
    running = await proc.start()
    try:
        assert running.reused is False
        assert (ragbus_home / "run" / "toy.pid").read_text().strip() == str(running.pid)
        assert json.loads((ragbus_home / "run" / "toy.json").read_text())["address"] == running.address
        assert "booting serve" in (ragbus_home / "logs" / "toy.log").read_text()
        await tcp_probe(running.address)
        status = await proc.status()
        assert (status.state, status.pid) == ("running", running.pid)
        assert status.line().startswith(f"toy: running at {running.address} (pid {running.pid}")
    finally:
        await proc.stop()


async def test_second_start_reuses_the_running_instance(ragbus_home: Path, server_script: Path) -> None:
    the_spec = spec(server_script)
    first = await ManagedProcess(the_spec).start()
    try:
        # A new object, as another `ragbus up` would make: it finds the instance through the pid file.
        second = await ManagedProcess(the_spec).start()
        assert second.reused is True
        assert second.pid == first.pid
        assert "already running" in second.line()
    finally:
        await ManagedProcess(the_spec).stop()


async def test_start_with_other_settings_names_the_running_instance(
    ragbus_home: Path, server_script: Path
) -> None:
    proc = ManagedProcess(spec(server_script))
    running = await proc.start()
    try:
        with pytest.raises(
            LocalInfraError, match=rf"already running with other settings \(pid {running.pid}"
        ):
            await ManagedProcess(spec(server_script)).start()  # another port
    finally:
        await proc.stop()


async def test_stop_kills_exactly_that_pid_and_removes_the_pid_file(
    ragbus_home: Path, server_script: Path, bystander: subprocess.Popen[bytes]
) -> None:
    proc = ManagedProcess(spec(server_script))
    running = await proc.start()
    stopped = await proc.stop()
    assert (stopped.pid, stopped.killed) == (running.pid, False)
    assert not alive(running.pid)
    assert not (ragbus_home / "run" / "toy.pid").exists()
    assert bystander.poll() is None
    assert (await proc.status()).state == "stopped"
    assert (await proc.stop()).line() == "toy: not running"


async def test_stop_escalates_to_sigkill_after_the_grace_period(
    ragbus_home: Path, server_script: Path
) -> None:
    proc = ManagedProcess(spec(server_script, "ignore-term"))
    running = await proc.start()
    stopped = await proc.stop(grace_s=0.5)
    assert stopped.killed is True
    assert not alive(running.pid)
    assert "SIGKILL" in stopped.line()


async def test_a_pid_file_naming_another_program_is_stale_and_never_signalled(
    ragbus_home: Path, server_script: Path, bystander: subprocess.Popen[bytes]
) -> None:
    the_spec = spec(server_script)
    run = ragbus_home / "run"
    run.mkdir()
    # The pid was recycled: it now runs `sleep`, not what the state file says.
    (run / "toy.pid").write_text(f"{bystander.pid}\n")
    (run / "toy.json").write_text(json.dumps({"pid": bystander.pid, "argv": list(the_spec.argv)}))
    proc = ManagedProcess(the_spec)
    status = await proc.status()
    assert status.state == "stopped"
    assert f"stale pid file for pid {bystander.pid}" in status.line()
    stopped = await proc.stop()
    assert stopped.pid is None
    assert bystander.poll() is None
    assert not (run / "toy.pid").exists()
    # And start spawns a fresh instance instead of "reusing" the stranger.
    (run / "toy.pid").write_text(f"{bystander.pid}\n")
    running = await proc.start()
    try:
        assert running.reused is False
        assert running.pid != bystander.pid
    finally:
        await proc.stop()
    assert bystander.poll() is None


async def test_a_server_that_exits_while_starting_reports_its_code_and_log(
    ragbus_home: Path, server_script: Path
) -> None:
    proc = ManagedProcess(spec(server_script, "exit"))
    with pytest.raises(LocalInfraError) as caught:
        await proc.start(timeout_s=10)
    message = str(caught.value)
    assert message.startswith("toy: exited with code 3 while starting; see ")
    assert str(ragbus_home / "logs" / "toy.log") in message
    assert "fatal: bad configuration" in message  # the log's last lines come with it
    assert not (ragbus_home / "run" / "toy.pid").exists()


async def test_readiness_timeout_points_at_the_log_and_kills_the_child(
    ragbus_home: Path, server_script: Path
) -> None:
    proc = ManagedProcess(spec(server_script, "never"))
    with pytest.raises(
        LocalInfraError, match=r"toy: not ready after 1s at 127\.0\.0\.1:\d+ \(.*\); see "
    ) as caught:
        await proc.start(timeout_s=1)
    assert str(ragbus_home / "logs" / "toy.log") in str(caught.value)
    assert [pid for pid in pids_running(server_script) if alive(pid)] == []
    assert not (ragbus_home / "run" / "toy.pid").exists()


async def test_a_port_taken_by_another_program_is_a_clear_error(
    ragbus_home: Path, server_script: Path
) -> None:
    port = free_port()
    squatter = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, str(server_script), str(port), "serve"]
    )
    try:
        for _ in range(100):  # until it listens
            try:
                await tcp_probe(f"127.0.0.1:{port}")
                break
            except NotReady:
                await asyncio.sleep(0.05)
        with pytest.raises(LocalInfraError, match=rf"toy: port {port} on 127\.0\.0\.1 is already in use"):
            await ManagedProcess(spec(server_script, port=port)).start(timeout_s=5)
        assert squatter.poll() is None
    finally:
        squatter.send_signal(signal.SIGTERM)
        squatter.wait()


def test_each_runs_log_is_kept_until_five_newer_runs_have_logged(tmp_path: Path) -> None:
    # Issue 13: one rotated file was kept, so two restarts erased the first run's log.
    log = tmp_path / "svc.log"
    for run in range(1, 8):
        rotate(log)
        log.write_text(f"run {run}\n")
    kept = {p.name: p.read_text().strip() for p in tmp_path.iterdir()}
    assert kept == {
        "svc.log": "run 7",
        **{f"svc.log.{n}": f"run {7 - n}" for n in range(1, KEEP_LOGS + 1)},
    }


async def test_the_previous_log_is_kept(ragbus_home: Path, server_script: Path) -> None:
    proc = ManagedProcess(spec(server_script))
    await proc.start()
    await proc.stop()
    await proc.start()
    await proc.stop()
    assert (ragbus_home / "logs" / "toy.log.1").read_text().startswith("booting serve")
    assert (ragbus_home / "logs" / "toy.log").read_text().startswith("booting serve")


PARENT = """
import asyncio, os, signal, sys
from ragbus.stack.process import ManagedProcess, NotReady, ProcessSpec

async def probe(address):
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except OSError as exc:
        raise NotReady(str(exc)) from None
    writer.close()

async def main():
    script, port, detach = sys.argv[1], sys.argv[2], sys.argv[3] == "detach"
    spec = ProcessSpec("toy", (sys.executable, script, port, "serve"), f"127.0.0.1:{port}", probe)
    running = await ManagedProcess(spec).start(detach=detach)
    print(running.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no finaliser, no atexit: like a test run killed by a timeout

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize(("mode", "survives"), [("attach", False), ("detach", True)])
async def test_an_attached_server_dies_with_a_killed_parent_and_a_detached_one_survives(
    ragbus_home: Path, server_script: Path, mode: str, survives: bool
) -> None:
    port = free_port()
    parent = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", PARENT, str(server_script), str(port), mode],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    pid = int(parent.stdout)
    try:
        for _ in range(10 if survives else 50):
            if not alive(pid):
                break
            await asyncio.sleep(0.1)
        assert alive(pid) is survives
    finally:
        if alive(pid):
            await ManagedProcess(spec(server_script, port=port)).stop()
