"""Conversation memory on a VectorStore (a collection of its own, as the answer cache has).

A turn is one point of the "document" `conversation:<id>` of its tenant: the question as its text, the
answer, query id and a sequence number in its metadata. The vector carries no meaning (the same unit
vector for every turn): turns are read by their conversation, never by similarity. Kafka keys a
conversation's events by `tenant:conversation_id`, so one consumer at a time writes a conversation.
"""

from __future__ import annotations

import time

from ragbus.common.ids import record_id
from ragbus.orchestrator.ports import Turn
from ragbus.vectors.ports import ChunkPoint, SearchFilter, VectorStore


class VectorConversationMemory:
    def __init__(self, store: VectorStore, *, dim: int, max_turns: int) -> None:
        self._vectors = store
        self._unit = [1.0] + [0.0] * (dim - 1)
        self.max_turns = max_turns
        self._ensured = False

    @staticmethod
    def _doc(conversation_id: str) -> str:
        return f"conversation:{conversation_id}"

    async def _points(self, tenant: str, conversation_id: str) -> list[tuple[int, Turn]]:
        where = SearchFilter(doc_ids=[self._doc(conversation_id)])
        hits = await self._vectors.search(tenant, self._unit, self.max_turns + 8, where)
        turns = [
            (int(h.metadata["seq"]), Turn(str(h.metadata["query_id"]), h.text, str(h.metadata["answer"])))
            for h in hits
        ]
        return sorted(turns, key=lambda t: t[0])

    async def turns(self, tenant: str, conversation_id: str) -> list[Turn]:
        return [turn for _, turn in await self._points(tenant, conversation_id)][-self.max_turns :]

    async def record(self, tenant: str, conversation_id: str, turn: Turn) -> None:
        if not self._ensured:
            await self._vectors.ensure(len(self._unit))
            self._ensured = True
        point = ChunkPoint(
            id=record_id(tenant, "conversation", conversation_id, turn.query_id),
            vector=self._unit,
            tenant=tenant,
            doc_id=self._doc(conversation_id),
            version="1",
            index=0,
            text=turn.question,
            metadata={"query_id": turn.query_id, "answer": turn.answer, "seq": time.time_ns()},
        )
        await self._vectors.upsert([point])
        kept = await self._points(tenant, conversation_id)
        if len(kept) > self.max_turns:
            old = [t.query_id for _, t in kept[: len(kept) - self.max_turns]]
            where = SearchFilter(doc_ids=[self._doc(conversation_id)], metadata={"query_id": old})
            await self._vectors.delete_where(tenant, where)

    async def ping(self) -> None:
        await self._vectors.ping()

    async def aclose(self) -> None:
        await self._vectors.aclose()
