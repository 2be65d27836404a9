"""`ragbus eval retrieval`'s pure parts: the tenant per corpus, rankings of documents, the report."""

from __future__ import annotations

import uuid
from pathlib import Path

from ragbus.client.evaluation import BeirDataset, BeirDocument
from ragbus.client.retrieval_eval import (
    MANIFEST_ID,
    RetrievalReport,
    corpus_digest,
    doc_ranking,
    eval_tenant,
)
from ragbus.common.envelope import Envelope
from ragbus.common.events import QueriesSubmitted, RetrievedChunk

DATA = BeirDataset(
    corpus=[BeirDocument("d1", "One", "first"), BeirDocument("d2", "Two", "second")],
    queries={"q": "?"},
    qrels={"q": {"d1": 1}},
)


def chunk(doc_id: str, index: int = 0) -> RetrievedChunk:
    return RetrievedChunk(chunk_id=uuid.uuid4(), doc_id=doc_id, index=index, score=0.5)


def test_the_digest_follows_the_content_and_names_a_valid_tenant(tmp_path: Path) -> None:
    edited = BeirDataset(corpus=[BeirDocument("d1", "One", "first!"), DATA.corpus[1]], queries={}, qrels={})
    assert corpus_digest(DATA) == corpus_digest(BeirDataset(DATA.corpus, {}, {}))  # queries don't count
    assert corpus_digest(DATA) != corpus_digest(edited)
    tenant = eval_tenant(
        tmp_path / ("a very long folder name with spaces and ünïcode " * 3), corpus_digest(DATA)
    )
    assert tenant.startswith("eval-a-very-long-folder")
    assert tenant.endswith(corpus_digest(DATA)[:12])
    Envelope.new(QueriesSubmitted(query_id="x", question="?"), source="t", tenant=tenant)  # a valid tenant id


def test_a_document_ranks_where_its_best_chunk_does_and_the_manifest_is_left_out() -> None:
    chunks = [chunk("d2"), chunk(MANIFEST_ID), chunk("d1"), chunk("d2", 1), chunk("d3")]
    assert doc_ranking(chunks) == ["d2", "d1", "d3"]
    assert doc_ranking(chunks, depth=2) == ["d2", "d1"]


def test_the_report_reads_as_a_table_and_as_json() -> None:
    report = RetrievalReport(
        dataset="mine (test)", tenant="eval-mine-abc", documents=2, queries=3,
        metrics={"ndcg@10": 0.5, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 0.25, "queries": 3},
        retrieval_ms=[10.0, 20.0, 30.0], round_trip_ms=[100.0, 110.0, 400.0], blocked=["q3"],
    )  # fmt: skip
    j = report.as_json()
    assert j["retrieval_ms"] == {"p50": 20.0, "p95": 30.0}
    assert j["round_trip_ms"]["p50"] == 110.0
    assert (j["ndcg@10"], j["blocked"], j["ingested"]) == (0.5, ["q3"], False)
    table = report.table()
    assert "nDCG@10                0.500" in table
    assert "index reused" in table
    assert "1 queries blocked" in table
