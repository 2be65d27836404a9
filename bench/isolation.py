"""Head-of-line blocking: how long a quick question of one tenant waits behind another tenant's slow ones.

    ragbus local broker start --port 19092 && ragbus local model start --port 18080
    python bench/isolation.py --bootstrap 127.0.0.1:19092 --chat http://127.0.0.1:18080/v1

For each configuration (`--configs W/P ...`: orchestrator workers / topic partitions; the baseline is
1/1, one consumer on one partition, as before issue 13) it hosts ingest, embed, guard and orchestrator in
this process on topics of their own, indexes the repository's docs/ for two tenants, then:

- `slow model`: tenant A sends `--slow` questions that must go to the model (`min_tier=1`, ~10 s each on
  two cores), and a second later tenant B asks `--quick` questions capped at tier 0, one after another;
- `model down`: the same with the chat tier pointed at a port where nothing listens.

It prints, per configuration and scenario, B's latency (median, max) and A's (median), and how A's
answers say the model was down. B alone takes ~0.1 s; what B takes beyond that is time spent waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ragbus.client.client import Document, RagbusClient
from ragbus.common.events import QueryOptions
from ragbus.common.settings import KafkaSettings
from ragbus.stack.broker import local_kafka_overrides
from ragbus.stack.runner import Host

REPO = Path(__file__).resolve().parents[1]
SLOW = [
    "Explain how the cascade decides to escalate to a model tier.",
    "Why does the guard check answers for grounding?",
    "How does the monitor keep a record of every event?",
    "Explain how dead letters are replayed.",
    "Why are consumers idempotent?",
    "How is a document split into chunks?",
]
QUICK = [
    "Where does a service send a message it can never process?",
    "Which headers carry the reason of a dead letter?",
    "What does the monitor store in PostgreSQL?",
    "Which attribute carries the tenant of an event?",
    "What ids do chunks get?",
    "What is the content type header of a ragbus message?",
    "What key should questions be published with?",
    "Which format do the events use?",
    "What does ragbus trace print?",
    "Which topic does the orchestrator publish drafted answers to?",
    "What happens to a question the input guard blocks?",
    "How many times is an unrecognised error retried?",
    "What is the request_summary view?",
    "Where are spans written when no OTLP endpoint is set?",
    "What does the embed service do with chunks of older versions?",
    "How does the monitor avoid storing an event twice?",
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when this returns: nothing listens there


async def ask(client: RagbusClient, question: str, options: QueryOptions) -> tuple[float, str, str]:
    start = time.perf_counter()
    result = await client.ask(question, options=options, timeout=600)
    done = result.answer
    reason = done.cascade.reason if done.cascade else ""
    return time.perf_counter() - start, done.status, reason


async def scenario(kafka: KafkaSettings, slow: int, quick: int) -> dict[str, list[Any]]:
    async with (
        RagbusClient(kafka, tenant="tenant-a") as a,
        RagbusClient(kafka, tenant="tenant-b") as b,
    ):
        slow_tasks = [
            asyncio.create_task(ask(a, q, QueryOptions(min_tier=1, cache=False))) for q in SLOW[:slow]
        ]
        await asyncio.sleep(1.0)
        quick_times = []
        for q in QUICK[:quick]:
            elapsed, _, _ = await ask(b, q, QueryOptions(max_tier=0, cache=False))  # answered or blocked
            quick_times.append(elapsed)
        slow_results = await asyncio.gather(*slow_tasks)
    return {
        "quick": quick_times,
        "slow": [r[0] for r in slow_results],
        "reasons": [r[2] for r in slow_results],
    }


async def run(
    workers: int, partitions: int, chat: str, args: argparse.Namespace
) -> dict[str, dict[str, list[Any]]]:
    prefix = f"iso{uuid.uuid4().hex[:8]}."
    home = Path(tempfile.mkdtemp(prefix="ragbus-iso-"))
    env = {
        "KAFKA_BOOTSTRAP": args.bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_PARTITIONS": str(partitions),
        **{f"KAFKA_{k.upper()}": str(v) for k, v in local_kafka_overrides().items()},
        "RAGBUS_HOME": str(home),
        "RAGBUS_TELEMETRY_ENABLED": "false",
        "RAGBUS_LOG_LEVEL": os.environ.get("RAGBUS_LOG_LEVEL", "WARNING"),
        "ORCHESTRATOR_WORKERS": str(workers),
        "ORCHESTRATOR_CHAT_BASE_URL": chat,
    }
    os.environ.update(env)
    out: dict[str, dict[str, list[Any]]] = {}
    host = Host(["ingest", "embed", "guard", "orchestrator"])
    await host.start()
    try:
        kafka = KafkaSettings()
        docs = [
            Document(doc_id=p.name, text=p.read_text(), title=p.stem)
            for p in sorted((REPO / "docs").glob("*.md"))
        ]
        for tenant in ("tenant-a", "tenant-b"):
            print(f"  {workers}/{partitions}: indexing docs/ for {tenant}", flush=True)
            async with RagbusClient(kafka, tenant=tenant) as c:
                await c.ingest(docs, timeout=600)
        print(f"  {workers}/{partitions}: slow model", flush=True)
        out["slow model"] = await scenario(kafka, args.slow, args.quick)
        # The same stack with its chat tier pointed where nothing listens.
        await host.stop()
        os.environ["ORCHESTRATOR_CHAT_BASE_URL"] = f"http://127.0.0.1:{closed_port()}/v1"
        host = Host(["ingest", "embed", "guard", "orchestrator"])
        await host.start()
        print(f"  {workers}/{partitions}: model down", flush=True)
        out["model down"] = await scenario(kafka, args.slow, args.quick)
    finally:
        await host.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--chat", default="http://127.0.0.1:18080/v1")
    parser.add_argument("--configs", nargs="+", default=["1/1", "4/4"], help="workers/partitions")
    parser.add_argument("--slow", type=int, default=3, help="tenant A's model questions")
    parser.add_argument("--quick", type=int, default=6, help="tenant B's tier-0 questions")
    parser.add_argument(
        "--watchdog", type=float, default=0, help="dump every thread's stack after this many seconds (0: off)"
    )
    args = parser.parse_args()
    if args.watchdog:
        faulthandler.dump_traceback_later(args.watchdog, repeat=True)
    rows = []
    for config in args.configs:
        workers, partitions = (int(x) for x in config.split("/"))
        results = asyncio.run(run(workers, partitions, args.chat, args))
        for name, r in results.items():
            quick, slow = r["quick"], r["slow"]
            down = sum(
                "unavailable" in str(x) or "down" in str(x) or "not reach" in str(x) for x in r["reasons"]
            )
            rows.append(
                (config, name, statistics.median(quick), max(quick), statistics.median(slow), down, len(slow))
            )
            print(f"  {config} {name}: B {quick}  A {slow}  reasons {r['reasons']}", flush=True)
    head = f"{'B p50 s':>8} {'B max s':>8} {'A p50 s':>8}"
    print(f"\n{'workers/partitions':>18}  {'scenario':11} {head}  A says model down")
    for config, name, b50, bmax, a50, down, n in rows:
        print(f"{config:>18}  {name:11} {b50:>8.2f} {bmax:>8.2f} {a50:>8.2f}  {down}/{n}")


if __name__ == "__main__":
    main()
