"""The micro-batcher: concurrent callers share model calls, each gets its own vectors, in order, and a
failure stays with the caller whose passages caused it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ragbus.vectors.batching import BatchingEmbedder, lane
from ragbus.vectors.errors import InputRejected
from ragbus.vectors.testing import HashingEmbedder


class SlowModel(HashingEmbedder):
    """A model that takes `seconds` a call and refuses any passage containing "poison"."""

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__(dim=16)
        self.seconds = seconds

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(self.seconds)
        if any("poison" in t for t in texts):
            self.calls.append(list(texts))
            raise InputRejected("a passage the model refuses")
        return await super().embed_documents(texts)


async def busy(max_batch: int) -> tuple[SlowModel, BatchingEmbedder, asyncio.Task[list[list[float]]]]:
    """A batcher whose model is running a first call (50 ms): what comes next queues for the next."""
    model = SlowModel(seconds=0.05)
    batcher = BatchingEmbedder(model, max_batch=max_batch, linger=0.0)
    running = asyncio.create_task(batcher.embed_documents(["keeps the model busy"]))
    await asyncio.sleep(0.01)
    return model, batcher, running


def docs(n: int, words: int = 2) -> list[list[str]]:
    return [[f"document {d} chunk {c}" for c in range(words)] for d in range(n)]


async def test_concurrent_callers_share_model_calls_and_get_their_own_vectors() -> None:
    model = SlowModel()
    batcher = BatchingEmbedder(model, max_batch=8, linger=0.05)
    parts = docs(8)  # 16 passages from 8 callers: two calls of 8
    results = await asyncio.gather(*(batcher.embed_documents(p) for p in parts))
    assert [len(call) for call in model.calls] == [8, 8]
    for part, vectors in zip(parts, results, strict=True):
        assert vectors == [model.vector(t) for t in part]
    assert (batcher.calls, batcher.passages) == (2, 16)
    await batcher.aclose()


async def test_a_lone_caller_waits_only_the_linger() -> None:
    model = SlowModel()
    batcher = BatchingEmbedder(model, max_batch=64, linger=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batcher.embed_documents(["one chunk"])
    waited = loop.time() - started
    assert 0.015 <= waited < 1.0  # it lingered (for company that never came), then went alone
    assert model.calls == [["one chunk"]]
    await batcher.aclose()


async def test_while_the_model_runs_the_next_batch_fills_up() -> None:
    model = SlowModel(seconds=0.05)
    batcher = BatchingEmbedder(model, max_batch=100, linger=0.0)
    first = asyncio.create_task(batcher.embed_documents(["first"]))
    await asyncio.sleep(0.01)  # the first call is running now
    rest = [asyncio.create_task(batcher.embed_documents([f"later {n}"])) for n in range(5)]
    await asyncio.gather(first, *rest)
    assert model.calls == [["first"], [f"later {n}" for n in range(5)]]
    await batcher.aclose()


async def test_a_request_larger_than_a_batch_goes_whole_and_alone() -> None:
    model = SlowModel()
    batcher = BatchingEmbedder(model, max_batch=3, linger=0.01)
    big, small = [f"big {n}" for n in range(5)], ["small"]
    vectors = await asyncio.gather(batcher.embed_documents(big), batcher.embed_documents(small))
    assert model.calls == [big, small]
    assert [len(v) for v in vectors] == [5, 1]
    await batcher.aclose()


async def test_one_callers_refused_passage_fails_that_caller_only() -> None:
    model = SlowModel()
    batcher = BatchingEmbedder(model, max_batch=16, linger=0.05)
    good, bad, other = ["fine text", "more text"], ["poison pill"], ["also fine"]
    outcomes = await asyncio.gather(
        batcher.embed_documents(good),
        batcher.embed_documents(bad),
        batcher.embed_documents(other),
        return_exceptions=True,
    )
    assert outcomes[0] == [model.vector(t) for t in good]
    assert isinstance(outcomes[1], InputRejected)
    assert outcomes[2] == [model.vector(t) for t in other]
    # The mixed batch failed, then each caller went alone: only the poisoned one failed again.
    assert model.calls[0] == good + bad + other
    assert model.calls[1:] == [good, bad, other]
    await batcher.aclose()


async def test_a_cancelled_caller_is_left_out_of_the_call() -> None:
    model, batcher, running = await busy(max_batch=100)
    gone = asyncio.create_task(batcher.embed_documents(["cancelled"]))
    kept = asyncio.create_task(batcher.embed_documents(["kept"]))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(running, kept)
    assert model.calls == [["keeps the model busy"], ["kept"]]
    await batcher.aclose()


async def test_closing_fails_the_waiting_callers_and_closes_the_model() -> None:
    closed: list[bool] = []

    class Model(SlowModel):
        async def aclose(self) -> None:
            closed.append(True)

    batcher = BatchingEmbedder(Model(seconds=0.05), max_batch=100, linger=0.0)
    in_flight = asyncio.create_task(batcher.embed_documents(["running"]))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(batcher.embed_documents(["waiting"]))
    await asyncio.sleep(0)
    await batcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    with pytest.raises(asyncio.CancelledError):
        await in_flight  # the call in flight is cancelled with it
    assert closed == [True]


def test_a_batch_holds_at_least_one_passage() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        BatchingEmbedder(HashingEmbedder(), max_batch=0)


async def test_lanes_take_turns_in_each_call() -> None:
    """A bulk load queued in one lane does not put another lane's request behind all of it."""
    model, batcher, running = await busy(max_batch=4)
    with lane("tenant-a"):
        bulk = [asyncio.create_task(batcher.embed_documents([f"a{n}", f"a{n}'"])) for n in range(6)]
    await asyncio.sleep(0)
    with lane("tenant-b"):
        other = asyncio.create_task(batcher.embed_documents(["b0"]))
    await asyncio.sleep(0)
    results = await asyncio.gather(running, other, *bulk)
    # The next call after the busy one: A's oldest, B's (its first turn), then A's next does not fit.
    assert model.calls[1] == ["a0", "a0'", "b0"]
    pairs = [[f"a{n}", f"a{n}'", f"a{n + 1}", f"a{n + 1}'"] for n in (1, 3)]
    assert model.calls[2:] == [*pairs, ["a5", "a5'"]]
    assert results[1] == [model.vector("b0")]
    assert results[2:] == [[model.vector(f"a{n}"), model.vector(f"a{n}'")] for n in range(6)]
    await batcher.aclose()


async def test_without_lanes_callers_go_in_the_order_they_came() -> None:
    model, batcher, running = await busy(max_batch=4)
    first = [asyncio.create_task(batcher.embed_documents([f"x{n}", f"x{n}'"])) for n in range(3)]
    late = asyncio.create_task(batcher.embed_documents(["late"]))
    await asyncio.gather(running, late, *first)
    assert model.calls[1:] == [["x0", "x0'", "x1", "x1'"], ["x2", "x2'", "late"]]
    await batcher.aclose()


class CountingModel(SlowModel):
    """A SlowModel that records how many of its calls ran at once, and each call's passages as it starts."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.started: list[list[str]] = []
        self.running = 0
        self.most = 0

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.started.append(list(texts))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            return await super().embed_documents(texts)
        finally:
            self.running -= 1


async def test_a_full_batch_queues_behind_the_running_call_and_a_partial_one_waits() -> None:
    model = CountingModel(seconds=0.05)
    batcher = BatchingEmbedder(model, max_batch=2, linger=0.0, in_flight=2)
    first = asyncio.create_task(batcher.embed_documents(["first"]))
    await asyncio.sleep(0.01)  # the first call is running
    full = asyncio.create_task(batcher.embed_documents(["full 1", "full 2"]))
    await asyncio.sleep(0.01)
    # The full batch went out beside the running call: the model has its next call ready.
    assert model.started == [["first"], ["full 1", "full 2"]]
    partial = asyncio.create_task(batcher.embed_documents(["partial"]))
    await asyncio.sleep(0.01)
    # Two calls out is the limit, and a partial batch never goes out while the model is busy.
    assert len(model.started) == 2
    results = await asyncio.gather(first, full, partial)
    assert model.started[2] == ["partial"]
    assert model.most == 2
    assert list(results) == [
        [model.vector("first")],
        [model.vector("full 1"), model.vector("full 2")],
        [model.vector("partial")],
    ]
    await batcher.aclose()


async def test_a_partial_batch_goes_out_while_the_model_has_room_for_it() -> None:
    """A model of two processes (`parallel=2`) running one call gets the next partial batch at once,
    rather than idling a process until the batch is full; a third call out must be full."""
    model = CountingModel(seconds=0.2)
    batcher = BatchingEmbedder(model, max_batch=4, linger=0.0, in_flight=3, parallel=2)
    first = asyncio.create_task(batcher.embed_documents(["first"]))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(batcher.embed_documents(["second"]))
    await asyncio.sleep(0.01)
    assert model.started == [["first"], ["second"]]  # partial, beside the running call
    third = asyncio.create_task(batcher.embed_documents(["third"]))
    await asyncio.sleep(0.01)
    assert len(model.started) == 2  # the model's two places are taken: a partial batch waits
    full = asyncio.create_task(batcher.embed_documents(["full 1", "full 2", "full 3"]))
    await asyncio.sleep(0.01)
    assert model.started[2] == ["third", "full 1", "full 2", "full 3"]  # full: it queues at the model
    await asyncio.gather(first, second, third, full)
    assert model.most == 3
    await batcher.aclose()


def test_the_model_never_runs_more_side_by_side_than_calls_out() -> None:
    with pytest.raises(ValueError, match="parallel"):
        BatchingEmbedder(HashingEmbedder(), parallel=0)
    assert BatchingEmbedder(HashingEmbedder(), in_flight=2, parallel=4).parallel == 2


async def test_with_one_call_in_flight_a_full_batch_waits_for_the_running_call() -> None:
    model = CountingModel(seconds=0.05)
    batcher = BatchingEmbedder(model, max_batch=2, linger=0.0)
    first = asyncio.create_task(batcher.embed_documents(["first"]))
    await asyncio.sleep(0.01)
    full = asyncio.create_task(batcher.embed_documents(["full 1", "full 2"]))
    await asyncio.sleep(0.01)
    assert model.started == [["first"]]
    await asyncio.gather(first, full)
    assert model.started == [["first"], ["full 1", "full 2"]]
    assert model.most == 1
    await batcher.aclose()


async def test_closing_cancels_every_call_in_flight() -> None:
    model = CountingModel(seconds=1.0)
    batcher = BatchingEmbedder(model, max_batch=1, linger=0.0, in_flight=2)
    calls = [asyncio.create_task(batcher.embed_documents([f"text {n}"])) for n in range(2)]
    await asyncio.sleep(0.01)
    assert model.running == 2
    await batcher.aclose()
    for call in calls:
        with pytest.raises(asyncio.CancelledError):
            await call
    assert model.running == 0


def test_at_least_one_call_is_in_flight() -> None:
    with pytest.raises(ValueError, match="in_flight"):
        BatchingEmbedder(HashingEmbedder(), in_flight=0)


async def test_while_lanes_share_the_model_calls_hold_the_shared_size() -> None:
    """While requests of more than one lane wait, a call holds at most `shared_batch` passages, so the
    other lane's part is not behind a long call of the bulk's; one lane alone fills calls of `max_batch`."""
    model = CountingModel(seconds=0.05)
    batcher = BatchingEmbedder(model, max_batch=4, shared_batch=2, linger=0.0)
    first = asyncio.create_task(batcher.embed_documents(["first"]))
    await asyncio.sleep(0.01)  # the first call is running: what comes next waits for the next
    with lane("tenant-a"):
        bulk = [asyncio.create_task(batcher.embed_documents([f"a{n}"])) for n in range(6)]
    with lane("tenant-b"):
        other = asyncio.create_task(batcher.embed_documents(["b0"]))
    results = await asyncio.gather(first, other, *bulk)
    # Two lanes waiting: a call of 2, A's oldest and B's; then A alone: calls of 4, and the rest.
    assert model.started == [["first"], ["a0", "b0"], ["a1", "a2", "a3", "a4"], ["a5"]]
    assert results[1] == [model.vector("b0")]
    assert results[2:] == [[model.vector(f"a{n}")] for n in range(6)]
    await batcher.aclose()


def test_the_shared_size_is_at_least_one_and_at_most_the_call_size() -> None:
    with pytest.raises(ValueError, match="shared_batch"):
        BatchingEmbedder(HashingEmbedder(), shared_batch=0)
    assert BatchingEmbedder(HashingEmbedder(), max_batch=8, shared_batch=64).shared_batch == 8
    assert BatchingEmbedder(HashingEmbedder(), max_batch=8).shared_batch == 8
