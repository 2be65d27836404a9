"""Test doubles of the ports, for other packages' component tests (no model, no I/O)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """A deterministic bag-of-words Embedder: each word adds a fixed random direction.

    Texts that share words score higher than texts that do not, which is enough to test retrieval
    plumbing; it knows nothing of meaning. `fail_with`, when set, is raised by every call (to test
    retries and dead letters).
    """

    def __init__(self, dim: int = 64, *, name: str = "test/hashing") -> None:
        self._dim = dim
        self._name = name
        self.calls: list[list[str]] = []
        self.fail_with: BaseException | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def vector(self, text: str) -> list[float]:
        total = np.zeros(self._dim, dtype=np.float64)
        for word in _WORD.findall(text.lower()):
            seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            total += np.random.default_rng(seed).standard_normal(self._dim)
        norm = float(np.linalg.norm(total))
        if norm == 0:  # no words: a fixed unit vector, so the result is still a valid cosine input
            total[0], norm = 1.0, 1.0
        values: list[float] = (total / norm).tolist()
        return values

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(list(texts))
        return [self.vector(t) for t in texts]

    async def embed_query(self, text: str) -> list[float]:
        [vector] = await self.embed_documents([text])
        return vector

    async def ping(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    async def aclose(self) -> None:
        return None
