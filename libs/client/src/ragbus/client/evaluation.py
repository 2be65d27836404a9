"""Retrieval measured the way the field does: BEIR folders and the standard ranking metrics. Pure.

A BEIR folder holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`) and qrels,
tab-separated `query-id`, `corpus-id`, `score` with a header: `qrels/<split>.tsv` in BEIR's own layout,
or `<split>-qrels.tsv` beside the other files. A run maps each query id to the document ids retrieved,
best first.

- nDCG@k: graded gain `rel` at rank `i` discounted by `log2(i + 1)`, over the ideal ordering of the
  query's judged documents (BEIR and pytrec_eval's definition, linear gain);
- Recall@k: judged-relevant documents found in the top k, over all judged-relevant ones;
- MRR@k: one over the rank of the first relevant document in the top k (0 when none).
Queries without a relevant judgement are left out, as in BEIR.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Qrels = Mapping[str, Mapping[str, int]]  # query id -> document id -> relevance
Run = Mapping[str, Sequence[str]]  # query id -> document ids, best first


@dataclass(frozen=True, slots=True)
class BeirDocument:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class BeirDataset:
    corpus: list[BeirDocument]
    queries: dict[str, str]  # only the queries the split judges
    qrels: dict[str, dict[str, int]]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, blank lines skipped; a bad line is named by file and number."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a BEIR folder has corpus.jsonl and queries.jsonl)")
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}, line {number}: not a JSON object ({exc.msg})") from None


def qrels_path(folder: Path, split: str) -> Path:
    for candidate in (folder / "qrels" / f"{split}.tsv", folder / f"{split}-qrels.tsv"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{folder}: no qrels for split {split!r} (qrels/{split}.tsv or {split}-qrels.tsv)"
    )


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    return qrels


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """The corpus, the split's judged queries and its qrels."""
    qrels = read_qrels(qrels_path(folder, split))
    queries_file = next(
        (p for p in (folder / "queries.jsonl", folder / f"{split}-queries.jsonl") if p.exists()), None
    )
    if queries_file is None:
        raise FileNotFoundError(f"{folder}: no queries.jsonl")
    queries = {str(q["_id"]): str(q["text"]) for q in read_jsonl(queries_file) if str(q["_id"]) in qrels}
    corpus = [
        BeirDocument(str(d["_id"]), str(d.get("title") or ""), str(d.get("text") or ""))
        for d in read_jsonl(folder / "corpus.jsonl")
    ]
    return BeirDataset(corpus=corpus, queries=queries, qrels={q: qrels[q] for q in queries})


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    gains = [relevant.get(doc, 0) for doc in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((r for r in relevant.values() if r > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    wanted = {d for d, r in relevant.items() if r > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    for i, doc in enumerate(ranked[:k], start=1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / i
    return 0.0


def evaluate_run(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100 and MRR@10 over the judged queries (a query missing from
    the run counts as nothing retrieved)."""
    judged = [q for q, rel in qrels.items() if any(r > 0 for r in rel.values())]
    if not judged:
        return {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "queries": 0}
    totals = {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for q in judged:
        ranked, relevant = run.get(q, ()), qrels[q]
        totals["ndcg@10"] += ndcg_at_k(ranked, relevant, 10)
        totals["recall@10"] += recall_at_k(ranked, relevant, 10)
        totals["recall@100"] += recall_at_k(ranked, relevant, 100)
        totals["mrr@10"] += mrr_at_k(ranked, relevant, 10)
    return {**{m: round(v / len(judged), 4) for m, v in totals.items()}, "queries": len(judged)}


def write_beir(
    folder: Path,
    corpus: Sequence[BeirDocument],
    queries: Mapping[str, str],
    qrels: Qrels,
    split: str = "test",
) -> Path:
    """Write a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`), e.g. from a labelled
    set of one's own, for `ragbus eval retrieval`."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for d in corpus:
            f.write(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, judged in qrels.items():
            for doc_id, score in judged.items():
                f.write(f"{qid}\t{doc_id}\t{score}\n")
    return folder
