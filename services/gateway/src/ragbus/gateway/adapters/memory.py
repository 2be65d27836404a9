"""The KeyStore and the DocumentLog in memory: for tests, and the contracts the PostgreSQL ones are
tested against."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from ragbus.gateway.keys import scopes_of
from ragbus.gateway.ports import (
    SCOPES,
    ApiKey,
    DocumentState,
    NewKey,
    RequestFilter,
    RequestStory,
    Scope,
)


class MemoryDocumentLog:
    def __init__(self) -> None:
        self._states: dict[tuple[str, str], DocumentState] = {}

    async def submitted(self, tenant: str, doc_id: str, submission: str, title: str | None) -> DocumentState:
        now = datetime.now(UTC)
        state = DocumentState(
            tenant, doc_id, "submitted", submission, title, submitted_at=now, updated_at=now
        )
        self._states[(tenant, doc_id)] = state
        return state

    async def finished(self, state: DocumentState) -> None:
        current = self._states.get((state.tenant, state.doc_id))
        if current is not None and current.submission == state.submission:
            self._states[(state.tenant, state.doc_id)] = dataclasses.replace(
                state, submitted_at=current.submitted_at, updated_at=datetime.now(UTC)
            )

    async def get(self, tenant: str, doc_id: str) -> DocumentState | None:
        return self._states.get((tenant, doc_id))

    async def list(self, tenant: str, *, limit: int = 200) -> list[DocumentState]:
        mine = [s for (t, _), s in self._states.items() if t == tenant and s.status != "deleted"]
        return sorted(mine, key=lambda s: s.submitted_at or datetime.min.replace(tzinfo=UTC), reverse=True)[
            :limit
        ]


class MemoryRequestRecord:
    """Stories by hand (a test writes what the monitor would have recorded)."""

    def __init__(self, stories: Sequence[RequestStory] = ()) -> None:
        self.stories = list(stories)

    async def story(self, tenant: str, request_id: str) -> RequestStory | None:
        for s in sorted(self.stories, key=lambda s: s["submitted_at"], reverse=True):
            if s["tenant"] == tenant and request_id in (s.get("query_id"), s.get("correlation_id")):
                return s
        return None

    async def find(self, tenant: str, query: RequestFilter) -> list[RequestStory]:
        q = query
        found = [
            {k: v for k, v in s.items() if k != "sources"}
            for s in sorted(self.stories, key=lambda s: s["submitted_at"], reverse=True)
            if s["tenant"] == tenant
            and (q.status is None or s.get("status") == q.status)
            and (q.tier is None or s.get("tier") == q.tier)
            and (q.since is None or s["submitted_at"] >= q.since.isoformat())
            and (q.until is None or s["submitted_at"] < q.until.isoformat())
        ]
        return found[: q.limit]


class MemoryKeyStore:
    def __init__(self) -> None:
        self._by_hash: dict[str, ApiKey] = {}
        self.lookups = 0  # how often `find` ran (the cache's tests count them)

    async def create(
        self,
        new: NewKey,
        tenant: str,
        *,
        name: str | None = None,
        groups: Sequence[str] = (),
        rate_per_minute: int | None = None,
        scopes: Sequence[Scope] = SCOPES,
    ) -> ApiKey:
        key = ApiKey(
            new.key_id, tenant, name, tuple(groups), rate_per_minute, created_at=datetime.now(UTC),
            scopes=scopes_of(scopes),
        )  # fmt: skip
        self._by_hash[new.key_hash] = key
        return key

    async def find(self, key_hash: str) -> ApiKey | None:
        self.lookups += 1
        key = self._by_hash.get(key_hash)
        if key is None or not key.active:
            return None
        key = self._by_hash[key_hash] = dataclasses.replace(key, last_used_at=datetime.now(UTC))
        return key

    async def list(self, tenant: str | None = None, *, include_revoked: bool = False) -> list[ApiKey]:
        return [
            k
            for k in self._by_hash.values()
            if (tenant is None or k.tenant == tenant) and (include_revoked or k.active)
        ]

    async def revoke(self, key_id: str) -> bool:
        for h, k in self._by_hash.items():
            if k.key_id == key_id and k.active:
                self._by_hash[h] = dataclasses.replace(k, revoked_at=datetime.now(UTC))
                return True
        return False

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
