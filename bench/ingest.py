"""The data layer's throughput: SciFact abstracts through the ingest and embed services, beside the raw
embedding model on the same chunks, then the same corpus again, unchanged.

    python bench/ingest.py [--limit N] [--runs 1] [--bootstrap HOST:PORT]

Per run, on a fresh local broker (or `--bootstrap`) and an empty embedded store:

1. the raw model, first half: every other chunk, cut by the ingest's own code and prefixed with its
   title as the embed service does, through the same embedder (`embed_documents`: its jobs of 32, all
   out at once to its worker processes, each started and loaded first) and nothing else: what the
   hardware gives, the ceiling for the pipeline;
2. the stack: ingest and embed hosted in this process, as `ragbus up` hosts them, with their defaults
   (the ingest's CPU work in its worker process); every abstract (title and text) is submitted at once
   by one client (`RagbusClient.ingest`, what `ragbus ingest` does) and the clock stops when the last
   is indexed;
3. the same documents again: nothing changed, so nothing should be embedded (`docs.indexed.unchanged`);
4. the raw model, second half: the other chunks.

The raw passes bracket the stack's, so the raw rate (both halves together) is the host's speed over
the same stretch of time: on a shared machine the model's own speed drifts by a quarter within minutes,
and a raw pass run only after the stack carried that drift into the ratio (`raw drift`: the second
half's chunks/s over the first's).

It prints documents and chunks, the pipeline's chunks/s and the raw model's, their ratio (issue 10's
target: >= 0.9), the CPU time each took per chunk (this process and every process under it, all
together: a figure that holds when other work on a shared machine slows the clock; the stack's also by
who spent it: the services, their worker processes (the ingest's), the model's worker, the broker), the
share of the pipeline's CPU that the model's own work is (`cpu r`, raw ms / stack ms), the re-ingest's
time as a share of the first (target: < 10%), the vectors in the store (equal to the chunks: no loss,
no duplicate points) and this process's peak RSS (the services and the client; the model's own when it
runs in process, RAGBUS_EMBEDDINGS_PROCESS=false). With `--runs` > 1 it prints each run and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ragbus.client.client import Document, RagbusClient
from ragbus.common.events import DocsSubmitted
from ragbus.common.refdata import require_data_dir
from ragbus.common.settings import KafkaSettings
from ragbus.stack.broker import local_kafka_overrides, scratch_broker
from ragbus.stack.runner import Host

TENANT = "bench"
_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process and every live process under it (the
    embedding model's worker, the broker)."""
    return sum(tree_cpu_by_role().values())


def process_table() -> dict[int, tuple[str, int, float]]:
    """Every live process: pid -> (name, parent pid, CPU seconds, user + system, used so far)."""
    table: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, rest = (entry / "stat").read_text().split(" (", 1)[1].rsplit(")", 1)
        except (OSError, IndexError, ValueError):
            continue
        fields = rest.split()
        table[int(entry.name)] = (name, int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return table


def tree_cpu_by_role() -> dict[str, float]:
    """`tree_cpu_s` by who spent it: "services" (this process: the hosted services and the client),
    "workers" (the services' own worker processes, named `ragbus-<service>`: the ingest's CPU work),
    "model" (the embedding model's workers, `ragbus-minilm`, and any other Python process under it) and
    "broker" (anything else under it: the local broker)."""
    table = process_table()
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, (_, parent, _) in table.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                changed = True
    roles = {"services": 0.0, "workers": 0.0, "model": 0.0, "broker": 0.0}
    for pid in mine & table.keys():
        name, _, used = table[pid]
        if pid == os.getpid():
            role = "services"
        elif name == "ragbus-minilm" or name.startswith("python"):
            role = "model"
        else:
            role = "workers" if name.startswith("ragbus-") else "broker"
        roles[role] += used
    return roles


def corpus(data_dir: Path, limit: int | None) -> list[Document]:
    docs = []
    with (data_dir / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            docs.append(Document(doc_id=row["_id"], text=row["text"], title=row["title"] or None))
            if limit and len(docs) >= limit:
                break
    return docs


def embedding_inputs(docs: list[Document]) -> list[str]:
    """What the embed service embeds for these documents: the ingest's chunks, as its parts carry them,
    through the embed service's own input rule (title, newline, chunk)."""
    from ragbus.embed.domain import embedding_inputs as inputs_of
    from ragbus.embed.settings import EmbedSettings
    from ragbus.ingest.adapters.wordpiece import load_tokenizer
    from ragbus.ingest.domain import chunked_template, prepare_document, split_parts
    from ragbus.ingest.settings import IngestSettings

    ingest = IngestSettings()
    policy = ingest.policy()
    tokenizer = load_tokenizer(ingest.tokenizer, ingest.tokenizer_path)
    with_title = EmbedSettings().with_title
    texts: list[str] = []
    for doc in docs:
        submitted = DocsSubmitted(doc_id=doc.doc_id, text=doc.text, title=doc.title)
        prepared = prepare_document(TENANT, doc.doc_id, doc.text or "", tokenizer, policy.chunking)
        template = chunked_template(submitted, prepared, content_type=None, metadata={})
        # The byte budget only decides where parts break; the chunks and their inputs are the same.
        parts = split_parts(
            template,
            prepared.chunks,
            max_chunks=policy.max_chunks_per_part,
            chunk_bytes=policy.max_part_bytes,
        )
        for part in parts:
            texts.extend(inputs_of(part, with_title=with_title))
    return texts


async def raw_model(texts: list[str]) -> tuple[float, float]:
    """Seconds and CPU seconds the embedder alone takes for `texts` (after one warm-up batch)."""
    from ragbus.vectors.factory import open_embedder
    from ragbus.vectors.settings import EmbedderSettings

    embedder = open_embedder(EmbedderSettings())
    try:
        await embedder.ping()  # every worker process up, its model loaded
        await embedder.embed_documents(texts[:32])
        started, cpu = time.perf_counter(), tree_cpu_s()
        await embedder.embed_documents(texts)
        return time.perf_counter() - started, tree_cpu_s() - cpu
    finally:
        await embedder.aclose()


async def stored_vectors() -> int:
    """Points of the bench tenant in the store the embed service wrote (opened in this process, so
    shared with it while it runs)."""
    from ragbus.embed.settings import EmbedSettings
    from ragbus.vectors.factory import open_vector_store

    settings = EmbedSettings()
    store = open_vector_store(settings.vectors.for_embedder(settings.embedder))
    try:
        return await store.count(TENANT)
    finally:
        await store.aclose()


def stack_environment(bench: str, address: str) -> dict[str, str]:
    """The environment of a bench's hosted services and client: the broker at `address`, topics of
    their own, the local broker's timings (except what a KAFKA_* variable sets), a scratch home, no
    telemetry, warnings only."""
    return {
        "KAFKA_BOOTSTRAP": address,
        "KAFKA_TOPIC_PREFIX": f"bench{bench}{uuid.uuid4().hex[:8]}.",
        **{f"KAFKA_{k.upper()}": str(v) for k, v in local_kafka_overrides().items()},
        "RAGBUS_HOME": tempfile.mkdtemp(prefix=f"ragbus-bench-{bench}-"),
        "RAGBUS_TELEMETRY_ENABLED": "false",
        "RAGBUS_LOG_LEVEL": "WARNING",
    }


async def one_run(docs: list[Document], inputs: list[str], bootstrap: str | None) -> dict[str, Any]:
    before, after = inputs[0::2], inputs[1::2]
    before_s, before_cpu = await raw_model(before)
    async with scratch_broker(bootstrap) as address:
        os.environ.update(stack_environment("ingest", address))
        host = Host(["ingest", "embed"])
        await host.start()
        try:
            # As `ragbus ingest` opens it: reading the document replies only.
            async with RagbusClient(KafkaSettings(), tenant=TENANT, replies="documents") as client:
                started, cpu = time.perf_counter(), tree_cpu_by_role()
                first = await client.ingest(docs, stall_timeout=600)
                first_s = time.perf_counter() - started
                split = {k: v - cpu[k] for k, v in tree_cpu_by_role().items()}
                first_cpu = sum(split.values())
                started = time.perf_counter()
                again = await client.ingest(docs, stall_timeout=600)
                again_s = time.perf_counter() - started
            vectors = await stored_vectors()
        finally:
            await host.stop()
    chunks = sum(r.chunks for r in first)
    after_s, after_cpu = await raw_model(after)
    raw_s, raw_cpu = before_s + after_s, before_cpu + after_cpu
    return {
        "docs": len(first),
        "chunks": chunks,
        "pipeline_s": first_s,
        "pipeline_cps": chunks / first_s,
        "raw_cps": len(inputs) / raw_s,
        "ratio": (chunks / first_s) / (len(inputs) / raw_s),
        "stack_cpu_ms": first_cpu * 1000 / chunks,
        "raw_cpu_ms": raw_cpu * 1000 / len(inputs),
        "cpu_ratio": (raw_cpu / len(inputs)) / (first_cpu / chunks),
        "raw_drift": (len(after) / after_s) / (len(before) / before_s),
        **{f"{role}_cpu_ms": seconds * 1000 / chunks for role, seconds in split.items()},
        "again_s": again_s,
        "again_share": again_s / first_s,
        "unchanged": sum(r.is_unchanged for r in again),
        "reembedded": sum(r.chunks - r.unchanged for r in again),
        "vectors": vectors,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


ROW = (
    "{docs:>6} {chunks:>7} {pipeline_s:>8.1f} {pipeline_cps:>9.1f} {raw_cps:>9.1f} {ratio:>6.2f} "
    "{stack_cpu_ms:>9.1f} {services_cpu_ms:>8.1f} {workers_cpu_ms:>7.1f} {model_cpu_ms:>7.1f} "
    "{broker_cpu_ms:>7.1f} "
    "{raw_cpu_ms:>9.1f} {cpu_ratio:>5.2f} {raw_drift:>9.2f} "
    "{again_s:>8.1f} {again_share:>7.1%} {unchanged:>9} {reembedded:>10} {vectors:>8} {rss_mb:>8.0f}"
)
HEAD = (
    f"{'docs':>6} {'chunks':>7} {'first s':>8} {'stack c/s':>9} {'raw c/s':>9} {'ratio':>6} "
    f"{'stack cpu':>9} {'services':>8} {'workers':>7} {'model':>7} {'broker':>7} {'raw cpu':>9} "
    f"{'cpu r':>5} {'raw drift':>9} "
    f"{'again s':>8} {'again %':>7} {'unchanged':>9} {'re-embedded':>10} {'vectors':>8} {'peak MB':>8}"
)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N abstracts (default: all 5,183)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--bootstrap", default=None, help="a broker you run (default: a fresh one per run)")
    args = parser.parse_args()
    docs = corpus(args.data_dir or require_data_dir(), args.limit)
    inputs = embedding_inputs(docs)
    print(f"{len(docs)} SciFact abstracts, {len(inputs)} chunks", flush=True)
    rows = []
    for n in range(args.runs):
        rows.append(await one_run(docs, inputs, args.bootstrap))
        print(f"run {n + 1}: {ROW.format(**rows[-1])}", flush=True)
    print(f"\n{'':7}{HEAD}")
    for n, row in enumerate(rows, start=1):
        print(f"run {n:<3}{ROW.format(**row)}")
    if len(rows) > 1:
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"median {ROW.format(**median)}")


if __name__ == "__main__":
    asyncio.run(main())
