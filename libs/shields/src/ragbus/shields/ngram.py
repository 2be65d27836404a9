"""Linear classifiers over hashed character and word n-grams: sub-millisecond text scoring with no
vocabulary to ship.

The features are scikit-learn's `HashingVectorizer` (murmurhash of each n-gram into a fixed number
of buckets: stateless, so the same text gives the same features in training and at run time), and a
model is one weight per bucket and label plus a bias, stored as a compressed `.npz` next to this module
(`models/`). Training lives in `libs/shields/training/`; this module only loads and scores.

Long texts are scored in windows (a template of 5,000 characters and a two-line question should not
dilute each other's n-grams): the score of a text is the highest of its windows'.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), n_labels): the highest logit over each text's windows."""
        char, word = self._vectorizers
        windows, owner = [], []
        for i, text in enumerate(texts):
            for w in self.config.windows(text):
                windows.append(w)
                owner.append(i)
        n = self.config.n_features
        per_window = (
            _sparse_dot(char.transform(windows), self.weights[:n])
            + _sparse_dot(word.transform(windows), self.weights[n:])
            + self.bias
        )
        out = np.full((len(texts), len(self.labels)), -np.inf, dtype=np.float32)
        np.maximum.at(out, np.asarray(owner), per_window)
        return out

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        probabilities = 1.0 / (1.0 + np.exp(-self.logits(texts)))
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in probabilities]


def _sparse_dot(features: Any, weights: np.ndarray) -> np.ndarray:
    """`features @ weights` for a CSR matrix of a few hundred non-zeros against 2**20 dense rows: a
    gather of the rows that occur. scipy's product walks the whole weight matrix (3 ms a window);
    this takes microseconds."""
    rows = np.repeat(np.arange(features.shape[0]), np.diff(features.indptr))
    contributions = weights[features.indices] * features.data[:, None].astype(np.float32)
    out = np.zeros((features.shape[0], weights.shape[1]), dtype=np.float32)
    np.add.at(out, rows, contributions)
    return out
