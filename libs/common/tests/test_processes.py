"""WorkerPool: jobs run in spawned workers built by their initializer, errors come back as raised, a dead
worker is an error that is not retried forever and the next job gets a new one, and events cross to
them. The jobs are standard-library functions: a spawned worker can import those (pytest imports these
test modules by path, which a worker cannot)."""

from __future__ import annotations

import operator
import os
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragbus.common.envelope import Envelope
from ragbus.common.errors import Retryable
from ragbus.common.events import DocsSubmitted
from ragbus.common.processes import WorkerDied, WorkerPool, usable_cores


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[WorkerPool]:
    # The initializer moves each worker into tmp_path: a job that reads its working directory sees it.
    pool = WorkerPool("test", 1, initializer=os.chdir, initargs=(str(tmp_path),))
    try:
        yield pool
    finally:
        await pool.aclose()


async def test_a_job_runs_in_another_process_that_its_initializer_prepared(
    pool: WorkerPool, tmp_path: Path
) -> None:
    pid = await pool.run(os.getpid)
    assert pid != os.getpid()
    assert await pool.run(os.getcwd) == str(tmp_path)
    # Named for `ps` and `top`.
    assert _comm(pid) == "ragbus-test"
    # One worker serves every job: it is started once, not per job.
    assert await pool.run(os.getpid) == await pool.run(os.getpid)


async def test_a_jobs_own_error_comes_back_as_raised_and_the_worker_stays(pool: WorkerPool) -> None:
    pid = await pool.run(os.getpid)
    with pytest.raises(ZeroDivisionError):
        await pool.run(operator.truediv, 1, 0)
    assert await pool.run(os.getpid) == pid


async def test_a_worker_that_dies_fails_its_job_and_the_next_job_gets_a_new_one(
    pool: WorkerPool, tmp_path: Path
) -> None:
    pid = await pool.run(os.getpid)
    with pytest.raises(WorkerDied, match="test worker process died") as died:
        await pool.run(os._exit, 1)
    # Not an outage to wait out: a job that kills its worker would kill every one it is retried on.
    assert not isinstance(died.value, Retryable)
    new = await pool.run(os.getpid)
    assert new != pid
    assert await pool.run(os.getcwd) == str(tmp_path)  # built by the initializer again


async def test_ping_starts_the_workers_once(pool: WorkerPool) -> None:
    assert pool.pids() == []
    await pool.ping()
    pid = await pool.run(os.getpid)
    assert pool.pids() == [pid]
    await pool.ping()  # running: returns without queueing a job
    assert await pool.run(os.getpid) == pid


async def test_close_stops_the_workers(tmp_path: Path) -> None:
    pool = WorkerPool("test", 2)
    pids = {await pool.run(os.getpid) for _ in range(8)}
    assert pids
    assert os.getpid() not in pids
    await pool.aclose()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_an_initializer_that_fails_fails_the_job(tmp_path: Path) -> None:
    pool = WorkerPool("test", 1, initializer=os.chdir, initargs=(str(tmp_path / "missing"),))
    try:
        with pytest.raises(WorkerDied):
            await pool.ping()
    finally:
        await pool.aclose()


async def test_an_event_crosses_to_a_worker_whichever_module_made_its_class(pool: WorkerPool) -> None:
    """Pydantic names a parametrized class after the module that made it first; made here, in a test
    function, no worker could import it. The envelope pickles by its payload's class instead."""
    event = Envelope.new(DocsSubmitted(doc_id="d", text="Hello."), source="urn:test", tenant="acme")
    assert b"Envelope[" not in pickle.dumps(event)
    back = await pool.run(_identity, [event])
    assert type(back) is Envelope[DocsSubmitted]
    assert back == event
    assert back.to_bytes() == event.to_bytes()


_identity = operator.itemgetter(0)


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_a_pool_needs_a_process() -> None:
    with pytest.raises(ValueError, match="at least one process"):
        WorkerPool("test", 0)


def test_usable_cores_are_the_affinity_not_the_machines_count() -> None:
    """A container or `taskset` share: the cores this process may run on (read per thread on Linux, so a
    thread of its own narrows them without touching the test process)."""
    import threading

    seen: list[int] = []

    def narrowed() -> None:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        seen.append(usable_cores())

    thread = threading.Thread(target=narrowed)
    thread.start()
    thread.join()
    assert seen == [1]
    assert usable_cores() == len(os.sched_getaffinity(0))
