"""What a metadata-only change costs in the embed service, against embedding: SciFact abstracts cut by
the ingest service's rules, indexed by the embed use case with MiniLM into a fresh Qdrant Edge shard,
then sent again three ways.

    python bench/metadata_update.py [--docs 300] [--runs 3]

1. first index (every chunk embedded);
2. the same text with new metadata and groups (a `modified` time, a tag, new readers): payloads
   rewritten, nothing embedded;
3. the same again, unchanged: a digest lookup per part;
4. a new title (embedded with the text by default): every chunk embedded again.
Prints seconds and chunks embedded / rewritten per step (median of the runs, each on a new shard).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `bench.ingest`

from bench.ingest import TENANT, corpus

from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsChunked, DocsSubmitted
from ragbus.common.refdata import require_data_dir
from ragbus.embed import usecases
from ragbus.embed.usecases import EmbedDeps
from ragbus.vectors.adapters.minilm import MiniLMEmbedder
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore


def parts_of(limit: int) -> list[DocsChunked]:
    from ragbus.ingest.adapters.wordpiece import load_tokenizer
    from ragbus.ingest.domain import chunked_template, prepare_document, split_parts
    from ragbus.ingest.settings import IngestSettings

    ingest = IngestSettings()
    policy = ingest.policy()
    tokenizer = load_tokenizer(ingest.tokenizer, ingest.tokenizer_path)
    parts: list[DocsChunked] = []
    for doc in corpus(require_data_dir(), limit):
        submitted = DocsSubmitted(doc_id=doc.doc_id, text=doc.text, title=doc.title)
        prepared = prepare_document(TENANT, doc.doc_id, doc.text or "", tokenizer, policy.chunking)
        template = chunked_template(submitted, prepared, content_type=None, metadata={})
        parts += split_parts(
            template,
            prepared.chunks,
            max_chunks=policy.max_chunks_per_part,
            chunk_bytes=policy.max_part_bytes,
        )
    return parts


async def send(deps: EmbedDeps, parts: list[DocsChunked], **update: object) -> tuple[float, int, int]:
    """Index every part (changed by `update`): seconds, chunks embedded, chunks rewritten."""
    started = time.perf_counter()
    embedded = rewritten = 0
    for part in parts:
        event = Envelope.new(part.model_copy(update=update), source="bench", tenant=TENANT)
        result = await usecases.index_part(deps, event)
        embedded += result.upserted
        rewritten += result.updated
    return time.perf_counter() - started, embedded, rewritten


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    parts = parts_of(args.docs)
    chunks = sum(len(p.chunks) for p in parts)
    embedder = MiniLMEmbedder()
    await embedder.embed_documents(["warm up"])
    steps: dict[str, dict[str, object]] = {
        "first index": {},
        "new metadata and groups": {
            "metadata": {"modified": "2026-12-05T22:00:00Z", "team": "bench"},
            "groups": ["hr"],
        },
        "unchanged": {"metadata": {"modified": "2026-12-05T22:00:00Z", "team": "bench"}, "groups": ["hr"]},
        "new title (embedded)": {"title": "Renamed", "groups": ["hr"]},
    }
    seen: dict[str, list[tuple[float, int, int]]] = {name: [] for name in steps}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            store = EdgeVectorStore(Path(tmp) / "shard")
            deps = EmbedDeps(embedder=embedder, store=store)
            for name, update in steps.items():
                seen[name].append(await send(deps, parts, **update))
            await store.aclose()
    print(f"{args.docs} SciFact abstracts, {len(parts)} parts, {chunks} chunks; median of {args.runs} runs")
    print(f"{'step':<26} {'seconds':>8} {'embedded':>9} {'rewritten':>10}")
    first = statistics.median(s for s, _, _ in seen["first index"])
    for name, rows in seen.items():
        took = statistics.median(s for s, _, _ in rows)
        share = f" ({took / first:.1%} of the first)" if name != "first index" else ""
        print(f"{name:<26} {took:>8.2f} {rows[0][1]:>9} {rows[0][2]:>10}{share}")


if __name__ == "__main__":
    asyncio.run(main())
