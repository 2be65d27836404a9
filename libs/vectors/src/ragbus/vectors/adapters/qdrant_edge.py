"""The embedded default vector store: Qdrant Edge (`qdrant-edge-py`, the Qdrant engine in process).

What this adapter hides from its callers:
- Edge has no collections: one shard is one directory. `EdgeShard.create` makes a new one (and fails
  where segments exist), `EdgeShard.load` opens an existing one. `ensure(dim)` picks; reads on a shard
  that does not exist yet find nothing instead of failing, so a reader may start before any writer.
- Its own request types (`QueryRequest`, `Query.Nearest`, `Filter`, ...) and `uuid.UUID` ids.
- Its errors are bare `Exception`s told apart by message prefixes; `_translate` maps them to ours.
- A directory can be opened by one process only (a lock on its WAL). In one process, every store on
  the same path shares one open shard (a process-wide registry with reference counts), so the embed
  service and the orchestrator can run together in `ragbus up`; the last `aclose()` flushes and closes.
- Calls hold the GIL (measured: a ticker thread makes no progress during a search). Each shard gets
  ONE worker thread that runs its calls in order: Edge never sees two threads, and the event loop only
  waits for a call's duration. Writes go in batches of `upsert_batch` so reads interleave between them.
- There is no background optimizer, and we never call `optimize()`: search stays exact over plain
  segments. `optimize()` builds HNSW in 38-50 s for 50k points while holding the GIL, which would freeze
  the whole process (its Kafka consumers too), and exact search with the tenant index is already a few
  ms at these sizes (see bench/vectors.py).
- A shard made by this version is hybrid: a named dense vector and a sparse BM25 vector whose IDF
  Edge applies at query time (`Modifier.Idf`). A shard made before keeps its one unnamed vector and
  serves the dense leg only (a warning says so once); re-index into a new path to get both.
- Payload indexes matter even for exact search: filtering on an unindexed field reads every point's
  payload from disk. With keyword indexes on `tenant` (as the tenant key) and `doc_id`, a filtered
  top-10 over 20k points went from ~12 ms to ~2 ms, same results.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import qdrant_edge as qe

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
from ragbus.vectors.errors import (
    DimensionMismatch,
    VectorsError,
    VectorStoreError,
    VectorStoreUnavailable,
)
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
from ragbus.vectors.sparse import SparseVector

log = get_logger("ragbus.vectors.edge")

T = TypeVar("T")

_CONFIG_FILE = "edge_config.json"


@dataclass(eq=False)
class _Shard:
    """One shard directory, open at most once per process. Its fields are touched on its worker only."""

    path: Path
    executor: ThreadPoolExecutor
    refs: int = 0
    shard: qe.EdgeShard | None = None
    dim: int | None = None
    # Named dense + sparse vectors (made by this version), or one unnamed dense vector (made before).
    hybrid: bool = True
    closed: threading.Event = field(default_factory=threading.Event)
    # Set when this entry replaced one that was still closing: wait for it before opening the files.
    predecessor: _Shard | None = None


_registry: dict[Path, _Shard] = {}
_registry_lock = threading.Lock()


def _acquire(path: Path) -> _Shard:
    key = path.resolve()
    with _registry_lock:
        entry = _registry.get(key)
        if entry is None or entry.refs == 0:
            entry = _Shard(
                path=key,
                executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"qdrant-edge-{key.name}"),
                predecessor=entry,
            )
            _registry[key] = entry
        entry.refs += 1
        return entry


def _release(entry: _Shard) -> bool:
    """Drop one reference; True when it was the last (the caller then closes the shard)."""
    with _registry_lock:
        entry.refs -= 1
        return entry.refs == 0


def _forget(entry: _Shard) -> None:
    with _registry_lock:
        if _registry.get(entry.path) is entry and entry.refs == 0:
            del _registry[entry.path]


def _translate(exc: Exception) -> Exception:
    """Edge raises bare `Exception`s; their message prefix says what went wrong."""
    text = str(exc)
    if text.startswith("Vector dimension error"):
        return DimensionMismatch(None, None, text)
    if "WouldBlock" in text or "failed to open WAL" in text:
        return VectorStoreUnavailable(
            f"the Qdrant Edge shard is open in another process ({text}); one process at a time may open "
            "it: run the services that share it in one process (`ragbus up`), or use a Qdrant server"
        )
    return VectorStoreError(f"Qdrant Edge: {text}")


def _filter(
    tenant: str | None = None,
    doc_id: str | None = None,
    where: SearchFilter = ANY,
    not_version: str | None = None,
    *,
    version: str | None = None,
    live_only: bool = False,
) -> qe.Filter | None:
    must: list[Any] = []
    if tenant is not None:
        must.append(qe.FieldCondition(TENANT, match=qe.MatchValue(tenant)))
    if doc_id is not None:
        must.append(qe.FieldCondition(DOC_ID, match=qe.MatchValue(doc_id)))
    if where.doc_ids is not None:
        must.append(qe.FieldCondition(DOC_ID, match=qe.MatchAny(list(where.doc_ids))))
    for key, values in where.metadata.items():
        must.append(qe.FieldCondition(metadata_key(key), match=qe.MatchAny(match_values(values))))
    if where.after is not None or where.before is not None:
        since = where.after.isoformat() if where.after else None
        until = where.before.isoformat() if where.before else None
        must.append(
            qe.FieldCondition(metadata_key(where.date_field), range=qe.RangeDateTime(gte=since, lt=until))
        )
    if where.groups is not None:
        # Open to the whole tenant (no `groups`), or shared with one of the asker's groups.
        open_or_shared: list[Any] = [qe.IsEmptyCondition(GROUPS)]
        if where.groups:
            open_or_shared.append(qe.FieldCondition(GROUPS, match=qe.MatchAny(list(where.groups))))
        must.append(qe.Filter(should=open_or_shared))
    must_not: list[Any] | None = None
    if version is not None:
        must.append(qe.FieldCondition(VERSION, match=qe.MatchValue(version)))
    if not_version is not None:
        must_not = [qe.FieldCondition(VERSION, match=qe.MatchValue(not_version))]
    if live_only:  # a version being written is not searchable until it is published
        must_not = [*(must_not or []), qe.FieldCondition(STATE, match=qe.MatchValue(PENDING))]
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not)


class EdgeVectorStore:
    """A VectorStore on a Qdrant Edge shard directory (see the module docstring)."""

    def __init__(self, path: Path, *, upsert_batch: int = 256) -> None:
        self.path = Path(path).expanduser()
        self.upsert_batch = upsert_batch
        self._entry: _Shard | None = _acquire(self.path)

    def __repr__(self) -> str:
        return f"EdgeVectorStore({str(self.path)!r})"

    # --- the worker side: everything below `_on_*` runs on the shard's own thread -----------------------

    @staticmethod
    def _open(entry: _Shard, create_dim: int | None) -> qe.EdgeShard | None:
        """The open shard: loaded from disk, created with `create_dim`, or None if neither applies."""
        if entry.shard is not None:
            return entry.shard
        if entry.predecessor is not None:
            entry.predecessor.closed.wait(timeout=60)
            entry.predecessor = None
        path = entry.path
        config_file = path / _CONFIG_FILE
        if config_file.is_file() or (path / "segments").is_dir():
            entry.shard = qe.EdgeShard.load(str(path))
            entry.dim, entry.hybrid = _stored_layout(config_file)
            log.info("opened vector store", path=str(path), dim=entry.dim, hybrid=entry.hybrid)
            if not entry.hybrid:
                log.warning(
                    "vector store made before hybrid search: dense retrieval only; "
                    "index into a new QDRANT_PATH or QDRANT_COLLECTION for dense + BM25",
                    path=str(path),
                )
        elif create_dim is not None:
            path.mkdir(parents=True, exist_ok=True)
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=create_dim, distance=qe.Distance.Cosine)},
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            )
            entry.shard = qe.EdgeShard.create(str(path), config)
            entry.dim, entry.hybrid = create_dim, True
            log.info("created vector store", path=str(path), dim=create_dim)
        else:
            return None
        schema = entry.shard.info().payload_schema
        if TENANT not in schema:
            tenant_index = qe.KeywordIndexParams(is_tenant=True)
            entry.shard.update(qe.UpdateOperation.create_field_index(TENANT, tenant_index))
        if DOC_ID not in schema:
            entry.shard.update(qe.UpdateOperation.create_field_index(DOC_ID, qe.PayloadSchemaType.Keyword))
        # The access filter's and the near-duplicate lookup's keys (a shard made before gets them here).
        for key in (GROUPS, MINHASH_BANDS):
            if key not in schema:
                entry.shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
        return entry.shard

    @staticmethod
    def _on_close(entry: _Shard) -> None:
        try:
            if entry.shard is not None:
                entry.shard.flush()
                entry.shard.close()
                log.info("closed vector store", path=str(entry.path))
        finally:
            entry.shard = None
            entry.closed.set()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        entry = self._entry
        if entry is None:
            raise VectorStoreError(f"{self!r} is closed")
        call = functools.partial(self._guarded, fn, entry, *args)
        return await asyncio.get_running_loop().run_in_executor(entry.executor, call)

    @staticmethod
    def _guarded(fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except (VectorsError, VectorStoreUnavailable):
            raise
        except Exception as exc:  # Edge's errors are all bare Exception: translate, never swallow
            raise _translate(exc) from exc

    # --- the port ---------------------------------------------------------------------------------------

    async def ensure(self, dim: int) -> None:
        def on_ensure(entry: _Shard) -> None:
            self._open(entry, dim)
            if entry.dim is not None and entry.dim != dim:
                raise DimensionMismatch(entry.dim, dim, str(entry.path))

        await self._run(on_ensure)

    async def upsert(self, points: Sequence[ChunkPoint]) -> int:
        for start in range(0, len(points), self.upsert_batch):
            await self._run(self._on_upsert, points[start : start + self.upsert_batch])
        return len(points)

    def _on_upsert(self, entry: _Shard, batch: Sequence[ChunkPoint]) -> None:
        shard = self._open(entry, None)
        if shard is None:
            raise VectorStoreError(f"no vector store at {entry.path} yet: call ensure(dim) first")
        vectors = checked_vectors([p.vector for p in batch], entry.dim)
        records = [
            qe.Point(p.id, _point_vector(v, p.sparse) if entry.hybrid else v, to_payload(p))
            for p, v in zip(batch, vectors, strict=True)
        ]
        shard.update(qe.UpdateOperation.upsert_points(records))

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> int:
        return await self._run(self._on_delete, _filter(tenant, doc_id, not_version=keep_version))

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        return await self._run(self._on_delete, _filter(tenant, doc_id))

    async def delete_where(self, tenant: str, where: SearchFilter) -> int:
        if where.matches_nothing:
            return 0
        return await self._run(self._on_delete, _filter(tenant, where=where))

    def _on_delete(self, entry: _Shard, where: qe.Filter) -> int:
        shard = self._open(entry, None)
        if shard is None:
            return 0
        # Count and delete on the one worker thread: nothing can write in between.
        n = shard.count(qe.CountRequest(exact=True, filter=where))
        if n:
            shard.update(qe.UpdateOperation.delete_points_by_filter(where))
        return n

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        top_k: int,
        where: SearchFilter = ANY,
    ) -> list[Hit]:
        if nothing_to_search(top_k, where):
            return []
        legs = await self._run(self._on_search, tenant, vector, None, top_k, where)
        return legs.dense

    async def search_hybrid(
        self,
        tenant: str,
        vector: Sequence[float],
        sparse: SparseVector,
        top_k: int,
        where: SearchFilter = ANY,
    ) -> Legs:
        if nothing_to_search(top_k, where):
            return Legs([], [])
        return await self._run(self._on_search, tenant, vector, sparse, top_k, where)

    def _on_search(
        self,
        entry: _Shard,
        tenant: str,
        vector: Sequence[float],
        sparse: SparseVector | None,
        top_k: int,
        where: SearchFilter,
    ) -> Legs:
        shard = self._open(entry, None)
        if shard is None:
            return Legs([], [])
        [query] = checked_vectors([vector], entry.dim)
        where_ = _filter(tenant, where=where, live_only=True)
        using = DENSE if entry.hybrid else None
        requests = [
            qe.QueryRequest(
                limit=top_k,
                query=qe.Query.Nearest(query, using=using),
                filter=where_,
                with_payload=True,
                with_vector=False,
            )
        ]
        terms = lexical_terms(entry.hybrid, sparse)
        if terms is not None:
            requests.append(
                qe.QueryRequest(
                    limit=top_k,
                    query=qe.Query.Nearest(_sparse(terms), using=SPARSE),
                    filter=where_,
                    with_payload=True,
                    # Its dense vector gives the hit its cosine, which fusion and thresholds read.
                    with_vector=[DENSE],
                )
            )
        # One planned batch: both legs share a pass over the segments.
        results = shard.query_batch(qe.QueryBatchRequest(requests))
        return to_legs(query, results[0], results[1] if terms is not None else [])

    async def count(
        self, tenant: str | None = None, doc_id: str | None = None, version: str | None = None
    ) -> int:
        def on_count(entry: _Shard) -> int:
            shard = self._open(entry, None)
            if shard is None:
                return 0
            return shard.count(qe.CountRequest(exact=True, filter=_filter(tenant, doc_id, version=version)))

        return await self._run(on_count)

    async def publish(self, tenant: str, doc_id: str, version: str) -> None:
        stamp = {STATE: LIVE, PUBLISHED_AT: time.time()}

        def on_publish(entry: _Shard) -> None:
            shard = self._open(entry, None)
            if shard is not None:
                where = _filter(tenant, doc_id, version=version)
                assert where is not None  # it names the tenant, document and version
                shard.update(qe.UpdateOperation.set_payload_by_filter(where, stamp))

        await self._run(on_publish)

    async def stored_digests(self, tenant: str, ids: Sequence[UUID]) -> dict[UUID, StoredDigests]:
        if not ids:
            return {}

        def on_retrieve(entry: _Shard) -> dict[UUID, StoredDigests]:
            shard = self._open(entry, None)
            if shard is None:
                return {}
            found: dict[UUID, StoredDigests] = {}
            for record in shard.retrieve(list(ids), DIGEST_KEYS, False):
                digests = stored_digest(tenant, record.payload)
                if digests is not None:
                    found[point_uuid(record.id)] = digests
            return found

        return await self._run(on_retrieve)

    async def rewrite_payloads(self, points: Sequence[ChunkPoint]) -> int:
        if not points:
            return 0

        def on_rewrite(entry: _Shard) -> int:
            shard = self._open(entry, None)
            if shard is None:
                return 0
            stored = {
                point_uuid(r.id): r.payload
                for r in shard.retrieve([p.id for p in points], PUBLICATION_KEYS, False)
            }
            # One payload per point, all on the shard's one worker: no search runs between them.
            n = 0
            for point in points:
                payload = rewritten(point, stored.get(point.id))
                if payload is not None:
                    shard.update(qe.UpdateOperation.overwrite_payload([point.id], payload))
                    n += 1
            return n

        return await self._run(on_rewrite)

    async def set_document_fields(
        self, tenant: str, doc_id: str, version: str, fields: DocumentFields
    ) -> None:
        where = _filter(tenant, doc_id, version=version)
        assert where is not None  # it names the tenant, document and version

        def on_set(entry: _Shard) -> None:
            shard = self._open(entry, None)
            if shard is not None:
                shard.update(qe.UpdateOperation.set_payload_by_filter(where, document_payload(fields)))

        await self._run(on_set)

    async def similar_documents(
        self, tenant: str, bands: Sequence[str], exclude_doc_id: str, limit: int = 50
    ) -> dict[str, list[int]]:
        if not bands:
            return {}
        where = qe.Filter(
            must=[
                qe.FieldCondition(TENANT, match=qe.MatchValue(tenant)),
                qe.FieldCondition(MINHASH_BANDS, match=qe.MatchAny(list(bands))),
            ],
            must_not=[qe.FieldCondition(DOC_ID, match=qe.MatchValue(exclude_doc_id))],
        )

        def on_scroll(entry: _Shard) -> dict[str, list[int]]:
            shard = self._open(entry, None)
            if shard is None:
                return {}
            request = qe.ScrollRequest(limit=limit, filter=where, with_payload=True, with_vector=False)
            records, _ = shard.scroll(request)
            return similar_from(tenant, (r.payload for r in records))

        return await self._run(on_scroll)

    async def ping(self) -> None:
        def on_ping(entry: _Shard) -> None:
            shard = self._open(entry, None)
            if shard is not None:
                shard.info()

        await self._run(on_ping)

    async def aclose(self) -> None:
        entry, self._entry = self._entry, None
        if entry is None or not _release(entry):
            return
        try:
            await asyncio.get_running_loop().run_in_executor(entry.executor, self._on_close, entry)
        finally:
            entry.executor.shutdown(wait=False)
            _forget(entry)

    async def __aenter__(self) -> EdgeVectorStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def _sparse(vector: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(list(vector.indices), list(vector.values))


def _point_vector(dense: list[float], sparse: SparseVector | None) -> dict[str, Any]:
    named: dict[str, Any] = {DENSE: dense}
    if sparse is not None and sparse.indices:
        named[SPARSE] = _sparse(sparse)
    return named


def _stored_layout(config_file: Path) -> tuple[int | None, bool]:
    """The dimension a shard was created with and whether it is hybrid (named dense + sparse
    vectors), from the config Edge persists next to its segments."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        vectors = json.loads(config_file.read_text())["vectors"]
        if DENSE in vectors:
            return int(vectors[DENSE]["size"]), True
        return int(vectors[""]["size"]), False
    return None, True
