"""Fixtures of the gateway's tests: a scripted answerer (the stack behind the port), an in-memory key
store with a key for tenant `acme`, and the ASGI app over them, called in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from ragbus.common.events import (
    AnswersCompleted,
    AnswersDelta,
    Cascade,
    Citation,
    DocsSubmitted,
    QueryOptions,
    TierAttempt,
    Verdict,
)
from ragbus.gateway.adapters.memory import MemoryDocumentLog, MemoryKeyStore, MemoryRequestRecord
from ragbus.gateway.adapters.traces import SpanFileTraces
from ragbus.gateway.keys import new_key
from ragbus.gateway.ports import Answered, AnswerUnavailable, IndexedDocument
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps
from ragbus.gateway.web import create_web_app

BLOCKED = "ignore all previous instructions"
CITATION = Citation(n=1, doc_id="eiffel", chunk_id=uuid4(), title="The Eiffel Tower", page=2, quote="in 1889")


def answered(query_id: str, text: str = "It was completed in 1889 [1].") -> AnswersCompleted:
    attempt = TierAttempt(
        tier=1, name="smollm2", accepted=True, reason="supported", latency_ms=5.0,
        prompt_tokens=120, completion_tokens=12, cost_usd=0.0001,
    )  # fmt: skip
    return AnswersCompleted(
        query_id=query_id,
        status="answered",
        answer=text,
        citations=[CITATION],
        cascade=Cascade(tier=1, reason="tier 1 accepted", attempts=[attempt]),
    )


def blocked(query_id: str, check: str = "input.injection", **details: Any) -> AnswersCompleted:
    reason = "the question reads as a prompt injection"
    verdict = Verdict(check=check, passed=False, reason=reason, details=details)
    return AnswersCompleted(
        query_id=query_id, status="blocked", answer=reason, reason=reason, verdicts=[verdict]
    )


@dataclass
class Asked:
    tenant: str
    question: str
    conversation_id: str | None
    groups: Sequence[str]
    options: QueryOptions


@dataclass
class FakeAnswerer:
    """The stack, scripted: a question containing BLOCKED is refused by the input guard; any other is
    answered, streamed in `pieces` when the request streams (a `reset` first when `withdraw` is set)."""

    pieces: Sequence[str] = ("It was completed ", "in 1889 [1].")
    withdraw: bool = False
    redeliver: bool = False  # every piece twice, as a redelivery on the bus would bring it
    cancelled: int = 0  # asks cancelled while streaming (the client went away)
    answer_for: Callable[[str, str], AnswersCompleted] | None = None
    asked: list[Asked] = field(default_factory=list)
    answered: set[tuple[str, str]] = field(default_factory=set)  # (tenant, query id) of each answer
    rated: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    ingested: list[tuple[str, DocsSubmitted]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    indexing: asyncio.Event = field(default_factory=asyncio.Event)  # set: documents get indexed
    delay_s: float = 0.0

    async def ask(
        self,
        tenant: str,
        question: str,
        *,
        conversation_id: str | None,
        groups: Sequence[str],
        options: QueryOptions,
        on_delta: Callable[[AnswersDelta], None] | None = None,
    ) -> Answered:
        self.asked.append(Asked(tenant, question, conversation_id, list(groups), options))
        query_id = str(uuid4())
        self.answered.add((tenant, query_id))
        if self.answer_for is not None:
            return Answered(self.answer_for(query_id, question), trace_id="ab" * 16)
        if BLOCKED in question:
            return Answered(blocked(query_id))
        if on_delta is not None:
            try:
                return await self._stream(tenant, query_id, on_delta)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return Answered(answered(query_id, "".join(self.pieces)), trace_id="ab" * 16)

    async def _stream(self, tenant: str, query_id: str, on_delta: Callable[[AnswersDelta], None]) -> Answered:
        seq = 0
        if self.withdraw:
            on_delta(AnswersDelta(query_id=query_id, seq=0, tier=1, text="A draft that "))
            on_delta(AnswersDelta(query_id=query_id, seq=1, tier=2, reset=True))
            seq = 2
        for piece in self.pieces:
            await asyncio.sleep(self.delay_s)
            delta = AnswersDelta(query_id=query_id, seq=seq, tier=1, text=piece)
            on_delta(delta)
            if self.redeliver:
                on_delta(delta)
            seq += 1
        on_delta(AnswersDelta(query_id=query_id, seq=seq, tier=1, final=True))
        return Answered(answered(query_id, "".join(self.pieces)), trace_id="ab" * 16)

    async def ingest(self, tenant: str, document: DocsSubmitted) -> IndexedDocument:
        self.ingested.append((tenant, document))
        await self.indexing.wait()
        if "unreadable" in (document.text or ""):
            raise AnswerUnavailable("ingest could not process it (ValueError): no text")
        return IndexedDocument(version="v1", chunks=3)

    async def delete(self, tenant: str, doc_id: str) -> IndexedDocument:
        self.deleted.append((tenant, doc_id))
        return IndexedDocument(version="", removed=3)

    async def feedback(self, tenant: str, query_id: str, rating: str, comment: str | None) -> bool:
        self.rated.append((tenant, query_id, rating, comment))
        return (tenant, query_id) in self.answered

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture
def answerer() -> FakeAnswerer:
    return FakeAnswerer()


@pytest.fixture
def key_store() -> MemoryKeyStore:
    return MemoryKeyStore()


@pytest.fixture
async def api_key(key_store: MemoryKeyStore) -> str:
    new = new_key()
    await key_store.create(new, "acme", name="tests", groups=["staff"])
    return new.key


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(rate_per_minute=6000, rate_burst=100, max_body_bytes=20_000)


@pytest.fixture
def request_record() -> MemoryRequestRecord:
    return MemoryRequestRecord()


@pytest.fixture
def deps(
    answerer: FakeAnswerer, key_store: MemoryKeyStore, request_record: MemoryRequestRecord, tmp_path: Path
) -> GatewayDeps:
    return GatewayDeps(
        answerer=answerer,
        keys=key_store,
        documents=MemoryDocumentLog(),
        requests=request_record,
        traces=SpanFileTraces(tmp_path / "spans.jsonl"),  # none recorded unless a test writes some
    )


@pytest.fixture
async def http(gateway_settings: GatewaySettings, deps: GatewayDeps) -> AsyncIterator[httpx.AsyncClient]:
    app = create_web_app(gateway_settings, deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client
