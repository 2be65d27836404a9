"""Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp, TEI).

Vectors are L2-normalised here, whatever the server returns (OpenAI's already are; others' may not be),
so cosine similarity stays a dot product. Errors are sorted for the retry policy: the endpoint being down,
slow, rate limited or refusing our credentials is `EmbedderUnavailable` (retried until fixed, nothing is
lost); a request the server refuses as malformed (400/413/422, e.g. an input over its length limit) is
`InputRejected` (retrying cannot help).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openai

from ragbus.vectors.errors import EmbedderUnavailable, InputRejected

_REJECTED_STATUS = {400, 413, 422}
# Sizes of well-known models, so `dim` is known before the first call.
_KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class OpenAIEmbedder:
    """An Embedder on an OpenAI-compatible embeddings endpoint."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        self._name = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self._own_client = client is None
        # Local servers often need no key, but the client insists on one.
        self._client = client or openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=max_retries
        )
        self._dim: int | None = dimensions or _KNOWN_DIMS.get(model)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise RuntimeError(
                f"the dimension of {self._name!r} is known after the first call: await ping() first, "
                "or set RAGBUS_EMBEDDINGS_DIMENSIONS"
            )
        return self._dim

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(await self._embed(list(texts[start : start + self.batch_size])))
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        [vector] = await self._embed([text])
        return vector

    async def _embed(self, batch: list[str]) -> list[list[float]]:
        try:
            response = await self._client.embeddings.create(
                model=self._name,
                input=batch,
                encoding_format="float",
                dimensions=self.dimensions or openai.omit,
            )
        except openai.APIConnectionError as exc:  # includes timeouts
            raise EmbedderUnavailable(f"embeddings endpoint unreachable: {exc}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in _REJECTED_STATUS:
                raise InputRejected(
                    f"embeddings endpoint refused the input ({exc.status_code}): {exc}"
                ) from exc
            raise EmbedderUnavailable(f"embeddings endpoint failed ({exc.status_code}): {exc}") from exc
        data = sorted(response.data, key=lambda d: d.index)  # the API does not promise order
        if len(data) != len(batch):
            raise EmbedderUnavailable(
                f"embeddings endpoint returned {len(data)} vectors for {len(batch)} inputs"
            )
        matrix = np.asarray([d.embedding for d in data], dtype=np.float32)
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise EmbedderUnavailable(
                f"{self._name!r} returned {matrix.shape[1]}-d vectors, {self._dim}-d expected "
                "(RAGBUS_EMBEDDINGS_DIMENSIONS / model changed?)"
            )
        self._dim = int(matrix.shape[1])
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        rows: list[list[float]] = (matrix / np.where(norms == 0, 1.0, norms)).tolist()
        return rows

    async def ping(self) -> None:
        """One tiny request: proves the endpoint serves the model and learns its dimension."""
        await self._embed(["ping"])

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.close()
