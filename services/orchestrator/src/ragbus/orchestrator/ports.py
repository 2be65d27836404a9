"""Ports of the orchestrator: the chat model a cascade tier calls, the semantic cache of answers, and
conversation memory.

The embedder and vector store ports are shared with the embed service (`ragbus.vectors.ports`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from ragbus.common.errors import DependencyUnavailable, RagbusError
from ragbus.common.events import Citation, RetrievedChunk

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A completion and what it cost in tokens, as the server counted them."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str | None = None


class ChatRejectedError(RagbusError):
    """The model server refused this request for good (e.g. 400: the prompt exceeds its context).

    Sending it again cannot succeed, so the cascade falls back to a lower tier's answer instead of
    retrying. An outage (connection refused, timeout, 5xx, rate limit) is *not* this: it is
    `ChatUnavailable`, called again a bounded number of times before the cascade goes on without it.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ChatUnavailable(DependencyUnavailable):
    """The chat endpoint cannot serve right now (down, overloaded, rate limited, or misconfigured):
    worth calling again later (ragbus.orchestrator.cascade.FailurePolicy says how often)."""


@runtime_checkable
class ChatModel(Protocol):
    """A chat model behind an OpenAI-compatible endpoint (or a fake in tests)."""

    @property
    def name(self) -> str:
        """The model's name, recorded in each cascade attempt."""
        ...

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> ChatResult:
        """One completion. Raises ChatRejectedError for a request that can never succeed."""
        ...

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], Awaitable[None]],
    ) -> ChatResult:
        """One completion, each piece of text handed to `on_text` as the server sends it; the whole
        result (text, token counts) at the end. Errors as `complete`."""
        ...

    async def ping(self) -> None:
        """Raise if the model server cannot serve (health check)."""
        ...

    async def aclose(self) -> None: ...


class CacheEntry(BaseModel):
    """One cached answer: what the guard and the user need to see it again (the retrieved chunks' text
    included: the output guard checks the answer against them), and the documents it depends on."""

    model_config = ConfigDict(frozen=True)

    query_id: str
    question: str
    answer: str
    citations: list[Citation]
    retrieved: list[RetrievedChunk]
    tier: int
    reason: str
    cached_at: datetime

    @property
    def sources(self) -> list[str]:
        """Every document retrieved for it: a change to any of them may change the answer."""
        return sorted({c.doc_id for c in self.retrieved})

    def fresh(self, ttl_s: float, now: datetime) -> bool:
        return (now - self.cached_at).total_seconds() <= ttl_s


@dataclass(frozen=True, slots=True)
class CacheFound:
    entry: CacheEntry
    similarity: float


@runtime_checkable
class AnswerCache(Protocol):
    """Past answers by the meaning of their question, per tenant and scope (ragbus.orchestrator.semantic_cache
    says when one may answer again)."""

    async def lookup(
        self, tenant: str, scope: str, question: str, vector: Sequence[float]
    ) -> CacheFound | None:
        """The closest entry of `tenant` in `scope` that may answer `question`, or None."""
        ...

    async def store(self, tenant: str, scope: str, vector: Sequence[float], entry: CacheEntry) -> None:
        """Keep `entry` (the same question in the same scope replaces the older answer)."""
        ...

    async def invalidate(self, tenant: str, doc_ids: Sequence[str]) -> int:
        """Forget every entry that used one of these documents. Returns how many."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange of a conversation, as the user saw it."""

    query_id: str
    question: str
    answer: str


@runtime_checkable
class ConversationMemory(Protocol):
    """The earlier turns of each conversation, per tenant, bounded."""

    async def turns(self, tenant: str, conversation_id: str) -> list[Turn]:
        """The conversation's kept turns, oldest first."""
        ...

    async def record(self, tenant: str, conversation_id: str, turn: Turn) -> None:
        """Add a turn (the same query id again replaces it), forgetting the oldest past the bound."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...
