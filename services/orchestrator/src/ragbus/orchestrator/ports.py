"""Ports of the orchestrator: the chat model a cascade tier calls.

The embedder and vector store ports are shared with the embed service (`ragbus.vectors.ports`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ragbus.common.errors import DependencyUnavailable, RagbusError

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

    async def ping(self) -> None:
        """Raise if the model server cannot serve (health check)."""
        ...

    async def aclose(self) -> None: ...
