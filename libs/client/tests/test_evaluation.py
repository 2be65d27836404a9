"""Ranking metrics as BEIR computes them, on hand-checked cases, and the BEIR folder reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ragbus.client.evaluation import evaluate_run, load_beir, mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_discounts_by_rank_over_the_ideal_ordering() -> None:
    relevant = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "x"], relevant) == pytest.approx(1.0)
    # Relevant at ranks 2 and 3: (1/log2 3 + 1/log2 4) / (1 + 1/log2 3).
    expected = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "b"], relevant) == pytest.approx(expected)
    assert ndcg_at_k(["x", "y"], relevant) == 0.0
    # Graded: the ideal ranks the relevance-2 document first.
    assert ndcg_at_k(["b"], {"a": 2, "b": 1}) == pytest.approx(1 / (2 + 1 / math.log2(3)))


def test_recall_and_mrr_look_only_at_the_cut() -> None:
    relevant = {"a": 1, "b": 1, "c": 0}
    ranked = ["x", "a", "c", "b"]
    assert recall_at_k(ranked, relevant, 2) == 0.5
    assert recall_at_k(ranked, relevant, 4) == 1.0
    assert mrr_at_k(ranked, relevant, 10) == 0.5
    assert mrr_at_k(ranked, relevant, 1) == 0.0


def test_a_run_is_averaged_over_judged_queries_and_a_missing_query_scores_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    scores = evaluate_run({"q1": ["a"], "q3": ["c"]}, qrels)
    assert scores == {"ndcg@10": 0.5, "recall@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5, "queries": 2}


def write_beir(folder: Path, layout: str) -> None:
    folder.mkdir()
    with (folder / "corpus.jsonl").open("w") as f:
        for i, text in enumerate(["Kafka keeps a log.", "Qdrant stores vectors.", "BM25 ranks terms."]):
            f.write(json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": text}) + "\n")
    queries = folder / ("queries.jsonl" if layout == "beir" else "test-queries.jsonl")
    queries.write_text(
        "\n".join(
            json.dumps({"_id": q, "text": t}) for q, t in [("1", "log?"), ("2", "vectors?"), ("3", "?")]
        )
    )
    qrels = folder / "qrels" / "test.tsv" if layout == "beir" else folder / "test-qrels.tsv"
    qrels.parent.mkdir(exist_ok=True)
    qrels.write_text("query-id\tcorpus-id\tscore\n1\td0\t1\n2\td1\t1\n")


@pytest.mark.parametrize("layout", ["beir", "flat"])
def test_a_beir_folder_is_read_with_only_its_judged_queries(tmp_path: Path, layout: str) -> None:
    write_beir(tmp_path / "set", layout)
    data = load_beir(tmp_path / "set", "test")
    assert [d.doc_id for d in data.corpus] == ["d0", "d1", "d2"]
    assert data.queries == {"1": "log?", "2": "vectors?"}
    assert data.qrels == {"1": {"d0": 1}, "2": {"d1": 1}}
    with pytest.raises(FileNotFoundError, match="no qrels for split 'dev'"):
        load_beir(tmp_path / "set", "dev")


def test_a_written_beir_folder_loads_back(tmp_path: Path) -> None:
    from ragbus.client.evaluation import BeirDocument, write_beir

    corpus = [BeirDocument("d1", "One", "first text"), BeirDocument("d2", "", "second text")]
    folder = write_beir(tmp_path / "mine", corpus, {"q1": "first?", "q2": "unjudged?"}, {"q1": {"d1": 1}})
    data = load_beir(folder, "test")
    assert data.corpus == corpus
    assert data.queries == {"q1": "first?"}  # only judged queries are kept
    assert data.qrels == {"q1": {"d1": 1}}


def test_a_malformed_or_missing_file_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "train-qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "?"}\n')
    with pytest.raises(FileNotFoundError, match=r"corpus\.jsonl: no such file"):
        load_beir(tmp_path, "train")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": \n')
    with pytest.raises(ValueError, match=r"corpus\.jsonl, line 2: not a JSON object"):
        load_beir(tmp_path, "train")
