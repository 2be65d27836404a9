"""Near-duplicate documents by MinHash: the signature of a text, the LSH band keys a store indexes it
by, and the Jaccard similarity two signatures estimate.

A signature is 128 minima of hashed 3-word shingles (datasketch's MinHash, seed 1: the same text gives
the same signature in every process). Two documents whose shingle sets have Jaccard similarity J agree
on each minimum with probability J. The 128 minima are cut into 16 bands of 8: documents that agree on
a whole band become candidates (likely above J = (1/16)^(1/8) ≈ 0.71), and their signatures then
estimate J. Ingest computes the signature (it has the text; datasketch is its dependency); the embed
service looks up candidates in the vector store by band (an indexed payload field) and decides.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from typing import Any

NUM_PERM = 128
BANDS = 16
ROWS = NUM_PERM // BANDS
SHINGLE_WORDS = 3
_WORD = re.compile(r"\w+")


def signature(text: str) -> list[int]:
    """The MinHash signature of a text's 3-word shingles (case-folded words; punctuation and layout do
    not count). A text under three words is one shingle."""
    words = _WORD.findall(text.casefold())
    if not words:
        return []
    shingles = {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))}
    minhash = _empty().copy()
    minhash.update_batch([s.encode("utf-8") for s in sorted(shingles)])
    return [int(v) for v in minhash.hashvalues]


@functools.cache
def _empty() -> Any:
    """An empty MinHash to copy: a new one draws its 128 permutations in a Python loop each time (~0.1
    ms alone, and in an ingest thread it holds the GIL from the event loop); a copy shares them."""
    from datasketch import MinHash  # type: ignore[import-untyped]

    return MinHash(num_perm=NUM_PERM, seed=1)


def bands(sig: Sequence[int]) -> list[str]:
    """The LSH band keys of a signature: `band:digest` of each run of ROWS minima."""
    if len(sig) != NUM_PERM:
        return []
    out = []
    for b in range(BANDS):
        chunk = ",".join(str(v) for v in sig[b * ROWS : (b + 1) * ROWS])
        out.append(f"{b}:{hashlib.blake2b(chunk.encode(), digest_size=8).hexdigest()}")
    return out


def similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """The Jaccard similarity of two texts as their signatures estimate it (0 when either has none)."""
    if len(a) != NUM_PERM or len(b) != NUM_PERM:
        return 0.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / NUM_PERM
