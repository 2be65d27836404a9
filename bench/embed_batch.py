"""The embedding model's throughput by forward-pass size: SciFact chunks (as the embed service embeds
them: title, newline, chunk) through MiniLMEmbedder in jobs of 32, each job run as one padded pass (the
baseline) or sorted by length and run `forward_batch` texts at a time.

    python bench/embed_batch.py [--chunks 512] [--runs 3] [--sizes 32,16,8,4]

Prints texts/s per forward-pass size (median of the runs, interleaved so that a slow spell of the
machine hits every size alike) and its ratio to the baseline (forward pass = job = 32).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `bench.ingest`

from bench.ingest import corpus, embedding_inputs  # the data layer bench's corpus and embedding inputs

from ragbus.common.refdata import require_data_dir
from ragbus.vectors.adapters.minilm import MiniLMEmbedder


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="32,16,8,4")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    texts = embedding_inputs(corpus(require_data_dir(), args.chunks))[: args.chunks]
    embedders = {size: MiniLMEmbedder(batch_size=32, forward_batch=size) for size in sizes}
    await embedders[sizes[0]].embed_documents(texts[:32])  # load and warm the model
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(args.runs):
        for size, embedder in embedders.items():
            started = time.perf_counter()
            await embedder.embed_documents(texts)
            rates[size].append(len(texts) / (time.perf_counter() - started))
    base = statistics.median(rates[32]) if 32 in rates else None
    print(f"{len(texts)} SciFact chunks, jobs of 32, {args.runs} runs (median)")
    print(f"{'forward pass':>12} {'texts/s':>8} {'vs 32':>6}")
    for size in sizes:
        median = statistics.median(rates[size])
        ratio = f"{median / base:.2f}" if base else "-"
        print(f"{size:>12} {median:>8.1f} {ratio:>6}")


if __name__ == "__main__":
    asyncio.run(main())
