"""The HTTP gateway's own cost and its concurrency, on loopback, with the stack replaced by an answerer
that answers at once (what is measured is the gateway, not the models).

    python bench/gateway.py [--requests 1000] [--streams 200] [--pieces 20]

1. Overhead: sequential chat completions (an API key checked, the body parsed, the question handed to
   the answerer; the answer turned into OpenAI's JSON and sent). Reported apart: HTTP request in ->
   question handed over (`ask` called), and answer back -> response read by the client, median and
   p95 in ms. The client (httpx) runs in the same process and loop, so its own work is counted too: the
   figures are upper bounds of the gateway's.
2. Concurrency: `--streams` streaming clients at once, each answer streamed in `--pieces` pieces with a
   short pause between them; every stream must arrive whole, in order and only with its own pieces
   (each question carries a token the answerer echoes in every piece). Reports streams completed,
   dropped or crossed, the wall time and the gateway process's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from ragbus.common.events import AnswersCompleted, AnswersDelta, DocsSubmitted, QueryOptions
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


async def main(args: argparse.Namespace) -> None:
    settings = GatewaySettings(host="127.0.0.1", port=0, rate_per_minute=10**7, rate_burst=10**6)
    keys = MemoryKeyStore()
    key = new_key()
    await keys.create(key, "bench")
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
    asyncio.run(main(parser.parse_args()))
