"""The semantic cache on a VectorStore (the same ports as the chunks, in a collection of its own).

An entry is one point: the question's embedding as its vector, the tenant as the store's tenant, and in
its metadata the scope key, the documents the answer used (`sources`, for invalidation by filter) and
the entry itself as JSON. A lookup searches the tenant's entries of the same scope, best first, and
returns the first that is similar enough, fresh, and passes `semantic_cache.mismatch`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ragbus.common.ids import record_id
from ragbus.orchestrator.ports import CacheEntry, CacheFound
from ragbus.orchestrator.semantic_cache import CachePolicy, mismatch, normalise
from ragbus.vectors.ports import ChunkPoint, SearchFilter, VectorStore

# Entries looked at per lookup: the closest ones may be refused for a negation or a number while a
# farther one (the same question reworded) is fine.
_CANDIDATES = 5


class VectorAnswerCache:
    def __init__(
        self,
        store: VectorStore,
        policy: CachePolicy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._vectors = store
        self.policy = policy
        self._clock = clock
        self.refused: list[str] = []  # why the last lookup passed over its candidates (for its span)

    async def lookup(
        self, tenant: str, scope: str, question: str, vector: Sequence[float]
    ) -> CacheFound | None:
        self.refused = []
        hits = await self._vectors.search(
            tenant, vector, _CANDIDATES, SearchFilter(metadata={"scope": [scope]})
        )
        now = self._clock()
        for hit in sorted(hits, key=lambda h: h.score, reverse=True):
            if hit.score < self.policy.min_similarity:
                break
            entry = CacheEntry.model_validate_json(str(hit.metadata["entry"]))
            if not entry.fresh(self.policy.ttl_s, now):
                self.refused.append("expired")
                continue
            if why := mismatch(question, entry.question, self.policy):
                self.refused.append(why)
                continue
            return CacheFound(entry, hit.score)
        return None

    async def store(self, tenant: str, scope: str, vector: Sequence[float], entry: CacheEntry) -> None:
        key = record_id(tenant, "answer-cache", scope, normalise(entry.question))
        point = ChunkPoint(
            id=key,
            vector=vector,
            tenant=tenant,
            doc_id=f"answer-cache:{key}",
            version="1",
            index=0,
            text=entry.question,
            metadata={"scope": scope, "sources": entry.sources, "entry": entry.model_dump_json()},
        )
        await self._vectors.ensure(len(vector))
        await self._vectors.upsert([point])

    async def invalidate(self, tenant: str, doc_ids: Sequence[str]) -> int:
        if not doc_ids:
            return 0
        return await self._vectors.delete_where(tenant, SearchFilter(metadata={"sources": list(doc_ids)}))

    async def ping(self) -> None:
        await self._vectors.ping()

    async def aclose(self) -> None:
        await self._vectors.aclose()
