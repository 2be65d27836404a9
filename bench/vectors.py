"""Vector memory benchmark: the embedded store (Qdrant Edge) against qdrant-client's `:memory:` mode, and
MiniLM's embedding throughput, measured through the ragbus adapters (what the services get).

    /work/venv/bin/python bench/vectors.py                      # 5k and 20k points, MiniLM at batch 32/64
    /work/venv/bin/python bench/vectors.py --sizes 50000 --scifact-docs 1000

Store: 384-d random unit vectors (MiniLM's size), two tenants of half the points each, 10 chunks per
document; upserts in batches of 256; top-10 searches filtered on one tenant, and on one tenant plus 5
documents. Also the longest event-loop stall during Edge searches (its calls hold the GIL).
Embeddings: SciFact abstracts (title + text, most reach MiniLM's 256 word-piece limit) and single
sentences. With `--scifact-docs N`: recall@10 / nDCG@10 of SciFact training claims over a corpus of N
abstracts (every cited one plus distractors) in the Edge store, with and without the title embedded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragbus.common.logging import setup_logging
from ragbus.common.refdata import find_data_dir, require_data_dir
from ragbus.common.settings import LogSettings
from ragbus.vectors.adapters.minilm import MiniLMEmbedder
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.ports import ChunkPoint, VectorStore

DIM = 384


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def make_points(n: int, rng: np.random.Generator) -> list[ChunkPoint]:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        ChunkPoint(
            id=uuid.UUID(int=i + 1),
            vector=vectors[i].tolist(),
            tenant=f"t{i % 2}",
            doc_id=f"d{i // 10}",
            version="v1",
            index=i % 10,
            text=f"chunk {i} " + "lorem ipsum " * 40,
            title=f"doc {i // 10}",
        )
        for i in range(n)
    ]


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def loop_stall(fn: Callable[[], Awaitable[Any]]) -> float:
    """The longest gap between ticks of a 1 ms ticker while `fn` runs: how long the loop was blocked."""
    gaps: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await fn()
    done = True
    await task
    return max(gaps)


async def bench_store(
    name: str, store: VectorStore, points: list[ChunkPoint], queries: int
) -> dict[str, Any]:
    rng = random.Random(7)
    await store.ensure(DIM)
    batch_times = []
    for start in range(0, len(points), 256):
        batch = points[start : start + 256]
        batch_times.append(await timed(lambda b=batch: store.upsert(b)))  # type: ignore[misc]
    upsert_rate = len(points) / sum(batch_times)
    ndocs = len(points) // 10
    qv = np.random.default_rng(11).standard_normal((queries, DIM)).astype(np.float32)
    tenant_ms, docs_ms = [], []
    for i in range(queries):
        vector = qv[i].tolist()
        tenant_ms.append(1000 * await timed(lambda v=vector: store.search("t1", v, 10)))  # type: ignore[misc]
        doc_ids = [f"d{rng.randrange(ndocs)}" for _ in range(5)]
        docs_ms.append(1000 * await timed(lambda v=vector, d=doc_ids: store.search("t1", v, 10, d)))  # type: ignore[misc]
    hits = await store.search("t1", qv[0].tolist(), 10)
    assert len(hits) == 10, "the filtered search should fill the top 10"
    result = {
        "store": name,
        "points": len(points),
        "upsert_pts_s": upsert_rate,
        "tenant_p50": statistics.median(tenant_ms),
        "tenant_p95": percentile(tenant_ms, 0.95),
        "docs_p50": statistics.median(docs_ms),
        "docs_p95": percentile(docs_ms, 0.95),
        "top_ids": [h.chunk_id for h in hits],
    }
    if isinstance(store, EdgeVectorStore):
        vectors = [qv[i % queries].tolist() for i in range(50)]

        async def searches() -> None:
            for v in vectors:
                await store.search("t1", v, 10)

        result["stall_ms"] = 1000 * await loop_stall(searches)
    await store.aclose()
    return result


async def stores(sizes: list[int], queries: int, memory_queries: int) -> None:
    print(f"\n## Vector store: {DIM}-d, tenant filter = 50% of points, top-10 (ms), upsert batches of 256\n")
    print(
        "| points | store | upsert pts/s | tenant p50 | tenant p95 | tenant+5 docs p50 | p95 | loop stall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        points = make_points(n, np.random.default_rng(n))
        with tempfile.TemporaryDirectory() as tmp:
            edge = await bench_store("Edge", EdgeVectorStore(Path(tmp) / "shard"), points, queries)
        memory = await bench_store(
            ":memory:", QdrantServerStore(":memory:", collection="bench"), points, memory_queries
        )
        for r in (edge, memory):
            stall = f"{r['stall_ms']:.1f}" if "stall_ms" in r else "n/a"
            print(
                f"| {n} | {r['store']} | {r['upsert_pts_s']:,.0f} | {r['tenant_p50']:.2f} "
                f"| {r['tenant_p95']:.2f} | {r['docs_p50']:.2f} | {r['docs_p95']:.2f} | {stall} |"
            )
        print(
            f"| {n} | ratio :memory:/Edge | {memory['upsert_pts_s'] / edge['upsert_pts_s']:.2f}x "
            f"| {memory['tenant_p50'] / edge['tenant_p50']:.0f}x | "
            f"| {memory['docs_p50'] / edge['docs_p50']:.0f}x | | |"
        )
        same = edge["top_ids"] == memory["top_ids"]
        print(f"|  | same top-10 from both | {same} | | | | | |")


def scifact() -> tuple[dict[str, dict[str, str]], list[dict[str, Any]]]:
    data = require_data_dir("scifact")
    corpus = {}
    with (data / "corpus.jsonl").open() as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = d
    qrels: dict[str, set[str]] = {}
    with (data / "train-qrels.tsv").open() as f:
        next(f)
        for line in f:
            qid, did, _ = line.split("\t")
            qrels.setdefault(qid, set()).add(did)
    queries = []
    with (data / "train-queries.jsonl").open() as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries.append({"id": q["_id"], "text": q["text"], "relevant": qrels[q["_id"]]})
    return corpus, queries


async def embeddings(n_texts: int) -> None:
    embedder = MiniLMEmbedder()
    start = time.perf_counter()
    await embedder.ping()
    load_s = time.perf_counter() - start
    if find_data_dir("scifact") is not None:
        corpus, _ = scifact()
        docs = list(corpus.values())[:n_texts]
        abstracts = [f"{d['title']}\n{d['text']}" for d in docs]
        sentences = [d["text"].split(". ")[0] for d in docs]
    else:
        abstracts = [("lorem ipsum dolor sit amet " * 60).strip()] * n_texts
        sentences = ["A single short sentence about nothing in particular."] * n_texts
    tokenizer = embedder_tokenizer(embedder)
    print(f"\n## MiniLM (all-MiniLM-L6-v2, CPU, torch threads={torch_threads()}), load {load_s:.1f} s\n")
    print("| texts | mean word pieces | batch | texts/s |")
    print("|---|---|---|---|")
    for label, texts in (("SciFact abstracts", abstracts), ("first sentences", sentences)):
        pieces = statistics.mean(len(tokenizer(t)) for t in texts) if tokenizer else float("nan")
        for batch in (32, 64):
            embedder.batch_size = batch
            await embedder.embed_documents(texts[:batch])  # warm
            seconds = await timed(lambda t=texts: embedder.embed_documents(t))  # type: ignore[misc]
            print(f"| {len(texts)} {label} | {pieces:.0f} | {batch} | {len(texts) / seconds:.1f} |")


def embedder_tokenizer(embedder: MiniLMEmbedder) -> Callable[[str], list[int]] | None:
    from ragbus.vectors.adapters import minilm

    loaded = minilm._models.get(embedder.path)
    if loaded is None:
        return None
    tok = loaded.model.tokenizer
    return lambda text: tok(text, truncation=True, max_length=256)["input_ids"]


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


async def retrieval(n_docs: int) -> None:
    corpus, queries = scifact()
    rng = random.Random(3)
    cited = sorted({d for q in queries for d in q["relevant"] if d in corpus})
    chosen = cited[:n_docs]
    chosen_set = set(chosen)
    rest = sorted(set(corpus) - chosen_set)
    chosen += rng.sample(rest, max(0, n_docs - len(chosen)))
    chosen_set = set(chosen)
    evaluable = [q for q in queries if q["relevant"] <= chosen_set]
    embedder = MiniLMEmbedder(batch_size=64)
    print(
        f"\n## SciFact retrieval through MiniLM + Edge: {len(chosen)} abstracts, {len(evaluable)} training "
        "claims whose cited abstracts are all in\n"
    )
    print("| embedded | recall@10 | nDCG@10 | index s |")
    print("|---|---|---|---|")
    query_vectors = await embedder.embed_documents([q["text"] for q in evaluable])
    for with_title in (True, False):
        texts = [(f"{corpus[d]['title']}\n" if with_title else "") + corpus[d]["text"] for d in chosen]
        start = time.perf_counter()
        vectors = await embedder.embed_documents(texts)
        index_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            async with EdgeVectorStore(Path(tmp) / "shard") as store:
                await store.ensure(DIM)
                await store.upsert(
                    [
                        ChunkPoint(
                            id=uuid.uuid5(uuid.NAMESPACE_OID, d),
                            vector=v,
                            tenant="s",
                            doc_id=d,
                            version="v1",
                            index=0,
                            text=corpus[d]["text"][:200],
                        )
                        for d, v in zip(chosen, vectors, strict=True)
                    ]
                )
                recalls, ndcgs = [], []
                for q, qv in zip(evaluable, query_vectors, strict=True):
                    found = [h.doc_id for h in await store.search("s", qv, 10)]
                    rel = q["relevant"]
                    recalls.append(len(rel & set(found)) / len(rel))
                    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(found) if d in rel)
                    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(rel))))
                    ndcgs.append(dcg / ideal)
        label = "title + abstract" if with_title else "abstract only"
        print(f"| {label} | {statistics.mean(recalls):.3f} | {statistics.mean(ndcgs):.3f} | {index_s:.0f} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--queries", type=int, default=200, help="searches per size on Edge")
    parser.add_argument("--memory-queries", type=int, default=30, help="searches per size on :memory: (slow)")
    parser.add_argument("--embed-texts", type=int, default=256)
    parser.add_argument("--scifact-docs", type=int, default=0, help="0 = skip the retrieval check")
    parser.add_argument("--skip-stores", action="store_true")
    parser.add_argument("--skip-embeddings", action="store_true")
    args = parser.parse_args()
    setup_logging(LogSettings(level="WARNING"))
    if not args.skip_stores:
        await stores(args.sizes, args.queries, args.memory_queries)
    if not args.skip_embeddings:
        await embeddings(args.embed_texts)
    if args.scifact_docs:
        await retrieval(args.scifact_docs)


if __name__ == "__main__":
    asyncio.run(main())
