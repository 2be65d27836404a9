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

Prints nDCG@10, Recall@10, Recall@100 and MRR@10 per leg (ragbus.vectors.evaluation, BEIR's
definitions) and the median / p95 time per query of each leg on one process (the query embedding
included in dense). On SciFact only the training claims are judged in ../shared/data: tune on them;
a held-out figure needs the test claims.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from ragbus.common.refdata import require_data_dir
from ragbus.vectors.adapters.minilm import MiniLMEmbedder
from ragbus.vectors.evaluation import BeirDataset, evaluate_run, load_beir
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a BEIR folder (default: the reference data's scifact)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--k", type=int, default=60, help="reciprocal rank fusion's k")
    args = parser.parse_args()
    folder: Path = args.data or require_data_dir() / "scifact"
    data = load_beir(folder, args.split)
    ids = [d.doc_id for d in data.corpus]
    print(f"{folder.name}: {len(ids)} documents, {len(data.queries)} judged {args.split} queries")

    embedder = MiniLMEmbedder()
    dense = dense_index(data, embedder)
    stats = Bm25Stats.of(document_text(d.title, d.text) for d in data.corpus)
    encoder = Bm25Encoder(stats)
    matrix, columns = sparse_matrix([encoder.document(document_text(d.title, d.text)) for d in data.corpus])

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

    # A weighted sum of the dense cosine and the BM25 score scaled to the query's best, its weight chosen
    # on one half of the queries and measured on the other (2-fold), so the figure is not tuned on itself.
    def weighted(alpha: float, queries: list[str]) -> dict[str, list[str]]:
        return {q: top(alpha * scores[q][0] + (1 - alpha) * scores[q][1], ids) for q in queries}

    grid = [round(a, 2) for a in np.arange(0.1, 0.95, 0.05)]

    def half(q: str) -> int:
        return int(hashlib.sha1(q.encode()).hexdigest(), 16) % 2

    halves = [[q for q in data.queries if half(q) == h] for h in (0, 1)]
    chosen: list[float] = []
    held: dict[str, list[str]] = {}
    for tune, test in (halves, halves[::-1]):
        qrels = {q: data.qrels[q] for q in tune}
        best = max(grid, key=lambda a: evaluate_run(weighted(a, tune), qrels)["ndcg@10"])
        chosen.append(best)
        held |= weighted(best, test)
    runs[f"weighted (a {chosen[0]}/{chosen[1]}, 2-fold)"] = held
    times[f"weighted (a {chosen[0]}/{chosen[1]}, 2-fold)"] = times["hybrid (RRF)"]

    header = ("nDCG@10", "R@10", "R@100", "MRR@10", "p50 ms", "p95 ms")
    print(f"\n{'retrieval':30} " + " ".join(f"{h:>8}" for h in header))
    for name, run in runs.items():
        m = evaluate_run(run, data.qrels)
        t = times[name]
        print(
            f"{name:30} {m['ndcg@10']:8.3f} {m['recall@10']:8.3f} {m['recall@100']:8.3f} {m['mrr@10']:8.3f} "
            f"{statistics.median(t):8.1f} {percentile(t, 0.95):8.1f}"
        )
    asyncio.run(embedder.aclose())


if __name__ == "__main__":
    main()
