"""How long one tenant's document waits behind another tenant's bulk ingest, with and without a quota.

    python bench/ingest_isolation.py [--bulk 300] [--partitions 8]

Each configuration gets a fresh local broker (Tansu's memory store slows down as topics pile up, which
would favour whichever configuration runs first) on a free port, or `--bootstrap` to use one you run.
It hosts ingest and embed in this process on topics of their own (`--partitions`), then tenant A
submits `--bulk` SciFact abstracts at once and, a second later, `--small` other tenants submit one each.
Per configuration it prints how long the small tenants' documents took to be indexed (median and
slowest; alone one takes well under a second), how many of them share a partition with A's load (the
key hash decides), how long A's bulk load took, and how many of A's documents a quota refused
(dead-lettered with when they fit: `ragbus dlq replay` sends them again later).

- `per-doc keys`: the baseline, as the stack ran before: every document under a key of its own
  (`tenant:doc`) and one ingest and one embed consumer;
- `no quota`: as the stack runs by default (a tenant's documents under DOC_KEY_SHARDS keys);
- `quota`: the same, and INGEST_QUOTAS gives every tenant `--quota-mb` MB at once and an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `bench.ingest`

from bench.ingest import stack_environment  # the data layer bench's hosted-stack environment

from ragbus.client.client import Document, RagbusClient, RequestFailed
from ragbus.common import events
from ragbus.common.events import DocsSubmitted
from ragbus.common.settings import KafkaSettings
from ragbus.embed.settings import EmbedSettings
from ragbus.stack.broker import scratch_broker
from ragbus.stack.runner import Host

REPO = Path(__file__).resolve().parents[1]
SHARDS = events.DOC_KEY_SHARDS
CONFIGS = ("per-doc keys", "no quota", "quota")
SCIFACT = (
    Path(os.environ.get("RAGBUS_DATA_DIR") or REPO.parent / "shared" / "data") / "scifact" / "corpus.jsonl"
)


def abstracts(n: int, skip: int = 0) -> list[Document]:
    with SCIFACT.open() as f:
        rows = [json.loads(line) for line, _ in zip(f, range(skip + n), strict=False)][skip:]
    return [Document(doc_id=r["_id"], text=r["text"], title=r["title"]) for r in rows]


async def submit_all(client: RagbusClient, docs: list[Document]) -> tuple[int, int]:
    """Each document on its own (a refused one does not stop the rest): (indexed, refused)."""

    async def one(doc: Document) -> bool:
        try:
            await client.ingest([doc], stall_timeout=600)
            return True
        except RequestFailed:
            return False

    done = await asyncio.gather(*(one(d) for d in docs))
    return sum(done), len(done) - sum(done)


def partition(tenant: str, doc: Document, partitions: int) -> int:
    """The partition the producer picks for this document (aiokafka's default partitioner)."""
    key = DocsSubmitted(doc_id=doc.doc_id, text="x").partition_key(tenant).encode()
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


async def run(config: str, args: argparse.Namespace) -> dict[str, Any]:
    # The baseline: as many shards as ids, i.e. a key per document.
    baseline = config == "per-doc keys"
    events.DOC_KEY_SHARDS = 1 << 30 if baseline else SHARDS
    bulk_docs = abstracts(args.bulk)
    small_docs = abstracts(args.small, skip=args.bulk)
    small = {f"tenant-{chr(ord('b') + n)}": doc for n, doc in enumerate(small_docs)}
    bulk_partitions = {partition("tenant-a", d, args.partitions) for d in bulk_docs}
    shared = sum(partition(t, d, args.partitions) in bulk_partitions for t, d in small.items())
    async with scratch_broker(args.bootstrap) as bootstrap:
        row = await measure(config, args, bootstrap, bulk_docs, small)
    return row | {"shared": shared}


async def measure(
    config: str,
    args: argparse.Namespace,
    bootstrap: str,
    bulk_docs: list[Document],
    small: dict[str, Document],
) -> dict[str, Any]:
    # The baseline's one consumer each, else as many ingest workers as partitions (its default: 8) and
    # `--embed-workers` (default: the embed service's own).
    workers = "1" if config == "per-doc keys" else str(args.partitions)
    embed_workers = "1" if config == "per-doc keys" else str(args.embed_workers)
    os.environ.update(
        {
            **stack_environment("ingiso", bootstrap),
            "INGEST_WORKERS": workers,
            "EMBED_WORKERS": embed_workers,
            "KAFKA_PARTITIONS": str(args.partitions),
            "INGEST_QUOTAS": json.dumps(
                {"*": {"mb_per_hour": args.quota_mb, "burst_mb": args.quota_mb}} if config == "quota" else {}
            ),
        }
    )
    host = Host(["ingest", "embed"])
    await host.start()
    try:
        kafka = KafkaSettings()

        async def one(tenant: str, doc: Document) -> float:
            async with RagbusClient(kafka, tenant=tenant) as client:
                await asyncio.sleep(1.0 - (time.perf_counter() - start))
                t0 = time.perf_counter()
                await client.ingest([doc], stall_timeout=600)
                return time.perf_counter() - t0

        async with RagbusClient(kafka, tenant="tenant-a") as a:
            start = time.perf_counter()
            bulk = asyncio.create_task(submit_all(a, bulk_docs))
            waits = await asyncio.gather(*(one(t, d) for t, d in small.items()))
            indexed, refused = await bulk
            whole = time.perf_counter() - start
    finally:
        await host.stop()
    return {
        "config": config,
        "median_s": statistics.median(waits),
        "max_s": max(waits),
        "bulk_s": whole,
        "indexed": indexed,
        "refused": refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="a broker you run (default: a fresh one each)")
    parser.add_argument("--bulk", type=int, default=300, help="tenant A's documents")
    parser.add_argument("--small", type=int, default=6, help="other tenants, one document each")
    parser.add_argument("--partitions", type=int, default=KafkaSettings().partitions, help="of each topic")
    parser.add_argument("--embed-workers", type=int, default=None, help="EMBED_WORKERS (default: its own)")
    parser.add_argument("--quota-mb", type=float, default=0.1, help="each tenant's burst and hourly MB")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    args = parser.parse_args()
    args.embed_workers = args.embed_workers or EmbedSettings().workers
    rows = []
    for config in args.configs:
        print(f"{config}: ...", flush=True)
        rows.append(asyncio.run(run(config, args)))
    print(
        f"\n{args.partitions} partitions, EMBED_WORKERS {args.embed_workers}, "
        f"{args.bulk} documents of tenant A, {args.small} other tenants"
    )
    head = f"{'config':13} {'others median s':>15} {'slowest s':>9} {'on A partition':>14}"
    print(f"{head} {'A bulk s':>8} {'A indexed':>9} {'A refused':>9}")
    for r in rows:
        waits = f"{r['median_s']:>15.1f} {r['max_s']:>9.1f} {r['shared']:>14}"
        print(f"{r['config']:13} {waits} {r['bulk_s']:>8.1f} {r['indexed']:>9} {r['refused']:>9}")


if __name__ == "__main__":
    main()
