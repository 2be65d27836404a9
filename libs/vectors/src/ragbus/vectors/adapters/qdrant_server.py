"""A Qdrant server as the vector store, through `qdrant_client.AsyncQdrantClient`.

One collection holds every tenant (Qdrant's multitenancy layout): `tenant` is a keyword index marked
`is_tenant` (the server co-locates each tenant's points), `doc_id` a keyword index, and the HNSW graph is
built per tenant (`payload_m=16`) instead of globally (`m=0`), since every search filters on a tenant.

With `url=":memory:"` the same class runs on qdrant-client's local mode, which tests use to exercise the
very calls made to a server. Local mode is a test double only: it is exact (brute force) and slow on
large sets, its payload indexes are no-ops (so we skip them there), it is not thread-safe, and its
"async" client runs every call synchronously on the event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ragbus.vectors.adapters.payload import DOC_ID, TENANT, VERSION, checked_vectors, to_hit, to_payload
from ragbus.vectors.errors import DimensionMismatch, VectorStoreError, VectorStoreUnavailable
from ragbus.vectors.ports import ChunkPoint, Hit, nothing_to_search
from ragbus.vectors.settings import MEMORY

_UNAVAILABLE_STATUS = {401, 403, 408, 429, 500, 502, 503, 504}


class _CollectionMissingError(Exception):
    """The collection does not exist (yet): reads find nothing, deletes delete nothing."""


def _filter(
    tenant: str | None = None,
    doc_id: str | None = None,
    doc_ids: Sequence[str] | None = None,
    not_version: str | None = None,
) -> models.Filter | None:
    must: list[models.Condition] = []
    if tenant is not None:
        must.append(models.FieldCondition(key=TENANT, match=models.MatchValue(value=tenant)))
    if doc_id is not None:
        must.append(models.FieldCondition(key=DOC_ID, match=models.MatchValue(value=doc_id)))
    if doc_ids is not None:
        must.append(models.FieldCondition(key=DOC_ID, match=models.MatchAny(any=list(doc_ids))))
    must_not: list[models.Condition] | None = None
    if not_version is not None:
        must_not = [models.FieldCondition(key=VERSION, match=models.MatchValue(value=not_version))]
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not)


def _raise_translated(exc: Exception, collection: str) -> NoReturn:
    """Map qdrant-client's errors (server: HTTP statuses; local mode: ValueError) to ours."""
    text = str(exc)
    if isinstance(exc, UnexpectedResponse):
        status = exc.status_code or 0
        if status == 404 and "ollection" in text:
            raise _CollectionMissingError(collection) from exc
        if status in _UNAVAILABLE_STATUS:
            raise VectorStoreUnavailable(f"Qdrant server: {text}") from exc
    if isinstance(exc, ResponseHandlingException | httpx.TransportError):
        raise VectorStoreUnavailable(f"Qdrant server unreachable: {text or type(exc).__name__}") from exc
    if isinstance(exc, ValueError) and text.endswith("not found"):
        raise _CollectionMissingError(collection) from exc
    if "Vector dimension error" in text:
        raise DimensionMismatch(None, None, text) from exc
    raise VectorStoreError(f"Qdrant: {text}") from exc


class QdrantServerStore:
    """A VectorStore on one collection of a Qdrant server (or of qdrant-client's local `:memory:` mode)."""

    def __init__(
        self,
        url: str,
        *,
        collection: str,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        hnsw_ef: int | None = None,
        upsert_batch: int = 256,
    ) -> None:
        self.collection = collection
        self.local = url == MEMORY
        self.hnsw_ef = hnsw_ef
        self.upsert_batch = upsert_batch
        self._url = url
        if self.local:
            self._client = AsyncQdrantClient(location=MEMORY)
        else:
            self._client = AsyncQdrantClient(url=url, api_key=api_key, timeout=int(max(1, timeout_s)))
        self._dim: int | None = None

    def __repr__(self) -> str:
        return f"QdrantServerStore({self._url!r}, collection={self.collection!r})"

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (_CollectionMissingError, VectorStoreError, VectorStoreUnavailable, DimensionMismatch):
            raise
        except (UnexpectedResponse, ResponseHandlingException, httpx.TransportError, ValueError) as exc:
            _raise_translated(exc, self.collection)

    async def _stored_dim(self) -> int | None:
        """The collection's vector size (cached), or None when the collection does not exist."""
        if self._dim is None:
            try:
                async with self._errors():
                    info = await self._client.get_collection(self.collection)
            except _CollectionMissingError:
                return None
            vectors = info.config.params.vectors
            if isinstance(vectors, models.VectorParams):
                self._dim = vectors.size
        return self._dim

    async def ensure(self, dim: int) -> None:
        stored = await self._stored_dim()
        if stored is None:
            await self._create(dim)
            stored = await self._stored_dim()
        if stored is not None and stored != dim:
            raise DimensionMismatch(stored, dim, f"collection {self.collection!r}")

    async def _create(self, dim: int) -> None:
        try:
            async with self._errors():
                await self._client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                    hnsw_config=models.HnswConfigDiff(m=0, payload_m=16),
                )
        except VectorStoreError as exc:
            # Another process created it between our check and our create (409, or local mode's
            # ValueError): fine, ensure() then checks its dimension.
            if "already exists" not in str(exc):
                raise
            return
        if self.local:  # payload indexes are no-ops in local mode (and warn)
            return
        async with self._errors():
            await self._client.create_payload_index(
                self.collection,
                TENANT,
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                wait=True,
            )
            await self._client.create_payload_index(
                self.collection, DOC_ID, models.PayloadSchemaType.KEYWORD, wait=True
            )

    async def upsert(self, points: Sequence[ChunkPoint]) -> int:
        if not points:
            return 0
        dim = await self._stored_dim()
        if dim is None:
            raise VectorStoreError(f"collection {self.collection!r} does not exist: call ensure(dim) first")
        for start in range(0, len(points), self.upsert_batch):
            batch = points[start : start + self.upsert_batch]
            vectors = checked_vectors([p.vector for p in batch], dim)
            records = [
                models.PointStruct(id=str(p.id), vector=v, payload=to_payload(p))
                for p, v in zip(batch, vectors, strict=True)
            ]
            async with self._errors():
                await self._client.upsert(self.collection, points=records, wait=True)
        return len(points)

    async def _delete(self, where: models.Filter) -> int:
        try:
            async with self._errors():
                # The count is exact but not atomic with the delete: a concurrent writer of the same
                # document could make it off by its points (the embed service orders writes per document).
                n = (await self._client.count(self.collection, count_filter=where, exact=True)).count
                if n:
                    await self._client.delete(
                        self.collection, points_selector=models.FilterSelector(filter=where), wait=True
                    )
        except _CollectionMissingError:
            return 0
        return n

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> int:
        where = _filter(tenant, doc_id, not_version=keep_version)
        assert where is not None
        return await self._delete(where)

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        where = _filter(tenant, doc_id)
        assert where is not None
        return await self._delete(where)

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        top_k: int,
        doc_ids: Sequence[str] | None = None,
    ) -> list[Hit]:
        if nothing_to_search(top_k, doc_ids):
            return []
        dim = await self._stored_dim()
        if dim is None:
            return []
        [query] = checked_vectors([vector], dim)
        params: dict[str, Any] = {}
        if self.hnsw_ef is not None and not self.local:  # local mode is exact and warns about params
            params["search_params"] = models.SearchParams(hnsw_ef=self.hnsw_ef)
        try:
            async with self._errors():
                result = await self._client.query_points(
                    self.collection,
                    query=query,
                    query_filter=_filter(tenant, doc_ids=doc_ids),
                    limit=top_k,
                    with_payload=True,
                    with_vectors=False,
                    **params,
                )
        except _CollectionMissingError:
            return []
        return [to_hit(p.id, p.score, p.payload) for p in result.points]

    async def count(self, tenant: str | None = None, doc_id: str | None = None) -> int:
        try:
            async with self._errors():
                result = await self._client.count(
                    self.collection, count_filter=_filter(tenant, doc_id), exact=True
                )
        except _CollectionMissingError:
            return 0
        return result.count

    async def ping(self) -> None:
        async with self._errors():
            await self._client.collection_exists(self.collection)

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> QdrantServerStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
