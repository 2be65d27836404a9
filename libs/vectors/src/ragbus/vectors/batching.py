"""Micro-batching across callers: an Embedder that gathers the passages of concurrent
`embed_documents` calls into one model call.

The embed service works on many small messages at once (a SciFact abstract is two or three chunks), one
worker per partition. Alone, each worker would make its own model call of two or three passages: many
small calls, each paying a thread hand-off, and for a remote model a whole HTTP round trip. Through
this batcher the workers' passages share calls of up to `max_batch` passages.

When a call goes out: as soon as `max_batch` passages wait, or when the model is free and the first
waiting passage has waited `linger` seconds. While a call runs, the next one fills up, so under load
batches are full without lingering, and a lone message waits at most `linger` for company.

Up to `in_flight` calls may be out at once. With one more than the model runs side by side, a full
next batch is already at the model (in the worker process's queue) when a running call ends: the
model starts it at once, instead of waiting for the services' event loop, busy with everything else
in the process, to get round to settling the finished call and sending the next. A call goes out less
than full only while the model has room for it (fewer than `parallel` calls running: its worker
processes): a model of two processes given one call at a time, because the next was not full yet,
left one process idle whenever fewer than two calls' worth of passages were about (a bulk load's last
partition, a small load): under bench/ingest.py the whole corpus's last ~15 s ran on one core.

Callers may name a *lane* (`with lane(tenant): ...`; the embed service names the tenant): lanes take
turns in every call, each lane's oldest request first, then each lane's next, so a bulk load of one
tenant that fills the queue does not put another tenant's part behind all of it, only beside it in the
next call. Without a lane, callers share one, in the order they came. While more than one lane waits,
calls hold at most `shared_batch` passages: a smaller call ends sooner, so another tenant's part, which
waits for the calls out before its own, is back sooner; one lane alone fills calls of `max_batch`, which
the model runs faster per passage (it sorts a call's passages by length before padding them).

A call that fails fails only its own callers: a batch that mixes callers and raises is retried one
caller at a time, so one unreadable passage (`InputRejected`) never sinks another document's chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from ragbus.common.logging import get_logger
from ragbus.vectors.ports import Embedder

log = get_logger("ragbus.vectors.batching")

_lane: ContextVar[Hashable] = ContextVar("ragbus_embed_lane", default=None)


@contextlib.contextmanager
def lane(key: Hashable) -> Iterator[None]:
    """`embed_documents` calls made inside take turns with other lanes' in a BatchingEmbedder (a
    context variable, so the Embedder port keeps its signature)."""
    token = _lane.set(key)
    try:
        yield
    finally:
        _lane.reset(token)


@dataclass(slots=True)
class _Request:
    texts: Sequence[str]
    done: asyncio.Future[list[list[float]]]
    at: float = field(default=0.0)
    lane: Hashable = None


class BatchingEmbedder:
    """An Embedder over `inner` whose document calls from concurrent callers share model calls.

    `max_batch`: passages per model call (a larger request goes alone, and `inner` splits it);
    `linger`: seconds the first waiting passage may wait for others while the model is free;
    `in_flight`: model calls out at once, those beyond `parallel` only when full;
    `parallel`: calls the model runs side by side (its worker processes), which go out as soon as the
    first waiting passage has lingered, full or not;
    `shared_batch`: passages per call while requests of more than one lane wait (default `max_batch`).
    Questions (`embed_query`) go straight to `inner`: they are latency-bound, one at a time.
    """

    def __init__(
        self,
        inner: Embedder,
        *,
        max_batch: int = 32,
        linger: float = 0.005,
        in_flight: int = 1,
        shared_batch: int | None = None,
        parallel: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        if shared_batch is not None and shared_batch < 1:
            raise ValueError("shared_batch must be at least 1")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.inner = inner
        self.max_batch = max_batch
        self.shared_batch = min(max_batch, shared_batch or max_batch)
        self.linger = max(0.0, linger)
        self.in_flight = in_flight
        self.parallel = min(parallel, in_flight)
        self._queue: list[_Request] = []
        self._waiting = 0  # passages in the queue
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()  # the model calls out now
        # What the batcher has done, for benchmarks and the log: model calls and passages sent.
        self.calls = 0
        self.passages = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(texts, loop.create_future(), loop.time(), _lane.get())
        self._queue.append(request)
        self._waiting += len(texts)
        self._ensure_runner().set()
        return await request.done

    async def embed_query(self, text: str) -> list[float]:
        return await self.inner.embed_query(text)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        tasks = [task for task in (self._runner, *self._running) if task is not None]
        self._runner, self._running = None, set()
        for task in tasks:  # the runner first: nothing new starts while the calls are cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        queue, self._queue, self._waiting = self._queue, [], 0
        for request in queue:
            _settle(request, RuntimeError("the embedder was closed"))
        await self.inner.aclose()

    def _ensure_runner(self) -> asyncio.Event:
        if self._wake is None or self._runner is None or self._runner.done():
            self._wake = asyncio.Event()
            self._runner = asyncio.create_task(self._run(self._wake), name="embed-batcher")
        return self._wake

    async def _run(self, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            while self._queue:
                limit = self._limit()
                if len(self._running) >= self.parallel:
                    # The model is busy: a full batch may queue behind its calls (up to `in_flight`);
                    # anything else waits, and fills up, until a call ends (which wakes this loop).
                    if len(self._running) >= self.in_flight or self._waiting < limit:
                        break
                elif self._waiting < limit and self.linger:
                    # The model has room and the batch is not full: give others `linger` to join.
                    left = self._queue[0].at + self.linger - loop.time()
                    if left > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), left)
                        wake.clear()
                        limit = self._limit()  # another lane may have joined while it lingered
                        if self._waiting < limit and self._queue[0].at + self.linger > loop.time():
                            continue
                self._start(self._take(limit))

    def _limit(self) -> int:
        """Passages the next call may hold (asked while requests wait): `shared_batch` while more than
        one lane waits."""
        if self.shared_batch < self.max_batch:
            first = self._queue[0].lane
            if any(request.lane != first for request in self._queue):
                return self.shared_batch
        return self.max_batch

    def _start(self, batch: list[_Request]) -> None:
        task = asyncio.create_task(self._call(batch), name="embed-call")
        self._running.add(task)

        def ended(done: asyncio.Task[None]) -> None:
            self._running.discard(done)
            if self._wake is not None:
                self._wake.set()  # the runner's, whichever runner runs now

        task.add_done_callback(ended)

    def _take(self, limit: int) -> list[_Request]:
        """Requests up to `limit` passages (at least one), lanes taking turns: every lane's oldest
        waiting request, in the order they came, then every lane's second, and so on."""
        turns: dict[Hashable, int] = {}
        order: list[tuple[int, int]] = []
        for at, request in enumerate(self._queue):
            turn = turns.get(request.lane, 0)
            turns[request.lane] = turn + 1
            order.append((turn, at))
        order.sort()
        chosen: list[int] = []
        count = 0
        for _, at in order:
            size = len(self._queue[at].texts)
            if chosen and count + size > limit:
                break
            chosen.append(at)
            count += size
        picked = set(chosen)
        taken = [self._queue[at] for at in chosen]
        self._queue = [r for at, r in enumerate(self._queue) if at not in picked]
        self._waiting -= count
        return taken

    async def _call(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.done.done()]  # a caller cancelled while it waited: skip it
        if not live:
            return
        texts = [t for r in live for t in r.texts]
        try:
            vectors = await self.inner.embed_documents(texts)
        except asyncio.CancelledError:
            for request in live:
                if not request.done.done():
                    request.done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the callers, who own the error
            if len(live) == 1:
                _settle(live[0], exc)
                return
            log.info("batch failed, retrying its callers one by one", callers=len(live), error=repr(exc))
            for request in live:
                await self._call([request])
            return
        self.calls += 1
        self.passages += len(texts)
        at = 0
        for request in live:
            _settle(request, vectors[at : at + len(request.texts)])
            at += len(request.texts)


def _settle(request: _Request, outcome: list[list[float]] | BaseException) -> None:
    if request.done.done():
        return
    if isinstance(outcome, BaseException):
        request.done.set_exception(outcome)
    else:
        request.done.set_result(outcome)
