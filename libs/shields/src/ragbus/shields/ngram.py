"""Linear classifiers over hashed character and word n-grams: sub-millisecond text scoring with no
vocabulary to ship.

The features are scikit-learn's `HashingVectorizer` (murmurhash of each n-gram into a fixed number
of buckets: stateless, so the same text gives the same features in training and at run time), and a
model is one weight per bucket and label plus a bias, stored as a compressed `.npz` next to this module
(`models/`). Training lives in `libs/shields/training/`; this module only loads and scores.

Long texts are scored in windows (a template of 5,000 characters and a two-line question should not
dilute each other's n-grams): the score of a text is the highest of its windows'.

Scoring builds those features with `HashedNgrams`, which gives the vectorizers' matrices entry for entry
(same buckets, same order, same float64 values) with a memo of each word's character n-grams: the
vectorizers cut every word of every text into its 3-5-grams and hash each in Python, the bulk of the
time of the document-injection scan, though the words of a corpus repeat.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

MODELS = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True, slots=True)
class NgramConfig:
    """What the features are; written beside the weights so that scoring builds exactly them."""

    char_ngrams: tuple[int, int] = (3, 5)
    word_ngrams: tuple[int, int] = (1, 2)
    n_features: int = 2**20
    window_chars: int = 2000
    window_step: int = 1500

    def vectorizers(self) -> tuple[Any, Any]:
        from sklearn.feature_extraction.text import HashingVectorizer

        common = {"n_features": self.n_features, "alternate_sign": False, "norm": "l2", "lowercase": True}
        char = HashingVectorizer(analyzer="char_wb", ngram_range=self.char_ngrams, **common)
        word = HashingVectorizer(
            analyzer="word",
            ngram_range=self.word_ngrams,
            token_pattern=r"(?u)\b\w+\b",  # noqa: S106 - a regex, not a password
            **common,
        )
        return char, word

    def windows(self, text: str) -> list[str]:
        if len(text) <= self.window_chars:
            return [text]
        starts = range(0, len(text) - self.window_chars + self.window_step, self.window_step)
        return [text[s : s + self.window_chars] for s in starts]


try:
    # What `FeatureHasher.transform` runs: murmurhash of each feature, in C. Private to scikit-learn, so
    # the public transform stands in where it moved (same buckets; tests/test_indirect_batched.py checks).
    from sklearn.feature_extraction._hashing_fast import transform as _hashing_transform
except ImportError:  # pragma: no cover - another scikit-learn layout
    _hashing_transform = None

_WHITE_SPACES = re.compile(r"\s\s+")  # as scikit-learn's char_wb analyzer normalises blanks
Csr = tuple[np.ndarray, np.ndarray, np.ndarray]  # a sparse matrix as (indptr, indices, data)


class HashedNgrams:
    """The features of `NgramConfig.vectorizers()` for a batch of texts, as two CSR triples (indptr,
    indices, data), equal to `char.transform(texts)` and `word.transform(texts)`.

    Why equal: the char_wb analyzer lowercases the text, collapses blanks and cuts each word (padded
    with one space each side) into n-grams, so a text's character n-grams are the concatenation of its
    words'; a word's bucket list is hashed once and remembered (`memo_size` words, emptied when full;
    ~0.2 KB a word, so ~20 MB full; half of SciFact's abstracts hold ~52k distinct words).
    Word n-grams (tokens and pairs) are hashed per text, in one C call for the batch. Counts are summed
    per bucket, buckets sorted, and every row divided by its L2 norm, as scikit-learn does: counts are
    whole numbers, so their squares add up exactly in any order, and the division is the same one."""

    def __init__(self, config: NgramConfig, memo_size: int = 100_000) -> None:
        self.n_features = config.n_features
        self.memo_size = memo_size
        # The config's own analyzers, without lowercasing: texts are lowercased once, here, as a whole (a
        # word alone is not lowered the same way as in its text: final sigma).
        char, word = config.vectorizers()
        self._char_ngrams = char.set_params(lowercase=False).build_analyzer()
        self._word_ngrams = word.set_params(lowercase=False).build_analyzer()
        self._words: dict[str, np.ndarray] = {}  # word -> the buckets of its n-grams (int32, repeated)

    def _hash(self, features: Iterable[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The bucket of every feature of every row, in order with repeats, and the row bounds."""
        rows = list(features)
        if _hashing_transform is not None:
            indices, indptr, _ = _hashing_transform(
                (((f, 1) for f in fs) for fs in rows), self.n_features, np.float64, False, seed=0
            )
            return np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)
        from sklearn.feature_extraction import FeatureHasher  # pragma: no cover - see the import above

        hashed = FeatureHasher(self.n_features, input_type="string", alternate_sign=False).transform(rows)
        counts = hashed.data.astype(np.int64)  # a bucket's count as that many repeats
        per_row = np.asarray(hashed.sum(axis=1)).ravel().astype(np.int64)
        return np.repeat(hashed.indices, counts).astype(np.int32), np.concatenate([[0], np.cumsum(per_row)])

    def _char_buckets(self, words: list[str]) -> list[np.ndarray]:
        """Each word's character n-gram buckets. Scans run in several threads: a lookup that misses
        because another thread emptied the memo is hashed again, never read from the memo after."""
        memo = self._words
        found = [memo.get(w) for w in words]
        missing = list(dict.fromkeys(w for w, b in zip(words, found, strict=True) if b is None))
        fresh: dict[str, np.ndarray] = {}
        if missing:
            indices, indptr = self._hash(self._char_ngrams(w) for w in missing)
            fresh = {w: indices[indptr[k] : indptr[k + 1]] for k, w in enumerate(missing)}
            if len(memo) + len(fresh) > self.memo_size:
                memo.clear()
            memo.update(fresh)
        return [fresh[w] if b is None else b for w, b in zip(words, found, strict=True)]

    def transform(self, texts: Sequence[str]) -> tuple[Csr, Csr]:
        """(char n-grams, word n-grams) of `texts`, each as (indptr, indices, data)."""
        lowered = [t.lower() for t in texts]
        words = [_WHITE_SPACES.sub(" ", t).split() for t in lowered]
        buckets = self._char_buckets([w for ws in words for w in ws])
        per_word = np.fromiter((len(b) for b in buckets), dtype=np.int64, count=len(buckets))
        per_text = np.fromiter((len(ws) for ws in words), dtype=np.int64, count=len(words))
        owner = np.repeat(np.repeat(np.arange(len(texts)), per_text), per_word)
        flat = np.concatenate(buckets) if buckets else np.zeros(0, dtype=np.int32)
        char = _normalised_rows(owner, flat, len(texts), self.n_features)
        indices, indptr = self._hash(self._word_ngrams(t) for t in lowered)
        owner = np.repeat(np.arange(len(texts)), np.diff(indptr))
        return char, _normalised_rows(owner, indices, len(texts), self.n_features)


def _normalised_rows(rows: np.ndarray, buckets: np.ndarray, n_rows: int, n_features: int) -> Csr:
    """CSR (indptr, indices, data) of the bucket counts per row, buckets sorted, rows L2-normalised."""
    keys, counts = np.unique(rows.astype(np.int64) * n_features + buckets, return_counts=True)
    row_of = keys // n_features
    data = counts.astype(np.float64)
    norms = np.sqrt(np.bincount(row_of, weights=data * data, minlength=n_rows))
    data /= norms[row_of]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=n_rows), out=indptr[1:])
    return indptr, (keys % n_features).astype(np.int32), data


@dataclass(frozen=True)
class NgramModel:
    """Per-label logistic scores of texts: `scores(["..."]) -> [{"attack": 0.97}]`."""

    config: NgramConfig
    labels: tuple[str, ...]
    # (2 * n_features, n_labels): char-n-gram weights, then word-n-gram weights
    weights: np.ndarray
    bias: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> NgramModel:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            fields: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()
            }
            config = NgramConfig(**fields)
            dense = np.zeros((2 * config.n_features, len(meta["labels"])), dtype=np.float32)
            dense[z["index"]] = z["values"]
            return cls(config, tuple(meta["labels"]), dense, z["bias"].astype(np.float32), meta)

    def save(self, path: Path) -> None:
        """Only non-zero rows are stored (float16): most buckets never see an n-gram that matters."""
        rows = np.flatnonzero(np.abs(self.weights).max(axis=1) > 1e-4)
        meta = {**self.meta, "labels": list(self.labels), "config": asdict(self.config)}
        np.savez_compressed(
            path,
            index=rows.astype(np.int32),
            values=self.weights[rows].astype(np.float16),
            bias=self.bias.astype(np.float32),
            meta=np.array(json.dumps(meta)),
        )

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "ngram"))

    @cached_property
    def _vectorizers(self) -> tuple[Any, Any]:
        return self.config.vectorizers()

    @cached_property
    def hashed(self) -> HashedNgrams:
        return HashedNgrams(self.config)

    def features(self, windows: Sequence[str], *, reference: bool = False) -> tuple[Csr, Csr]:
        """The (char, word) n-gram features of `windows`; `reference`: by scikit-learn's vectorizers
        themselves (what `HashedNgrams` must equal; slower)."""
        if not reference:
            return self.hashed.transform(windows)
        char, word = self._vectorizers
        return _csr(char.transform(windows)), _csr(word.transform(windows))

    def logits(self, texts: Sequence[str], *, reference: bool = False) -> np.ndarray:
        """(len(texts), n_labels): the highest logit over each text's windows."""
        windows, owner = [], []
        for i, text in enumerate(texts):
            for w in self.config.windows(text):
                windows.append(w)
                owner.append(i)
        n = self.config.n_features
        char, word = self.features(windows, reference=reference)
        per_window = _sparse_dot(char, self.weights[:n]) + _sparse_dot(word, self.weights[n:]) + self.bias
        out = np.full((len(texts), len(self.labels)), -np.inf, dtype=np.float32)
        np.maximum.at(out, np.asarray(owner), per_window)
        return out

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        probabilities = 1.0 / (1.0 + np.exp(-self.logits(texts)))
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in probabilities]


def _csr(matrix: Any) -> Csr:
    return np.asarray(matrix.indptr), np.asarray(matrix.indices), np.asarray(matrix.data)


def _sparse_dot(features: Csr, weights: np.ndarray) -> np.ndarray:
    """`features @ weights` for a CSR matrix of a few hundred non-zeros against 2**20 dense rows: a
    gather of the rows that occur. scipy's product walks the whole weight matrix (3 ms a window);
    this takes microseconds."""
    indptr, indices, data = features
    n_rows = len(indptr) - 1
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    contributions = weights[indices] * data[:, None].astype(np.float32)
    out = np.zeros((n_rows, weights.shape[1]), dtype=np.float32)
    np.add.at(out, rows, contributions)
    return out
