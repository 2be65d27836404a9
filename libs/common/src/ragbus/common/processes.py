"""Worker processes for a service's CPU-bound work, so that its event loop keeps the GIL.

A service's handlers share one process and one GIL: Python work in a thread (parsing, tokenizing,
hashing) holds the GIL from the event loop that feeds every handler, so the process tops out at one
core however many it has. `WorkerPool` runs such work in spawned processes instead (spawned, not
forked: the parent has threads, which a fork would copy in whatever state they are).

Each worker builds what it needs once (`initializer`, e.g. loading a tokenizer and models) and leaves
when its parent dies: the pool's own queue never tells a worker that its parent was killed (SIGKILL,
OOM), and it would wait for jobs forever, holding its memory. A worker that dies breaks the pool: the
jobs it held fail with WorkerDied and the next job starts new workers. WorkerDied is not a retryable
outage: a document that kills its worker (a parser that crashes, memory it exhausts) kills the next one
too, so the message is retried as an unclassified error, a few times, then dead-lettered, while a
worker killed from outside costs one retry. What a job takes and returns crosses a pipe pickled, so
jobs are module-level functions of picklable arguments.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ragbus.common.errors import RagbusError
from ragbus.common.logging import get_logger

T = TypeVar("T")
_PR_SET_NAME = 15  # prctl(2)
log = get_logger("ragbus.processes")


class WorkerDied(RagbusError):
    """A worker process died while it held the job (killed, out of memory, a crash in native code)."""


class WorkerPool:
    """`processes` spawned workers running jobs for one service; started by the first job or `ping`."""

    def __init__(
        self,
        name: str,
        processes: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if processes < 1:
            raise ValueError("a worker pool needs at least one process")
        self.name = name
        self.processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._pool: ProcessPoolExecutor | None = None
        self._started = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WorkerPool({self.name!r}, processes={self.processes})"

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._started = False
                self._pool = ProcessPoolExecutor(
                    max_workers=self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start,
                    initargs=(f"ragbus-{self.name}", os.getpid(), self._initializer, self._initargs),
                )
            return self._pool

    def _forget(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker. Its own exceptions come back as raised; a worker that dies is
        WorkerDied (and so is one that cannot start or cannot read the job)."""
        pool = self._executor()
        try:
            return await asyncio.wrap_future(pool.submit(fn, *args))
        except BrokenProcessPool as exc:
            self._forget(pool)
            log.warning("worker process died", pool=self.name, error=str(exc))
            raise WorkerDied(f"a {self.name} worker process died: {exc}") from exc

    async def ping(self) -> None:
        """Starts the workers if they are not running (their initializer runs before the first job), so
        the first message does not wait for them; raises WorkerDied if they cannot start.
        Once they run it returns at once: a health check must not queue behind a bulk load's jobs (a
        worker that dies is replaced by the next job)."""
        if self._pool is not None and self._started:
            return
        await asyncio.gather(*(self.run(_ready) for _ in range(self.processes)))
        self._started = True

    def pids(self) -> list[int]:
        """The worker processes running now (none before the first job or ping)."""
        pool = self._pool
        processes = dict(getattr(pool, "_processes", None) or {})  # the executor keeps them by pid
        return sorted(processes)

    async def aclose(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            # Off the loop: shutdown joins the workers, which finish the jobs they hold first.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def _start(
    title: str, parent: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    """In a worker: name it, watch the parent, then build what the jobs need."""
    _set_process_name(title)
    leave_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or `taskset`'s share), not
    the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def leave_with_parent(parent: int) -> None:
    """In a worker process: exit once `parent` is gone (the worker is re-parented). A process pool's
    queue never tells a worker that its parent was killed (SIGKILL, OOM): it holds both ends of it and
    would wait for jobs forever, holding its memory."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="worker-parent-watch", daemon=True).start()


def _set_process_name(title: str) -> None:
    """Name the process as `ps`, `top` and /proc/PID/stat show it (Linux; 15 bytes at most), so a
    worker reads as `ragbus-ingest` rather than one more `python`."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, title.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the name is cosmetic
        pass


def _ready() -> int:
    return os.getpid()
