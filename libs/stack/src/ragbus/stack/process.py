"""Local servers as managed child processes: pid file, log file, readiness wait, stop by PID.

A `ManagedProcess` owns one named server (`broker`, `model`, ...) under `ragbus_home()`:
`run/<name>.pid` holds its PID (so `kill $(cat ...)` works), `run/<name>.json` the command line and
address it was started with, and `logs/<name>.log` its output. `start()` reuses a healthy instance the
pid file names, and otherwise spawns one, either detached (its own session: it outlives the caller, as
`ragbus up` and the CLI need) or attached (it dies with the caller, as tests need). Readiness is a real
round trip through the server's own protocol (the `probe`), never just an open port. `stop()` signals
exactly the recorded PID, and only after checking that the PID still runs the recorded command line,
so a recycled PID is never killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from ragbus.common.settings import ragbus_home

HOST = "127.0.0.1"
# Earlier runs' logs kept beside the current one (`<name>.log.1` the last run, ... `.log.5`).
KEEP_LOGS = 5


def rotate(log_file: Path, keep: int = KEEP_LOGS) -> None:
    """Make room for a new run's log: `.log.4` becomes `.log.5` (the oldest is dropped), ..., the last
    run's `.log` becomes `.log.1`. One log per run: a restart never erases an earlier run's."""
    if not log_file.exists():
        return
    for n in range(keep - 1, 0, -1):
        older = log_file.with_suffix(f".log.{n}")
        if older.exists():
            older.replace(log_file.with_suffix(f".log.{n + 1}"))
    log_file.replace(log_file.with_suffix(".log.1"))


# A probe gets the address the process serves on and returns when it answers; it raises `NotReady`
# (with the reason) while it does not.
Probe = Callable[[str], Awaitable[None]]


class LocalInfraError(RuntimeError):
    """A local server could not be started, reached or stopped; the message says what to do."""


class NotInstalledError(LocalInfraError):
    """A binary or model file is missing; the message says what to install."""


class NotReady(Exception):
    """Raised by a probe while the server does not answer yet."""


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """How to run one local server and how to tell that it serves."""

    name: str
    argv: tuple[str, ...]
    address: str  # what clients connect to, e.g. "127.0.0.1:9092" or "http://127.0.0.1:8080/v1"
    probe: Probe
    port: int | None = None  # checked free before spawning, for a clear "port in use" error
    env: Mapping[str, str] = field(default_factory=dict)  # added to the caller's environment
    ready_timeout_s: float = 30.0
    stop_grace_s: float = 10.0
    stop_hint: str | None = None  # the command that stops it, for messages
    port_hint: str = "--port"  # how to choose another port, for messages


@dataclass(frozen=True, slots=True)
class Running:
    name: str
    pid: int
    address: str
    reused: bool
    log_file: Path | None  # None when it logs to the terminal
    ready_after_s: float

    def line(self) -> str:
        how = "already running" if self.reused else f"started in {self.ready_after_s:.1f}s"
        log = f", log {self.log_file}" if self.log_file else ""
        return f"{self.name}: {how} at {self.address} (pid {self.pid}{log})"


State = Literal["running", "unhealthy", "stopped"]


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    state: State
    pid: int | None
    address: str | None
    log_file: Path
    detail: str = ""

    def line(self) -> str:
        if self.state == "stopped":
            return f"{self.name}: stopped" + (f" ({self.detail})" if self.detail else "")
        text = f"{self.name}: {self.state} at {self.address} (pid {self.pid}, log {self.log_file})"
        return text + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True, slots=True)
class Stopped:
    name: str
    pid: int | None
    killed: bool = False  # True when SIGTERM was not enough
    detail: str = ""

    def line(self) -> str:
        if self.pid is None:
            return f"{self.name}: not running" + (f" ({self.detail})" if self.detail else "")
        how = "killed (SIGKILL after the grace period)" if self.killed else "stopped"
        return f"{self.name}: {how} (pid {self.pid})"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = HOST) -> bool:
    # Bind with SO_REUSEADDR like the servers do, so sockets lingering in TIME_WAIT don't count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
        return False


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16_384))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


_HAS_PROC = Path("/proc/self/cmdline").exists()


def _cmdline(pid: int) -> tuple[str, ...] | None:
    """The command line of a process (empty if it is gone), or None where /proc is unavailable."""
    if not _HAS_PROC:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ()
    except PermissionError:
        return None
    return tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: look it up below
    else:
        # Our child is alive until it is reaped. Its leader shows as a zombie while its other threads
        # are still being torn down (and may hold the port): that still counts as alive.
        return done != pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    if not _HAS_PROC:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Someone else's zombie is gone once its last thread has exited (then it only waits to be reaped).
    fields = stat.rsplit(")", 1)[-1].split()
    state, threads = fields[0], int(fields[17])
    return state != "Z" or threads > 1


class ManagedProcess:
    """One named local server: start (or reuse), wait until it serves, status, stop by PID."""

    def __init__(self, spec: ProcessSpec, *, home: Path | None = None) -> None:
        self.spec = spec
        self.home = home or ragbus_home()
        self.pid_file = self.home / "run" / f"{spec.name}.pid"
        self.state_file = self.home / "run" / f"{spec.name}.json"
        self.log_file = self.home / "logs" / f"{spec.name}.log"
        self._lock_file = self.home / "run" / f"{spec.name}.lock"
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    # -- the pid file ------------------------------------------------------------------------------

    def _recorded(self) -> tuple[int | None, dict[str, object]]:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None, {}
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = {}
        if not isinstance(state, dict) or state.get("pid") != pid:
            state = {}
        return pid, state

    def _is_ours(self, pid: int, state: Mapping[str, object]) -> bool:
        """Whether `pid` is alive and still the process the pid file describes (not a recycled PID)."""
        if not _alive(pid):
            return False
        argv = state.get("argv")
        cmdline = _cmdline(pid)
        if cmdline is None:
            return True  # no /proc (macOS): the PID is all we know
        # Without the state file we cannot tell a recycled PID from ours: treat it as not ours, so
        # `stop` never signals a stranger (the server, if it is ours, keeps running unmanaged).
        return isinstance(argv, list) and cmdline == tuple(argv)

    def running_pid(self) -> int | None:
        """The PID of the running instance the pid file names, if any."""
        pid, state = self._recorded()
        return pid if pid is not None and self._is_ours(pid, state) else None

    def _write_pid(self, pid: int) -> None:
        state = {
            "pid": pid,
            "argv": list(self.spec.argv),
            "address": self.spec.address,
            "log": str(self.log_file),
            "started_at": time.time(),
        }
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_file)
        tmp = self.pid_file.with_suffix(".pid.tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.pid_file)

    def _forget(self) -> None:
        for path in (self.pid_file, self.state_file):
            path.unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def _locked(self, timeout_s: float) -> AsyncIterator[None]:
        """Serialise start/stop of this name across processes (two `start`s must not spawn two)."""
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_file.open("a") as lock:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LocalInfraError(
                            f"{self.name}: another ragbus process is starting or stopping it "
                            f"(lock {self._lock_file}); try again"
                        ) from None
                    await asyncio.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- start -------------------------------------------------------------------------------------

    async def start(
        self, *, detach: bool = False, log_to_terminal: bool = False, timeout_s: float | None = None
    ) -> Running:
        """Reuse the healthy instance the pid file names, or spawn one and wait until it serves.

        `detach=True` runs it in its own session so it outlives this process; otherwise it is
        stopped when this process dies (Linux) and the caller should `stop()` it. On a failed start the
        spawned process is stopped again and the error names the log file.
        """
        timeout_s = self.spec.ready_timeout_s if timeout_s is None else timeout_s
        t0 = time.monotonic()
        async with self._locked(timeout_s):
            pid, state = self._recorded()
            if pid is not None and self._is_ours(pid, state):
                return await self._reuse(pid, state, timeout_s, t0)
            self._forget()  # stale: the process is gone, or the PID now belongs to another program
            if self.spec.port is not None and port_in_use(self.spec.port):
                raise LocalInfraError(
                    f"{self.name}: port {self.spec.port} on {HOST} is already in use by a process "
                    f"ragbus did not start; stop it or choose another port ({self.spec.port_hint})"
                )
            child = self._spawn(detach=detach, log_to_terminal=log_to_terminal)
            self._write_pid(child.pid)
        try:
            await self._wait_ready(self.spec.address, timeout_s, child)
        except BaseException:
            await self.stop(grace_s=2.0)
            raise
        log = None if log_to_terminal else self.log_file
        return Running(self.name, child.pid, self.spec.address, False, log, time.monotonic() - t0)

    async def _reuse(self, pid: int, state: Mapping[str, object], timeout_s: float, t0: float) -> Running:
        argv = state.get("argv")
        if isinstance(argv, list) and tuple(argv) != self.spec.argv:
            raise LocalInfraError(
                f"{self.name}: already running with other settings (pid {pid}, at {state.get('address')}); "
                f"use it, or stop it first" + (f" ({self.spec.stop_hint})" if self.spec.stop_hint else "")
            )
        address = str(state.get("address") or self.spec.address)
        # It may have been started a moment ago by another process: give it the same time to get ready.
        await self._wait_ready(address, timeout_s, None, pid=pid)
        return Running(self.name, pid, address, True, self.log_file, time.monotonic() - t0)

    def _spawn(self, *, detach: bool, log_to_terminal: bool) -> subprocess.Popen[bytes]:
        argv = list(self.spec.argv)
        if not detach and sys.platform == "linux" and (setpriv := shutil.which("setpriv")):
            # Attached children die with us even on SIGKILL or os._exit (a test run killed by its
            # timeout). setpriv sets PR_SET_PDEATHSIG and execs, so the PID and cmdline stay the
            # server's own; it avoids a preexec_fn, which is unsafe in a threaded parent.
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        out: IO[bytes] | None = None
        if not log_to_terminal:
            rotate(self.log_file)
            out = self.log_file.open("ab")
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                env={**os.environ, **self.spec.env},
                cwd=self.home,
                # Always its own process group: a Ctrl-C meant for the caller reaches only the caller,
                # which then stops the server in order (attached ones still die with it, see above).
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LocalInfraError(f"{self.name}: cannot run {argv[0]}: {exc}") from exc
        finally:
            if out is not None:
                out.close()
        self._child = child
        return child

    async def _wait_ready(
        self, address: str, timeout_s: float, child: subprocess.Popen[bytes] | None, *, pid: int | None = None
    ) -> None:
        deadline = time.monotonic() + timeout_s
        reason = "no answer yet"
        delay = 0.02  # Tansu serves within ~50 ms: poll fast at first, then back off
        while True:
            if child is not None and (code := child.poll()) is not None:
                raise LocalInfraError(
                    f"{self.name}: exited with code {code} while starting; see {self.log_file}"
                    + self._log_excerpt()
                )
            if pid is not None and not _alive(pid):
                raise LocalInfraError(f"{self.name}: pid {pid} exited while starting; see {self.log_file}")
            try:
                await asyncio.wait_for(self.spec.probe(address), timeout=max(1.0, min(10.0, timeout_s)))
                return
            except NotReady as exc:
                reason = str(exc) or reason
            except TimeoutError:
                reason = "the readiness check timed out"
            if time.monotonic() > deadline:
                raise LocalInfraError(
                    f"{self.name}: not ready after {timeout_s:.0f}s at {address} ({reason}); "
                    f"see {self.log_file}" + self._log_excerpt()
                )
            await asyncio.sleep(delay)
            delay = min(0.25, delay * 1.5)

    def _log_excerpt(self) -> str:
        text = tail(self.log_file)
        return f"\n--- last lines of {self.log_file} ---\n{text}" if text else ""

    # -- status, stop, wait ------------------------------------------------------------------------

    async def status(self) -> Status:
        pid, state = self._recorded()
        if pid is None:
            return Status(self.name, "stopped", None, None, self.log_file)
        if not self._is_ours(pid, state):
            return Status(self.name, "stopped", None, None, self.log_file, f"stale pid file for pid {pid}")
        address = str(state.get("address") or self.spec.address)
        try:
            await asyncio.wait_for(self.spec.probe(address), timeout=5.0)
        except NotReady as exc:
            return Status(self.name, "unhealthy", pid, address, self.log_file, str(exc))
        except TimeoutError:
            return Status(self.name, "unhealthy", pid, address, self.log_file, "the health check timed out")
        return Status(self.name, "running", pid, address, self.log_file)

    async def stop(self, *, grace_s: float | None = None) -> Stopped:
        """SIGTERM the recorded PID, SIGKILL it after the grace period, and remove the pid file.

        Nothing is signalled unless the PID still runs the recorded command line.
        """
        grace_s = self.spec.stop_grace_s if grace_s is None else grace_s
        async with self._locked(grace_s + 10.0):
            pid, state = self._recorded()
            if pid is None:
                return Stopped(self.name, None)
            if not self._is_ours(pid, state):
                self._forget()
                return Stopped(self.name, None, detail=f"removed a stale pid file for pid {pid}")
            killed = False
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not await self._wait_exit(pid, grace_s):
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not await self._wait_exit(pid, 5.0):
                    raise LocalInfraError(f"{self.name}: pid {pid} survived SIGKILL; pid file kept")
            self._forget()
            return Stopped(self.name, pid, killed=killed)

    async def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self._child is not None and self._child.pid == pid and self._child.poll() is not None:
                return True
            if not _alive(pid):
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)

    async def wait(self) -> int | None:
        """Wait for the process this object spawned to exit; its exit code (None if not spawned here)."""
        if self._child is None:
            return None
        # Polled: Popen has no async wait, and asyncio's child watcher would tie the child to this loop.
        while (code := self._child.poll()) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        return code


def run_argv(module: str, args: Sequence[str]) -> tuple[str, ...]:
    """The command line that runs a Python module with this interpreter."""
    return (sys.executable, "-m", module, *args)
