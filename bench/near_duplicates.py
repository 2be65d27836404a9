"""Near-duplicate detection (MinHash, 3-word shingles, 16 bands of 8) on the whole SciFact corpus.

    python bench/near_duplicates.py [--threshold 0.8] [--planted 500]

1. Every abstract (title and text, as ingest reads it) gets a signature; band collisions give the
   candidate pairs; their estimated Jaccard is checked against the exact Jaccard of their shingle sets.
   Prints signatures/s, candidate pairs, and the pairs over the threshold (true near duplicates in the
   corpus, or false positives of the estimate).
2. Planted mirrors: `--planted` abstracts are copied with a share of their words replaced (1%, 3%, 5%,
   10%, 20%) and looked up among the whole corpus the way the embed service does (band lookup, then
   the estimate against the threshold): recall per edit rate, and how often the mirror was matched to
   another abstract than its original.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragbus.common import near_duplicates as nd
from ragbus.common.refdata import require_data_dir

WORD = re.compile(r"\w+")


def shingles(text: str) -> set[str]:
    words = WORD.findall(text.casefold())
    n = nd.SHINGLE_WORDS
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def exact(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--planted", type=int, default=500)
    args = parser.parse_args()
    corpus = {}
    with (require_data_dir() / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            corpus[row["_id"]] = f"{row['title']}\n\n{row['text']}"
    started = time.perf_counter()
    sigs = {doc_id: nd.signature(text) for doc_id, text in corpus.items()}
    took = time.perf_counter() - started
    index: dict[str, list[str]] = defaultdict(list)
    for doc_id, sig in sigs.items():
        for key in nd.bands(sig):
            index[key].append(doc_id)
    pairs = {tuple(sorted(p)) for ids in index.values() for p in itertools.combinations(ids, 2)}
    over = [(a, b, nd.similarity(sigs[a], sigs[b])) for a, b in pairs]
    over = [(a, b, s) for a, b, s in over if s >= args.threshold]
    each = took * 1000 / len(corpus)
    print(f"{len(corpus)} SciFact abstracts: {len(corpus) / took:.0f} signatures/s ({each:.2f} ms each)")
    print(
        f"candidate pairs (a shared band): {len(pairs)}; estimated Jaccard >= {args.threshold}: {len(over)}"
    )
    for a, b, s in sorted(over, key=lambda t: -t[2])[:10]:
        print(f"  {a} ~ {b}: estimate {s:.3f}, exact {exact(corpus[a], corpus[b]):.3f}")

    rng = random.Random(7)
    picked = rng.sample(sorted(corpus), args.planted)
    among = f"among all {len(corpus)} (threshold {args.threshold})"
    print(f"\nplanted mirrors of {args.planted} abstracts, looked up {among}")
    print(f"{'words edited':>12} {'found':>7} {'recall':>7} {'wrong doc':>9} {'exact J median':>15}")
    for rate in (0.01, 0.03, 0.05, 0.10, 0.20):
        found = wrong = 0
        exacts = []
        for doc_id in picked:
            words = corpus[doc_id].split(" ")
            for i in rng.sample(range(len(words)), max(1, round(rate * len(words)))):
                words[i] = f"edited{i}"
            mirror = " ".join(words)
            exacts.append(exact(corpus[doc_id], mirror))
            sig = nd.signature(mirror)
            candidates = {c for key in nd.bands(sig) for c in index[key]}
            best = max(((nd.similarity(sig, sigs[c]), c) for c in candidates), default=(0.0, ""))
            if best[0] >= args.threshold:
                found += 1
                wrong += best[1] != doc_id
        share, median = found / len(picked), statistics.median(exacts)
        print(f"{rate:>12.0%} {found:>7} {share:>7.1%} {wrong:>9} {median:>15.3f}")


if __name__ == "__main__":
    main()
