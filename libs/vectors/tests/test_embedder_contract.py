"""One contract for every Embedder: MiniLM (real model, marked `model`), the OpenAI-compatible adapter
against a local stub server, the hashing test double the services' component tests use, and the
micro-batcher the embed service puts in front of its model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from ragbus.vectors.adapters.minilm import MiniLMEmbedder
from ragbus.vectors.adapters.openai_embeddings import OpenAIEmbedder
from ragbus.vectors.batching import BatchingEmbedder
from ragbus.vectors.ports import Embedder
from ragbus.vectors.testing import HashingEmbedder

from .stub_openai import Stub, stub_server

TEXTS = [
    "The mitochondria is the powerhouse of the cell.",
    "Aspirin reduces the risk of heart attacks in some patients.",
    "Kafka keeps messages in partitions, in order.",
    "Sourdough is leavened by wild yeast.",
    "The Eiffel Tower is in Paris.",
]


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    with stub_server(dim=48) as s:
        yield s


@pytest.fixture(
    params=[
        "hashing",
        "batching",
        "openai",
        pytest.param("minilm", marks=pytest.mark.model),
        pytest.param("minilm-process", marks=pytest.mark.model),
    ]
)
async def embedder(request: pytest.FixtureRequest, stub: Stub) -> AsyncIterator[Embedder]:
    e: Embedder
    if request.param == "hashing":
        e = HashingEmbedder(dim=48)
    elif request.param == "batching":
        e = BatchingEmbedder(HashingEmbedder(dim=48), max_batch=2, linger=0.001)
    elif request.param == "openai":
        e = OpenAIEmbedder(model="stub-embed", base_url=stub.base_url, batch_size=2, max_retries=0)
    elif request.param == "minilm":
        e = MiniLMEmbedder(batch_size=2)
    else:
        e = MiniLMEmbedder(batch_size=2, process=True)
    await e.ping()
    yield e
    await e.aclose()


class TestEmbedderContract:
    async def test_vectors_have_the_stated_dimension_and_unit_length(self, embedder: Embedder) -> None:
        vectors = await embedder.embed_documents(TEXTS)
        assert len(vectors) == len(TEXTS)
        matrix = np.asarray(vectors)
        assert matrix.shape == (len(TEXTS), embedder.dim)
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)

    async def test_vectors_follow_the_input_order_across_batches(self, embedder: Embedder) -> None:
        together = await embedder.embed_documents(TEXTS)
        one_by_one = [(await embedder.embed_documents([t]))[0] for t in TEXTS]
        np.testing.assert_allclose(together, one_by_one, atol=1e-4)
        reversed_ = await embedder.embed_documents(list(reversed(TEXTS)))
        np.testing.assert_allclose(list(reversed(reversed_)), together, atol=1e-4)

    async def test_a_question_lands_where_the_same_text_as_a_document_does(self, embedder: Embedder) -> None:
        # MiniLM embeds questions with its int8 ONNX export: the same point, to a cosine of 0.999.
        documents = np.asarray(await embedder.embed_documents(TEXTS))
        queries = np.asarray([await embedder.embed_query(t) for t in TEXTS])
        np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
        assert min(float(q @ d) for q, d in zip(queries, documents, strict=True)) > 0.999

    async def test_no_texts_no_vectors(self, embedder: Embedder) -> None:
        assert await embedder.embed_documents([]) == []

    async def test_it_has_a_name_for_the_record(self, embedder: Embedder) -> None:
        assert embedder.name


@pytest.mark.model
async def test_minilm_scores_a_paraphrase_above_an_unrelated_sentence() -> None:
    e = MiniLMEmbedder()
    assert e.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert e.dim == 384  # known before the weights load
    query = await e.embed_query("How tall is the Eiffel Tower?")
    docs = await e.embed_documents(
        [
            "The Eiffel Tower in Paris is 330 metres high.",
            "Sourdough bread is leavened by wild yeast and lactic acid bacteria.",
            "What is the height of the tower Gustave Eiffel built?",
        ]
    )
    scores = np.asarray(docs) @ np.asarray(query)
    assert scores[0] > scores[1] + 0.3
    assert scores[2] > scores[1] + 0.3


@pytest.mark.model
async def test_minilm_is_loaded_once_per_process() -> None:
    from ragbus.vectors.adapters import minilm

    a, b = MiniLMEmbedder(), MiniLMEmbedder(batch_size=8)
    await a.ping()
    await b.ping()
    assert len([p for p in minilm._models if p == a.path]) == 1
    assert minilm._models[a.path] is minilm._models[b.path]


@pytest.mark.model
async def test_minilm_questions_take_the_onnx_path_unless_told_otherwise() -> None:
    from ragbus.vectors.adapters import minilm

    onnx, torch_only = MiniLMEmbedder(), MiniLMEmbedder(query_onnx=False)
    own_model = MiniLMEmbedder(model_path=minilm.wheel_model_path())
    assert (onnx.query_onnx, torch_only.query_onnx, own_model.query_onnx) == (True, False, False)
    question = "How tall is the Eiffel Tower?"
    [as_document] = await torch_only.embed_documents([question])
    assert await torch_only.embed_query(question) == as_document  # torch: the very same vector
    via_onnx = await onnx.embed_query(question)
    assert via_onnx != as_document
    assert float(np.dot(via_onnx, as_document)) > 0.999
    assert onnx.path in minilm._query_encoders


@pytest.mark.model
async def test_minilm_in_a_worker_process_gives_the_vectors_of_the_model_in_process() -> None:
    in_process, worker = MiniLMEmbedder(), MiniLMEmbedder(process=True, batch_size=2)
    np.testing.assert_allclose(
        await worker.embed_documents(TEXTS), await in_process.embed_documents(TEXTS), atol=1e-5
    )


def test_the_model_runs_in_two_processes_sharing_the_cores_unless_told_otherwise() -> None:
    from ragbus.vectors.adapters.minilm import worker_layout

    assert worker_layout(cores=2) == (2, 1)
    assert worker_layout(cores=8) == (2, 4)  # never more torch threads than cores in all
    assert worker_layout(cores=1) == (1, 0)  # one process: torch's own default
    assert worker_layout(processes=3, cores=2) == (3, 1)
    assert worker_layout(processes=1, cores=8) == (1, 0)
    assert worker_layout(processes=2, threads=3, cores=2) == (2, 3)  # set: as set
    assert MiniLMEmbedder(process=False, processes=4).calls_at_once == 1  # in process: one torch


@pytest.mark.model
async def test_two_model_processes_run_jobs_side_by_side_and_keep_the_order() -> None:
    import asyncio
    import multiprocessing

    from ragbus.vectors.adapters import minilm

    # Jobs of 2 texts: 13 jobs out at once for the pool to share out.
    e = MiniLMEmbedder(process=True, processes=2, threads=1, batch_size=2)
    alone = MiniLMEmbedder(process=True, processes=1, threads=1, batch_size=2)
    assert e.calls_at_once == 2
    texts = [f"{text} ({n})" for n in range(5) for text in TEXTS][:25]
    try:
        await e.ping()  # starts both, each loading the model
        pool = minilm._workers[(e.path, 1, 2)]
        assert len(pool.pids()) == 2
        np.testing.assert_allclose(
            await e.embed_documents(texts), await alone.embed_documents(texts), atol=1e-5
        )
        # Two jobs at once run in the two processes, not one after the other in one: each waits for the
        # other to be running (a lone job would time out at the barrier).
        with multiprocessing.get_context("spawn").Manager() as manager:
            barrier = manager.Barrier(2)
            turns = await asyncio.gather(*(pool.run(barrier.wait, 10) for _ in range(2)))
        assert sorted(turns) == [0, 1]
    finally:
        await minilm._workers.pop((e.path, 1, 2)).aclose()


@pytest.mark.model
async def test_a_health_check_of_running_model_workers_sends_them_no_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ping that queued a job behind a bulk load's calls took as long as they did to answer."""
    import os
    import signal
    from typing import Any

    from ragbus.vectors.adapters import minilm
    from ragbus.vectors.errors import EmbedderUnavailable

    e = MiniLMEmbedder(process=True, processes=1, threads=2)  # a worker of its own
    try:
        await e.ping()
        pool = minilm._workers[(e.path, 2, 1)]
        jobs: list[Any] = []
        run = pool.run

        async def record(fn: Any, *args: Any) -> Any:
            jobs.append(fn)
            return await run(fn, *args)

        monkeypatch.setattr(pool, "run", record)
        await e.ping()
        assert jobs == []
        # A worker that died is started, and loads the model, again on the next ping.
        [pid] = pool.pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EmbedderUnavailable):
            await e.embed_documents(TEXTS[:1])
        await e.ping()
        assert len(jobs) == 2  # the job that found it dead, then the ping's
        assert pool.pids() != [pid]
    finally:
        await minilm._workers.pop((e.path, 2, 1)).aclose()


@pytest.mark.model
async def test_a_dead_model_worker_fails_its_job_as_retryable_and_the_next_job_starts_another() -> None:
    import os
    import signal

    from ragbus.vectors.adapters import minilm
    from ragbus.vectors.errors import EmbedderUnavailable

    # A torch thread count of its own: a worker no other test shares.
    e = MiniLMEmbedder(process=True, threads=1, processes=1)
    await e.ping()
    pool = minilm._workers[(e.path, 1, 1)]
    [pid] = pool.pids()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(EmbedderUnavailable, match="worker process died"):
        await e.embed_documents(TEXTS[:1])
    [vector] = await e.embed_documents(TEXTS[:1])
    assert len(vector) == e.dim
    assert pool.pids()
    assert pool.pids() != [pid]


@pytest.mark.model
async def test_the_model_worker_lets_its_waiting_threads_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spinning OpenMP threads took the cores of a busy machine from the model itself (half its speed)."""
    import os

    from ragbus.vectors.adapters import minilm

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    # A worker of its own, started under this environment.
    e = MiniLMEmbedder(process=True, threads=3, processes=1)
    try:
        await e.ping()
        pool = minilm._workers[(e.path, 3, 1)]
        # Set by the worker itself before it loaded torch (its OpenMP reads it once, when it loads).
        assert await pool.run(os.getenv, "OMP_WAIT_POLICY") == "PASSIVE"
    finally:
        await minilm._workers.pop((e.path, 3, 1)).aclose()


_ORPHAN = """
import asyncio, os, sys
from ragbus.vectors.adapters import minilm

async def main():
    e = minilm.MiniLMEmbedder(process=True, query_onnx=False, processes=1)
    await e.ping()
    [pid] = minilm._workers[(e.path, e.threads, e.processes)].pids()
    print("worker", pid, flush=True)
    await asyncio.sleep(600)

if __name__ == "__main__":
    asyncio.run(main())
"""


@pytest.mark.model
def test_the_model_worker_leaves_when_its_parent_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        # The worker's log lines come first on the same output.
        line = ""
        while not line.startswith("worker "):
            line = parent.stdout.readline()
            assert line, "the parent exited before it started its worker"
        worker = int(line.split()[1])
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a speed claim
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:

    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
