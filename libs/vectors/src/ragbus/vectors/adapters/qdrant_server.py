"""A Qdrant server as the vector store, through `qdrant_client.AsyncQdrantClient`.

One collection holds every tenant (Qdrant's multitenancy layout): `tenant` is a keyword index marked
`is_tenant` (the server co-locates each tenant's points), `doc_id` a keyword index, and the HNSW graph is
built per tenant (`payload_m=16`) instead of globally (`m=0`), since every search filters on a tenant.
Points have a named dense vector and a sparse BM25 vector whose IDF the server applies at query time
(`Modifier.IDF`); a collection made before hybrid search (one unnamed vector) serves the dense leg only.

With `url=":memory:"` the same class runs on qdrant-client's local mode, which tests use to exercise the
very calls made to a server. Local mode is a test double only: it is exact (brute force) and slow on
large sets, its payload indexes are no-ops (so we skip them there), it is not thread-safe, and its
"async" client runs every call synchronously on the event loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn
from uuid import UUID

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ragbus.common.logging import get_logger
from ragbus.vectors.adapters.payload import (
    DIGEST_KEYS,
    DOC_ID,
    GROUPS,
    LIVE,
    MINHASH_BANDS,
    PENDING,
    PUBLICATION_KEYS,
    PUBLISHED_AT,
    STATE,
    TENANT,
    VERSION,
    checked_vectors,
    document_payload,
    lexical_terms,
    match_values,
    metadata_key,
    point_uuid,
    rewritten,
    similar_from,
    stored_digest,
    to_legs,
    to_payload,
)
from ragbus.vectors.errors import DimensionMismatch, VectorStoreError, VectorStoreUnavailable
from ragbus.vectors.ports import (
    ANY,
    DENSE,
    SPARSE,
    ChunkPoint,
    DocumentFields,
    Hit,
    Legs,
    SearchFilter,
    StoredDigests,
    nothing_to_search,
)
from ragbus.vectors.settings import MEMORY
from ragbus.vectors.sparse import SparseVector

log = get_logger("ragbus.vectors.qdrant")

_UNAVAILABLE_STATUS = {401, 403, 408, 429, 500, 502, 503, 504}


class _CollectionMissingError(Exception):
    """The collection does not exist (yet): reads find nothing, deletes delete nothing."""


def _filter(
    tenant: str | None = None,
    doc_id: str | None = None,
    where: SearchFilter = ANY,
    not_version: str | None = None,
    *,
    version: str | None = None,
    live_only: bool = False,
) -> models.Filter | None:
    must: list[models.Condition] = []
    if tenant is not None:
        must.append(models.FieldCondition(key=TENANT, match=models.MatchValue(value=tenant)))
    if doc_id is not None:
        must.append(models.FieldCondition(key=DOC_ID, match=models.MatchValue(value=doc_id)))
    if where.doc_ids is not None:
        must.append(models.FieldCondition(key=DOC_ID, match=models.MatchAny(any=list(where.doc_ids))))
    for key, values in where.metadata.items():
        match = models.MatchAny(any=match_values(values))
        must.append(models.FieldCondition(key=metadata_key(key), match=match))
    if where.after is not None or where.before is not None:
        span = models.DatetimeRange(gte=where.after, lt=where.before)
        must.append(models.FieldCondition(key=metadata_key(where.date_field), range=span))
    if where.groups is not None:
        # Open to the whole tenant (no `groups`), or shared with one of the asker's groups.
        open_or_shared: list[models.Condition] = [
            models.IsEmptyCondition(is_empty=models.PayloadField(key=GROUPS))
        ]
        if where.groups:
            shared = models.MatchAny(any=list(where.groups))
            open_or_shared.append(models.FieldCondition(key=GROUPS, match=shared))
        must.append(models.Filter(should=open_or_shared))
    must_not: list[models.Condition] | None = None
    if version is not None:
        must.append(models.FieldCondition(key=VERSION, match=models.MatchValue(value=version)))
    if not_version is not None:
        must_not = [models.FieldCondition(key=VERSION, match=models.MatchValue(value=not_version))]
    if live_only:  # a version being written is not searchable until it is published
        pending = models.FieldCondition(key=STATE, match=models.MatchValue(value=PENDING))
        must_not = [*(must_not or []), pending]
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
        self._hybrid = True

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
            if isinstance(vectors, models.VectorParams):  # one unnamed vector: made before hybrid
                self._dim, self._hybrid = vectors.size, False
                log.warning(
                    "collection made before hybrid search: dense retrieval only; "
                    "index into a new QDRANT_COLLECTION for dense + BM25",
                    collection=self.collection,
                )
            elif isinstance(vectors, dict) and DENSE in vectors:
                self._dim, self._hybrid = vectors[DENSE].size, True
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
                    vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
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
            for key in (GROUPS, MINHASH_BANDS):
                await self._client.create_payload_index(
                    self.collection, key, models.PayloadSchemaType.KEYWORD, wait=True
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
                models.PointStruct(
                    id=str(p.id),
                    vector=_point_vector(v, p.sparse) if self._hybrid else v,
                    payload=to_payload(p),
                )
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

    async def delete_where(self, tenant: str, where: SearchFilter) -> int:
        if where.matches_nothing:
            return 0
        found = _filter(tenant, where=where)
        assert found is not None
        return await self._delete(found)

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        top_k: int,
        where: SearchFilter = ANY,
    ) -> list[Hit]:
        return (await self._search(tenant, vector, None, top_k, where)).dense

    async def search_hybrid(
        self,
        tenant: str,
        vector: Sequence[float],
        sparse: SparseVector,
        top_k: int,
        where: SearchFilter = ANY,
    ) -> Legs:
        return await self._search(tenant, vector, sparse, top_k, where)

    async def _search(
        self,
        tenant: str,
        vector: Sequence[float],
        sparse: SparseVector | None,
        top_k: int,
        where: SearchFilter,
    ) -> Legs:
        if nothing_to_search(top_k, where):
            return Legs([], [])
        dim = await self._stored_dim()
        if dim is None:
            return Legs([], [])
        [query] = checked_vectors([vector], dim)
        params: dict[str, Any] = {}
        if self.hnsw_ef is not None and not self.local:  # local mode is exact and warns about params
            params["params"] = models.SearchParams(hnsw_ef=self.hnsw_ef)
        where_ = _filter(tenant, where=where, live_only=True)
        requests = [
            models.QueryRequest(
                query=query,
                using=DENSE if self._hybrid else None,
                filter=where_,
                limit=top_k,
                with_payload=True,
                with_vector=False,
                **params,
            )
        ]
        terms = lexical_terms(self._hybrid, sparse)
        if terms is not None:
            requests.append(
                models.QueryRequest(
                    query=_sparse(terms),
                    using=SPARSE,
                    filter=where_,
                    limit=top_k,
                    with_payload=True,
                    # Its dense vector gives the hit its cosine, which fusion and thresholds read.
                    with_vector=[DENSE],
                )
            )
        try:
            async with self._errors():
                # One round trip for both legs.
                results = await self._client.query_batch_points(self.collection, requests=requests)
        except _CollectionMissingError:
            return Legs([], [])
        return to_legs(query, results[0].points, results[1].points if terms is not None else [])

    async def count(
        self, tenant: str | None = None, doc_id: str | None = None, version: str | None = None
    ) -> int:
        try:
            async with self._errors():
                result = await self._client.count(
                    self.collection, count_filter=_filter(tenant, doc_id, version=version), exact=True
                )
        except _CollectionMissingError:
            return 0
        return result.count

    async def publish(self, tenant: str, doc_id: str, version: str) -> None:
        where = _filter(tenant, doc_id, version=version)
        assert where is not None
        try:
            async with self._errors():
                await self._client.set_payload(
                    self.collection, {STATE: LIVE, PUBLISHED_AT: time.time()}, points=where, wait=True
                )
        except _CollectionMissingError:
            return

    async def _retrieve(self, ids: Sequence[UUID], keys: list[str]) -> list[models.Record]:
        try:
            async with self._errors():
                return await self._client.retrieve(
                    self.collection,
                    ids=[str(i) for i in ids],
                    with_payload=models.PayloadSelectorInclude(include=keys),
                    with_vectors=False,
                )
        except _CollectionMissingError:
            return []

    async def stored_digests(self, tenant: str, ids: Sequence[UUID]) -> dict[UUID, StoredDigests]:
        if not ids:
            return {}
        found: dict[UUID, StoredDigests] = {}
        for record in await self._retrieve(ids, DIGEST_KEYS):
            digests = stored_digest(tenant, record.payload)
            if digests is not None:
                found[point_uuid(record.id)] = digests
        return found

    async def rewrite_payloads(self, points: Sequence[ChunkPoint]) -> int:
        if not points:
            return 0
        stored = {
            point_uuid(r.id): r.payload
            for r in await self._retrieve([p.id for p in points], PUBLICATION_KEYS)
        }
        operations: list[models.UpdateOperation] = []
        for point in points:
            payload = rewritten(point, stored.get(point.id))
            if payload is not None:
                target = models.SetPayload(payload=payload, points=[str(point.id)])
                operations.append(models.OverwritePayloadOperation(overwrite_payload=target))
        if operations:
            # One request: the server applies the payloads in order, each point's whole.
            async with self._errors():
                await self._client.batch_update_points(
                    self.collection, update_operations=operations, wait=True
                )
        return len(operations)

    async def set_document_fields(
        self, tenant: str, doc_id: str, version: str, fields: DocumentFields
    ) -> None:
        where = _filter(tenant, doc_id, version=version)
        assert where is not None
        try:
            async with self._errors():
                await self._client.set_payload(
                    self.collection, document_payload(fields), points=where, wait=True
                )
        except _CollectionMissingError:
            return

    async def similar_documents(
        self, tenant: str, bands: Sequence[str], exclude_doc_id: str, limit: int = 50
    ) -> dict[str, list[int]]:
        if not bands:
            return {}
        where = models.Filter(
            must=[
                models.FieldCondition(key=TENANT, match=models.MatchValue(value=tenant)),
                models.FieldCondition(key=MINHASH_BANDS, match=models.MatchAny(any=list(bands))),
            ],
            must_not=[models.FieldCondition(key=DOC_ID, match=models.MatchValue(value=exclude_doc_id))],
        )
        try:
            async with self._errors():
                records, _ = await self._client.scroll(
                    self.collection, scroll_filter=where, limit=limit, with_payload=True, with_vectors=False
                )
        except _CollectionMissingError:
            return {}
        return similar_from(tenant, (r.payload for r in records))

    async def ping(self) -> None:
        async with self._errors():
            await self._client.collection_exists(self.collection)

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> QdrantServerStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _point_vector(dense: list[float], sparse: SparseVector | None) -> dict[str, Any]:
    named: dict[str, Any] = {DENSE: dense}
    if sparse is not None and sparse.indices:
        named[SPARSE] = _sparse(sparse)
    return named
