"""BM25 as sparse vectors, and reciprocal rank fusion. Pure (no store, no model).

Lexical retrieval finds what dense embeddings blur: rare terms, gene and drug names, numbers, exact
phrases. To keep it in the vector store beside the dense vectors (so it works the same on a Qdrant
server and embedded, and the same tenant and metadata filters apply to both legs), a document is a
sparse vector whose values are its terms' BM25 weights and a query a sparse vector of its terms: their
dot product is the document's BM25 score for the query.

- Terms: lower-cased words and numbers, English stopwords dropped, Snowball-stemmed
  (`snowballstemmer`, run in C by PyStemmer; tests/test_sparse.py holds its stems to the pure-Python
  stemmer's, since stored documents and new questions must agree), hashed to 31-bit ids, so no
  vocabulary has to be shared between the producer of documents and of queries, and a corpus can grow
  without re-indexing.
- Document weights: the term-frequency part of BM25, `tf * (k1 + 1) / (tf + k1 * (1 - b + b * len /
  avg_len))`, with a fixed `avg_len` (a setting: chunks have a bounded size, and on SciFact any value
  from 64 to 256 moves nDCG@10 by under 0.005). The `idf` factor is left to the store, which knows the
  whole collection (Qdrant's `Modifier.IDF`, on the server and in Edge, with the same formula as
  `Bm25Stats.idf`), so a document's vector never goes stale as the corpus grows. A query's weights
  are 1 per distinct term.
- `reciprocal_rank_fusion` merges ranked lists: a document's score is the sum of `1 / (k + rank)` over
  the lists it appears in (Cormack et al., 2009), so neither leg's score scale matters.
"""

from __future__ import annotations

import math
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar

import snowballstemmer

from ragbus.common.stopwords import STOPWORDS

_TOKEN = re.compile(r"[^\W_]+(?:[.-][^\W_]+)*", re.UNICODE)
# A Snowball stemmer keeps its working word in the object, so one is never shared between threads.
_stemmers = threading.local()


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    stemmed: str = stemmer.stemWord(word)
    return stemmed


def stems(words: Iterable[str]) -> list[str]:
    """The Snowball English stem of each (lower-case) word."""
    return [_stem(w) for w in words]


def terms(text: str) -> list[str]:
    """The text's index terms, in order: lower case, stopwords out, stemmed."""
    return stems(w for w in (m.group().lower() for m in _TOKEN.finditer(text)) if w not in STOPWORDS)


def term_id(term: str) -> int:
    """A stable 31-bit id for a term (the sparse vector's index)."""
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class SparseVector:
    """Sorted, unique indices and their values."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def dot(self, other: SparseVector) -> float:
        mine = dict(zip(self.indices, self.values, strict=True))
        return sum(mine.get(i, 0.0) * v for i, v in zip(other.indices, other.values, strict=True))


def _vector(weights: Mapping[int, float]) -> SparseVector:
    ordered = sorted(weights.items())
    return SparseVector(tuple(i for i, _ in ordered), tuple(float(w) for _, w in ordered))


@dataclass
class Bm25Stats:
    """Corpus statistics for BM25: documents, their total length, and each term's document frequency.
    The store keeps its own for the IDF; these serve benchmarks and tests that score in memory."""

    documents: int = 0
    total_length: int = 0
    document_frequency: Counter[int] = field(default_factory=Counter)

    def add(self, text: str) -> None:
        found = terms(text)
        self.documents += 1
        self.total_length += len(found)
        self.document_frequency.update({term_id(t) for t in found})

    @classmethod
    def of(cls, texts: Iterable[str]) -> Bm25Stats:
        stats = cls()
        for text in texts:
            stats.add(text)
        return stats

    @property
    def average_length(self) -> float:
        return self.total_length / self.documents if self.documents else 1.0

    def idf(self, term: int) -> float:
        # The "plus one" form (Lucene's): never negative, even for a term in most documents.
        n, df = self.documents, self.document_frequency.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))


DEFAULT_AVG_LENGTH = 100.0  # index terms in a chunk of ~200 model tokens (stopwords dropped)


@dataclass(frozen=True, slots=True)
class Bm25Encoder:
    """Documents and queries as sparse vectors whose dot product, once each query term is weighted by
    its IDF (by the store, or `idf=` here), is the BM25 score."""

    avg_length: float = DEFAULT_AVG_LENGTH
    k1: float = 1.2
    b: float = 0.75

    def document(self, text: str, idf: Callable[[int], float] | None = None) -> SparseVector:
        """The text's BM25 term weights, without IDF unless `idf` gives it (the store applies it)."""
        found = [term_id(t) for t in terms(text)]
        norm = self.k1 * (1 - self.b + self.b * len(found) / self.avg_length)
        weight = idf or (lambda _: 1.0)
        return _vector({t: weight(t) * tf * (self.k1 + 1) / (tf + norm) for t, tf in Counter(found).items()})

    @staticmethod
    def query(text: str) -> SparseVector:
        return _vector({term_id(t): 1.0 for t in terms(text)})


K = TypeVar("K", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[K]], k: int = 60) -> list[tuple[K, float]]:
    """Merge ranked lists (best first) by reciprocal rank: best first, ties in first-seen order."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])
