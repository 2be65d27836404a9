"""Retrieval quality on a whole BEIR corpus: dense, sparse (BM25) and hybrid side by side, one run.

    python bench/retrieval.py [--data DIR/scifact] [--split train] [--k 60]

Every document of the corpus (title + text) is embedded with the MiniLM adapter the services use
(cached under .cache/bench/ by the corpus's content hash) and indexed as BM25 sparse vectors
(ragbus.vectors.sparse); each judged query of the split is run through:

- dense: cosine similarity of MiniLM embeddings (exact search, what the vector store returns);
- sparse: BM25, the dot product of the query's and the documents' sparse vectors;
- hybrid: reciprocal rank fusion of the top 100 of both (`--k`, 60 by default);
- weighted: `a * cosine + (1 - a) * BM25 / the query's best BM25`, `a` chosen on one half of the
  queries and measured on the other half (2-fold), so its figure is not tuned on the queries it reports.

Questions are embedded as the services embed them: all-MiniLM-L6-v2's int8 ONNX export (the fp32
torch path is timed beside it as the baseline). Then the same corpus goes into an embedded Qdrant Edge
shard as the embed service writes it (dense + BM25 sparse vectors, the IDF applied by the store) and
every query runs through the orchestrator's own
`retrieve()`: one hybrid search per query (both legs 100 deep), fused by each method
(`ragbus.vectors.fusion`), so these rows are what the service returns, not an in-memory ideal. The
default weight (0.75) is shown beside a 2-fold cross-validated one. Latency: `retrieve()` at the
service's defaults (top 5 of 50 candidates per leg, query embedding included), median of `--repeat`
passes over all queries.

Prints nDCG@10, Recall@10, Recall@100 and MRR@10 per row (ragbus.client.evaluation, BEIR's
definitions) and the median / p95 time per query on one process. On SciFact only the training claims
are judged in ../shared/data: tune on them; a held-out figure needs the test claims.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from ragbus.client.evaluation import BeirDataset, evaluate_run, load_beir
from ragbus.common.refdata import require_data_dir
from ragbus.orchestrator.retrieval import RetrievalPolicy, retrieve
from ragbus.vectors.adapters.minilm import MiniLMEmbedder
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.fusion import DEFAULT_WEIGHT, fuse
from ragbus.vectors.ports import ChunkPoint, Legs
from ragbus.vectors.sparse import Bm25Encoder, Bm25Stats, SparseVector, reciprocal_rank_fusion

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench"
TOP = 100


def document_text(title: str, text: str) -> str:
    return f"{title}. {text}" if title else text


def dense_index(data: BeirDataset, embedder: MiniLMEmbedder) -> np.ndarray:
    texts = [document_text(d.title, d.text) for d in data.corpus]
    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"dense-{embedder.name.replace('/', '_')}-{key}.npy"
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    started = time.perf_counter()
    vectors = np.asarray(asyncio.run(embedder.embed_documents(texts)), dtype=np.float32)
    print(f"embedded {len(texts)} documents in {time.perf_counter() - started:.0f} s (cached at {path})")
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def sparse_matrix(vectors: list[SparseVector]) -> tuple[csr_matrix, dict[int, int]]:
    columns: dict[int, int] = {}
    rows, cols, vals = [], [], []
    for r, v in enumerate(vectors):
        for i, w in zip(v.indices, v.values, strict=True):
            rows.append(r)
            cols.append(columns.setdefault(i, len(columns)))
            vals.append(w)
    return csr_matrix((vals, (rows, cols)), shape=(len(vectors), len(columns))), columns


def top(scores: np.ndarray, ids: list[str], n: int = TOP) -> list[str]:
    best = np.argpartition(-scores, min(n, len(scores) - 1))[:n]
    return [ids[i] for i in best[np.argsort(-scores[best])]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


GRID = [round(a, 2) for a in np.arange(0.1, 0.95, 0.05)]


def halves(queries: list[str]) -> list[list[str]]:
    def half(q: str) -> int:
        return int(hashlib.sha1(q.encode()).hexdigest(), 16) % 2

    return [[q for q in queries if half(q) == h] for h in (0, 1)]


def cross_validated(
    queries: list[str],
    qrels: dict[str, dict[str, int]],
    rank: Callable[[float, list[str]], dict[str, list[str]]],
) -> tuple[dict[str, list[str]], list[float]]:
    """A weight chosen on one half of the queries and measured on the other (2-fold), so the figure is
    not tuned on the queries it reports."""
    chosen: list[float] = []
    held: dict[str, list[str]] = {}
    parts = halves(queries)
    for tune, test in (parts, parts[::-1]):
        best = max(GRID, key=lambda a: evaluate_run(rank(a, tune), {q: qrels[q] for q in tune})["ndcg@10"])
        chosen.append(best)
        held |= rank(best, test)
    return held, chosen


def doc_ids(legs: Legs, method: str, weight: float = DEFAULT_WEIGHT) -> list[str]:
    return [h.doc_id for h in fuse(legs, TOP, method=method, weight=weight)]  # type: ignore[arg-type]


async def store_rows(
    data: BeirDataset, dense: np.ndarray, embedder: MiniLMEmbedder, repeat: int
) -> tuple[dict[str, dict[str, list[str]]], dict[str, list[float]]]:
    """Index the corpus in an Edge shard as the embed service does; run every query through `retrieve`."""
    runs: dict[str, dict[str, list[str]]] = {}
    times: dict[str, list[float]] = {}
    encoder = Bm25Encoder()
    with tempfile.TemporaryDirectory(prefix="ragbus-bench-retrieval-") as tmp:
        store = EdgeVectorStore(Path(tmp) / "shard", upsert_batch=512)
        await store.ensure(dense.shape[1])
        points = [
            ChunkPoint(
                id=uuid.uuid5(uuid.NAMESPACE_URL, d.doc_id), vector=dense[i], tenant="bench", doc_id=d.doc_id,
                version="v1", index=0, text=d.text, title=d.title,
                sparse=encoder.document(document_text(d.title, d.text)),
            )
            for i, d in enumerate(data.corpus)
        ]  # fmt: skip
        started = time.perf_counter()
        await store.upsert(points)
        print(f"indexed {len(points)} points in the Edge shard in {time.perf_counter() - started:.1f} s")

        legs: dict[str, Legs] = {}
        for qid, text in data.queries.items():
            vector = await embedder.embed_query(text)
            legs[qid] = await store.search_hybrid("bench", vector, Bm25Encoder.query(text), TOP)
        for method in ("dense", "sparse", "rrf", "weighted"):
            label = f"store {method}" + (f" (a {DEFAULT_WEIGHT})" if method == "weighted" else "")
            runs[label] = {q: doc_ids(lg, method) for q, lg in legs.items()}

        def rank(alpha: float, queries: list[str]) -> dict[str, list[str]]:
            return {q: doc_ids(legs[q], "weighted", alpha) for q in queries}

        held, chosen = cross_validated(list(data.queries), data.qrels, rank)
        runs[f"store weighted (a {chosen[0]}/{chosen[1]}, 2-fold)"] = held

        # Latency at the service's defaults, the query embedding included; median over `repeat` passes.
        # The baseline beside it: the same weighted retrieval with questions embedded by torch (fp32).
        torch_queries = MiniLMEmbedder(query_onnx=False)

        async def timed(model: MiniLMEmbedder, policy: RetrievalPolicy) -> list[float]:
            passes: list[list[float]] = []
            for _ in range(repeat):
                took = []
                for text in data.queries.values():
                    t0 = time.perf_counter()
                    await retrieve(
                        model, store, tenant="bench", question=text, top_k=5, min_score=0.15, policy=policy
                    )
                    took.append((time.perf_counter() - t0) * 1000)
                passes.append(took)
            return [statistics.median(v) for v in zip(*passes, strict=True)]

        for method in ("dense", "weighted"):
            per_query = await timed(embedder, RetrievalPolicy(fusion=method))  # type: ignore[arg-type]
            for label in runs:
                if label.startswith(f"store {method}"):
                    times[label] = per_query
        # `sparse` and `rrf` make the very same hybrid search call as `weighted` (only the pure fusion
        # differs, microseconds): they share its timing rather than being timed again.
        for label in runs:
            times.setdefault(label, times[next(k for k in times if "weighted" in k)])
        baseline = "store weighted, fp32 torch question (time only)"
        runs[baseline] = runs[f"store weighted (a {DEFAULT_WEIGHT})"]
        times[baseline] = await timed(torch_queries, RetrievalPolicy(fusion="weighted"))
        await store.aclose()
    return runs, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a BEIR folder (default: the reference data's scifact)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--k", type=int, default=60, help="reciprocal rank fusion's k")
    parser.add_argument("--repeat", type=int, default=3, help="latency passes over the queries (median)")
    args = parser.parse_args()
    folder: Path = args.data or require_data_dir() / "scifact"
    data = load_beir(folder, args.split)
    ids = [d.doc_id for d in data.corpus]
    print(f"{folder.name}: {len(ids)} documents, {len(data.queries)} judged {args.split} queries")

    embedder = MiniLMEmbedder()
    dense = dense_index(data, embedder)
    stats = Bm25Stats.of(document_text(d.title, d.text) for d in data.corpus)
    encoder = Bm25Encoder(stats.average_length)
    matrix, columns = sparse_matrix(
        [encoder.document(document_text(d.title, d.text), stats.idf) for d in data.corpus]
    )

    runs: dict[str, dict[str, list[str]]] = {"dense": {}, "sparse (BM25)": {}, "hybrid (RRF)": {}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # query -> (dense, BM25 / its maximum)
    for qid, text in data.queries.items():
        started = time.perf_counter()
        q = np.asarray(asyncio.run(embedder.embed_query(text)), dtype=np.float32)
        cosine = dense @ q
        runs["dense"][qid] = top(cosine, ids)
        times["dense"].append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        query = encoder.query(text)
        known = [(columns[i], v) for i, v in zip(query.indices, query.values, strict=True) if i in columns]
        vector = np.zeros(matrix.shape[1], dtype=np.float64)
        for c, v in known:
            vector[c] = v
        bm25 = np.asarray(matrix @ vector).ravel()
        runs["sparse (BM25)"][qid] = top(bm25, ids)
        times["sparse (BM25)"].append((time.perf_counter() - started) * 1000)
        scores[qid] = (cosine, bm25 / bm25.max() if bm25.max() > 0 else bm25)

        started = time.perf_counter()
        fused = reciprocal_rank_fusion([runs["dense"][qid], runs["sparse (BM25)"][qid]], k=args.k)
        runs["hybrid (RRF)"][qid] = [doc for doc, _ in fused[:TOP]]
        times["hybrid (RRF)"].append(times["dense"][-1] + times["sparse (BM25)"][-1])
        times["hybrid (RRF)"][-1] += (time.perf_counter() - started) * 1000

    # A weighted sum of the dense cosine and the BM25 score scaled to the query's best, over every
    # document (exact), its weight cross-validated.
    def weighted(alpha: float, queries: list[str]) -> dict[str, list[str]]:
        return {q: top(alpha * scores[q][0] + (1 - alpha) * scores[q][1], ids) for q in queries}

    held, chosen = cross_validated(list(data.queries), data.qrels, weighted)
    runs[f"weighted (a {chosen[0]}/{chosen[1]}, 2-fold)"] = held
    times[f"weighted (a {chosen[0]}/{chosen[1]}, 2-fold)"] = times["hybrid (RRF)"]

    store_runs, store_times = asyncio.run(store_rows(data, dense, embedder, args.repeat))
    runs |= store_runs
    times |= store_times

    header = ("nDCG@10", "R@10", "R@100", "MRR@10", "p50 ms", "p95 ms")
    print(f"\n{'retrieval':42} " + " ".join(f"{h:>8}" for h in header))
    for name, run in runs.items():
        m = evaluate_run(run, data.qrels)
        t = times[name]
        print(
            f"{name:42} {m['ndcg@10']:8.3f} {m['recall@10']:8.3f} {m['recall@100']:8.3f} {m['mrr@10']:8.3f} "
            f"{statistics.median(t):8.1f} {percentile(t, 0.95):8.1f}"
        )
    asyncio.run(embedder.aclose())


if __name__ == "__main__":
    main()
