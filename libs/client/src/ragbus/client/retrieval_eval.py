"""`ragbus eval retrieval DATASET`: retrieval quality of the running stack on a BEIR folder.

The corpus goes in through the stack (`docs.submitted`, as any user's documents), into a tenant of its
own named after the corpus's content hash; a manifest document, indexed last, records that hash, so a
second run over the same corpus finds it and skips the ingest. Every judged query is then asked with
`retrieve_only` (guard, then the orchestrator's own retrieval: the same embedding, hybrid search,
fusion and filters an answer gets), and the ranked chunks become a ranking of documents (a document
ranks where its best chunk does). Metrics are BEIR's (`ragbus.client.evaluation`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragbus.client.client import Document, RagbusClient
from ragbus.client.evaluation import BeirDataset, evaluate_run
from ragbus.common.events import QueryOptions, RetrievedChunk

MANIFEST_ID = "ragbus-eval-manifest"
DEPTH = 100  # documents per ranking: Recall@100 needs them
PROBE = "What is in this evaluation collection?"


def corpus_digest(data: BeirDataset) -> str:
    """A hash of the corpus as indexed (ids, titles, texts, in order)."""
    h = hashlib.sha256()
    for d in data.corpus:
        for part in (d.doc_id, d.title, d.text):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
    return h.hexdigest()


def eval_tenant(folder: Path, digest: str) -> str:
    """`eval-<folder>-<hash>`: one tenant per corpus content, within the tenant id's 64 characters."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.") or "beir"
    return f"eval-{name[:40]}-{digest[:12]}"


def documents(data: BeirDataset) -> Iterator[Document]:
    for d in data.corpus:
        yield Document(doc_id=d.doc_id, text=d.text or d.title, title=d.title or None)


def manifest(digest: str, count: int) -> Document:
    return Document(
        doc_id=MANIFEST_ID,
        title=f"ragbus evaluation manifest {digest}",
        text=f"This tenant holds an evaluation corpus of {count} documents, content hash {digest}.",
    )


def doc_ranking(chunks: Sequence[RetrievedChunk], depth: int = DEPTH) -> list[str]:
    """Documents in the order of their best chunk, the manifest left out."""
    seen: dict[str, None] = {}
    for chunk in chunks:
        if chunk.doc_id != MANIFEST_ID:
            seen.setdefault(chunk.doc_id)
    return list(seen)[:depth]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class RetrievalReport:
    dataset: str
    tenant: str
    documents: int
    queries: int
    metrics: dict[str, float]
    retrieval_ms: list[float] = field(default_factory=list)  # the orchestrator's retrieval stage
    round_trip_ms: list[float] = field(default_factory=list)  # question published to ranking received
    blocked: list[str] = field(default_factory=list)  # queries the input guard refused
    ingested: bool = False
    ingest_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        def latency(values: Sequence[float]) -> dict[str, float]:
            return {
                "p50": round(statistics.median(values), 1) if values else 0.0,
                "p95": round(percentile(values, 0.95), 1),
            }

        return {
            "dataset": self.dataset,
            "tenant": self.tenant,
            "documents": self.documents,
            "queries": self.queries,
            **self.metrics,
            "retrieval_ms": latency(self.retrieval_ms),
            "round_trip_ms": latency(self.round_trip_ms),
            "blocked": self.blocked,
            "ingested": self.ingested,
            "ingest_s": round(self.ingest_s, 1),
        }

    def table(self) -> str:
        j = self.as_json()
        rows = [
            ("nDCG@10", f"{j['ndcg@10']:.3f}"),
            ("Recall@10", f"{j['recall@10']:.3f}"),
            ("Recall@100", f"{j['recall@100']:.3f}"),
            ("MRR@10", f"{j['mrr@10']:.3f}"),
            ("retrieval p50 / p95", f"{j['retrieval_ms']['p50']:.1f} / {j['retrieval_ms']['p95']:.1f} ms"),
            ("round trip p50 / p95", f"{j['round_trip_ms']['p50']:.1f} / {j['round_trip_ms']['p95']:.1f} ms"),
        ]
        index = f"ingested in {self.ingest_s:.0f} s" if self.ingested else "index reused"
        head = (
            f"{self.dataset}: {self.documents} documents, {self.queries} judged queries "
            f"(tenant {self.tenant}; {index})"
        )
        lines = [head, *(f"  {name:22} {value}" for name, value in rows)]
        if self.blocked:
            lines.append(
                f"  {len(self.blocked)} queries blocked by the input guard (counted as nothing found)"
            )
        return "\n".join(lines)


async def indexed_digest(client: RagbusClient, timeout: float) -> str | None:
    """The content hash the tenant's manifest records, or None when there is no manifest."""
    options = QueryOptions(retrieve_only=True, doc_ids=[MANIFEST_ID], top_k=1)
    # Any question finds the manifest (the search is restricted to it); this one the guard lets pass.
    result = await client.ask(PROBE, options=options, timeout=timeout)
    if result.answer.status != "answered":
        raise RuntimeError(f"the stack refused the manifest probe: {result.answer.reason}")
    for chunk in result.answer.retrieved:
        match = re.search(r"manifest ([0-9a-f]{64})", chunk.title or "")
        if match:
            return match.group(1)
    return None


async def ensure_indexed(
    client: RagbusClient,
    data: BeirDataset,
    digest: str,
    *,
    reindex: bool = False,
    timeout: float = 120.0,
    stall_timeout: float = 300.0,
    say: Callable[[str], None] = lambda _: None,
) -> float | None:
    """Index the corpus into the client's tenant unless its manifest records the same content hash:
    the seconds indexing took, or None when the index was reused."""
    if not reindex and await indexed_digest(client, timeout) == digest:
        return None
    say(f"indexing {len(data.corpus)} documents into tenant {client.tenant} …")
    started, done = time.perf_counter(), 0

    def progress(_: object) -> None:
        nonlocal done
        done += 1
        if done % 500 == 0 or done == len(data.corpus):
            say(f"  {done}/{len(data.corpus)} indexed ({time.perf_counter() - started:.0f} s)")

    await client.ingest(documents(data), stall_timeout=stall_timeout, on_indexed=progress)
    await client.ingest([manifest(digest, len(data.corpus))], stall_timeout=stall_timeout)
    return time.perf_counter() - started


async def evaluate_retrieval(
    client: RagbusClient,
    data: BeirDataset,
    *,
    dataset: str,
    digest: str,
    reindex: bool = False,
    concurrency: int = 1,
    chunks_per_query: int = 200,
    timeout: float = 120.0,
    stall_timeout: float = 300.0,
    say: Callable[[str], None] = lambda _: None,
) -> RetrievalReport:
    """Index the corpus unless the tenant already holds it, ask every judged query, score the rankings."""
    report = RetrievalReport(
        dataset=dataset,
        tenant=client.tenant,
        documents=len(data.corpus),
        queries=len(data.queries),
        metrics={},
    )
    ingest_s = await ensure_indexed(
        client, data, digest, reindex=reindex, timeout=timeout, stall_timeout=stall_timeout, say=say
    )
    if ingest_s is not None:
        report.ingested, report.ingest_s = True, ingest_s

    say(f"asking {len(data.queries)} queries ({concurrency} at a time) …")
    run: dict[str, list[str]] = {}
    gate = asyncio.Semaphore(concurrency)
    # A document may have several chunks: ask for enough to rank DEPTH documents.
    options = QueryOptions(retrieve_only=True, top_k=chunks_per_query)

    async def one(qid: str, text: str) -> None:
        async with gate:
            result = await client.ask(text, options=options, timeout=timeout)
        answer = result.answer
        if answer.status == "blocked":
            report.blocked.append(qid)
        run[qid] = doc_ranking(answer.retrieved)
        report.round_trip_ms.append(result.elapsed_ms)
        report.retrieval_ms.extend(s.ms for s in answer.stages if s.stage == "retrieval")

    await asyncio.gather(*(one(q, t) for q, t in data.queries.items()))
    report.metrics = evaluate_run(run, data.qrels)
    return report
