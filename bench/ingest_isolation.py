"""How long one tenant's document waits behind another tenant's bulk ingest, with and without a quota.

    ragbus local broker start --port 19092
    python bench/ingest_isolation.py --bootstrap 127.0.0.1:19092 [--bulk 300]

It hosts ingest and embed in this process on topics of their own (KAFKA_PARTITIONS, 4), then tenant A
submits `--bulk` SciFact abstracts at once and, a second later, tenant B submits one. Per configuration
it prints how long B's document took to be indexed (alone it takes well under a second), how long A's
bulk load took, and how many of A's documents were refused by a quota (dead-lettered with when they fit:
`ragbus dlq replay` sends them again later).

- `no quota`: as the stack runs by default;
- `quota`: INGEST_QUOTAS gives every tenant `--quota-mb` MB at once and `--quota-mb` MB an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ragbus.client.client import Document, RagbusClient, RequestFailed
from ragbus.common.settings import KafkaSettings
from ragbus.stack.broker import local_kafka_overrides
from ragbus.stack.runner import Host

REPO = Path(__file__).resolve().parents[1]
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


async def run(config: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.update(
        {
            "KAFKA_BOOTSTRAP": args.bootstrap,
            "KAFKA_TOPIC_PREFIX": f"ingiso{uuid.uuid4().hex[:8]}.",
            **{f"KAFKA_{k.upper()}": str(v) for k, v in local_kafka_overrides().items()},
            "RAGBUS_HOME": tempfile.mkdtemp(prefix="ragbus-ingiso-"),
            "RAGBUS_TELEMETRY_ENABLED": "false",
            "RAGBUS_LOG_LEVEL": "WARNING",
            "INGEST_QUOTAS": json.dumps(
                {"*": {"mb_per_hour": args.quota_mb, "burst_mb": args.quota_mb}} if config == "quota" else {}
            ),
        }
    )
    host = Host(["ingest", "embed"])
    await host.start()
    try:
        kafka = KafkaSettings()
        async with RagbusClient(kafka, tenant="tenant-a") as a, RagbusClient(kafka, tenant="tenant-b") as b:
            start = time.perf_counter()
            bulk = asyncio.create_task(submit_all(a, abstracts(args.bulk)))
            await asyncio.sleep(1.0)
            t0 = time.perf_counter()
            await b.ingest(abstracts(1, skip=args.bulk), stall_timeout=600)
            small = time.perf_counter() - t0
            indexed, refused = await bulk
            whole = time.perf_counter() - start
    finally:
        await host.stop()
    return {"config": config, "small_s": small, "bulk_s": whole, "indexed": indexed, "refused": refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--bulk", type=int, default=300, help="tenant A's documents")
    parser.add_argument("--quota-mb", type=float, default=0.1, help="each tenant's burst and hourly MB")
    parser.add_argument("--configs", nargs="+", default=["no quota", "quota"], choices=["no quota", "quota"])
    args = parser.parse_args()
    rows = []
    for config in args.configs:
        print(f"{config}: ...", flush=True)
        rows.append(asyncio.run(run(config, args)))
    print(f"\n{'config':10} {'B waited s':>10} {'A bulk s':>9} {'A indexed':>10} {'A refused':>10}")
    for r in rows:
        times = f"{r['small_s']:>10.1f} {r['bulk_s']:>9.1f}"
        print(f"{r['config']:10} {times} {r['indexed']:>10} {r['refused']:>10}")


if __name__ == "__main__":
    main()
