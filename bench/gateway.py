"""The HTTP gateway's own cost and its concurrency, on loopback, with the stack replaced by an answerer
that answers at once (what is measured is the gateway, not the models).

    python bench/gateway.py [--requests 1000] [--streams 200] [--pieces 20] [--bus]

1. Overhead: sequential chat completions (an API key checked, the body parsed, the question handed to
   the answerer; the answer turned into OpenAI's JSON and sent). Reported apart: HTTP request in ->
   question handed over (`ask` called), and answer back -> response read by the client, median and
   p95 in ms. The client (httpx) runs in the same process and loop, so its own work is counted too: the
   figures are upper bounds of the gateway's.
2. Concurrency: `--streams` streaming clients at once, each answer streamed in `--pieces` pieces with a
   short pause between them; every stream must arrive whole, in order and only with its own pieces
   (each question carries a token the answerer echoes in every piece). Reports streams completed,
   dropped or crossed, the wall time and the gateway process's CPU time.

With `--bus` the gateway asks over a real broker (KAFKA_BOOTSTRAP, else a local Tansu it starts) and a
stand-in for the stack, in the same process, answers on the bus at once: the overhead then splits into
HTTP in -> `queries.submitted` acknowledged by the broker, the broker's round trip (the stand-in's
fetch, its reply, the gateway's fetch: set by KAFKA_FETCH_MAX_WAIT_MS on Tansu), and answer -> response.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from ragbus.common import topics
from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope, parse_event
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDelta,
    Cascade,
    DocsSubmitted,
    QueriesSubmitted,
    QueryOptions,
)
from ragbus.common.kafka import client_options, tail
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics
from ragbus.gateway.adapters.memory import MemoryDocumentLog, MemoryKeyStore
from ragbus.gateway.app import HttpServer
from ragbus.gateway.keys import new_key
from ragbus.gateway.ports import Answered, IndexedDocument
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps
from ragbus.gateway.web import create_web_app


class InstantAnswerer:
    """Answers at once; streams `pieces` pieces echoing the question, `pause_s` apart."""

    def __init__(self, pieces: int, pause_s: float) -> None:
        self.pieces, self.pause_s = pieces, pause_s
        self.asked_at: dict[str, float] = {}
        self.answered_at: dict[str, float] = {}

    async def ask(
        self,
        tenant: str,
        question: str,
        *,
        conversation_id: str | None,
        groups: Sequence[str],
        options: QueryOptions,
        on_delta: Callable[[AnswersDelta], None] | None = None,
    ) -> Answered:
        self.asked_at[question] = time.perf_counter()
        query_id = str(uuid.uuid4())
        if on_delta is not None:
            for seq in range(self.pieces):
                await asyncio.sleep(self.pause_s)
                on_delta(AnswersDelta(query_id=query_id, seq=seq, tier=1, text=f"{question}:{seq} "))
        answer = AnswersCompleted(query_id=query_id, status="answered", answer=f"answer to {question}")
        self.answered_at[question] = time.perf_counter()
        return Answered(answer)

    async def ingest(self, tenant: str, document: DocsSubmitted) -> IndexedDocument:
        return IndexedDocument("v1")

    async def delete(self, tenant: str, doc_id: str) -> IndexedDocument:
        return IndexedDocument("")

    async def feedback(self, tenant: str, query_id: str, rating: str, comment: str | None) -> bool:
        return True

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def overhead(url: str, key: str, answerer: InstantAnswerer, n: int) -> None:
    into, out, total = [], [], []
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        for i in range(n + 50):  # the first 50 warm up (connections, caches)
            question = f"q{i}"
            body = {"model": "ragbus", "messages": [{"role": "user", "content": question}]}
            start = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=body)
            response.read()
            end = time.perf_counter()
            assert response.status_code == 200, response.text
            if i >= 50:
                into.append((answerer.asked_at[question] - start) * 1000)
                out.append((end - answerer.answered_at[question]) * 1000)
                total.append((end - start) * 1000)
    print(f"overhead, {n} sequential chat completions (ms):")
    for name, samples in (("HTTP in -> question handed over", into), ("answer -> response read", out),
                          ("round trip", total)):  # fmt: skip
        print(f"  {name:34} p50 {statistics.median(samples):6.2f}   p95 {pct(samples, 0.95):6.2f}")


async def streams(url: str, key: str, n: int, pieces: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    whole, broken = 0, []

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal whole
        token = f"s{i}"
        body = {"model": "ragbus", "messages": [{"role": "user", "content": token}], "stream": True}
        texts = []
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        texts.append(chunk["choices"][0]["delta"]["content"])
        if texts == [f"{token}:{seq} " for seq in range(pieces)]:
            whole += 1
        else:
            broken.append(token)

    cpu, start = time.process_time(), time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        results: list[Any] = await asyncio.gather(*(one(client, i) for i in range(n)), return_exceptions=True)
    wall = time.perf_counter() - start
    failed = [r for r in results if isinstance(r, BaseException)]
    print(f"concurrency, {n} streaming clients x {pieces} pieces:")
    print(f"  whole and in order {whole}, dropped or crossed {len(broken)}, failed {len(failed)}")
    print(f"  wall {wall:.2f} s, CPU (gateway and clients, one process) {time.process_time() - cpu:.2f} s")
    if failed:
        print(f"  first failure: {failed[0]!r}")


async def stand_in(kafka: KafkaSettings, pieces: int, pause_s: float, ready: asyncio.Event) -> None:
    """The stack, answering on the bus: each question at once, or in `pieces` pieces if it streams."""
    t = Topics(kafka.topic_prefix)
    consumer = await tail(kafka, [t(topics.QUERIES_SUBMITTED)])
    producer = AIOKafkaProducer(**client_options(kafka), linger_ms=1)
    await producer.start()
    headers = [("content-type", CE_CONTENT_TYPE.encode())]

    async def send(cause: Envelope[Any], data: Any, seq: int | str = "") -> None:
        event = cause.follow(data, source="ragbus/bench", seq=seq)
        await producer.send(t(type(data).topic), event.to_bytes(), key=event.key, headers=headers)

    async def answer(event: Envelope[QueriesSubmitted]) -> None:
        q = event.data
        if q.options.stream:
            for seq in range(pieces):
                await asyncio.sleep(pause_s)
                await send(
                    event,
                    AnswersDelta(query_id=q.query_id, seq=seq, tier=1, text=f"{q.question}:{seq} "),
                    seq,
                )
            await send(event, AnswersDelta(query_id=q.query_id, seq=pieces, tier=1, final=True), pieces)
        cascade = Cascade(tier=1, reason="bench", attempts=[])
        done = AnswersCompleted(
            query_id=q.query_id, status="answered", answer=f"answer to {q.question}", cascade=cascade
        )
        await send(event, done)
        await producer.flush()

    ready.set()
    running: set[asyncio.Task[None]] = set()
    try:
        async for record in consumer:
            task = asyncio.create_task(answer(parse_event(record.value or b"")))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        await consumer.stop()
        await producer.stop()


async def bus_overhead(url: str, key: str, published: list[float], n: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    total = []
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        for i in range(n + 20):
            body = {"model": "ragbus", "messages": [{"role": "user", "content": f"q{i}"}]}
            start = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=body)
            end = time.perf_counter()
            assert response.status_code == 200, response.text
            if i >= 20:
                total.append((end - start) * 1000)
    sent = published[-n:]
    print(f"over the bus, {n} sequential chat completions (ms):")
    for name, samples in (("queries.submitted acknowledged", sent), ("round trip (two broker hops)", total)):
        print(f"  {name:34} p50 {statistics.median(samples):6.2f}   p95 {pct(samples, 0.95):6.2f}")


async def on_bus(args: argparse.Namespace, settings: GatewaySettings, keys: MemoryKeyStore, key: str) -> None:
    from ragbus.gateway.app import BusAnswerer
    from ragbus.stack.broker import broker_process, local_kafka_settings
    from ragbus.stack.process import free_port

    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = broker_process(port=free_port(), home=Path(tempfile.mkdtemp(prefix="ragbus-bench-")))
        bootstrap = (await broker.start(detach=False)).address
    kafka = local_kafka_settings(bootstrap, f"bench-{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka, Topics(kafka.topic_prefix).all_with_dlq)
    print(f"broker {bootstrap}, fetch wait {kafka.fetch_max_wait_ms} ms")
    ready = asyncio.Event()
    stack = asyncio.create_task(stand_in(kafka, args.pieces, 0.02, ready))
    await ready.wait()
    settings = settings.model_copy(update={"kafka": kafka})
    answerer = await BusAnswerer.open(settings)
    published: list[float] = []
    client = answerer._client
    publish = client._publish

    async def timed(event: Envelope[Any], *, confirm: bool = True) -> asyncio.Future[Any] | None:
        started = time.perf_counter()
        delivery = await publish(event, confirm=confirm)
        published.append((time.perf_counter() - started) * 1000)
        return delivery

    client._publish = timed  # type: ignore[method-assign]
    server = HttpServer(settings, create_web_app(settings, GatewayDeps(answerer, keys, MemoryDocumentLog())))
    await server.start()
    try:
        await bus_overhead(server.url, key, published, args.requests // 5)
        await streams(server.url, key, args.streams, args.pieces)
    finally:
        await server.stop()
        await answerer.aclose()
        stack.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stack
        if broker is not None:
            await broker.stop(grace_s=5.0)


async def main(args: argparse.Namespace) -> None:
    settings = GatewaySettings(host="127.0.0.1", port=0, rate_per_minute=10**7, rate_burst=10**6)
    keys = MemoryKeyStore()
    key = new_key()
    await keys.create(key, "bench")
    if args.bus:
        await on_bus(args, settings, keys, key.key)
        return
    answerer = InstantAnswerer(args.pieces, pause_s=0.02)
    server = HttpServer(settings, create_web_app(settings, GatewayDeps(answerer, keys, MemoryDocumentLog())))
    await server.start()
    try:
        await overhead(server.url, key.key, answerer, args.requests)
        await streams(server.url, key.key, args.streams, args.pieces)
    finally:
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--pieces", type=int, default=20)
    parser.add_argument("--bus", action="store_true", help="over a real broker and a stand-in stack")
    asyncio.run(main(parser.parse_args()))
