"""A scripted ChatModel for tests and benchmarks: no model, no network, and it fails on demand.

It raises what the real adapter raises (ChatUnavailable for an outage, ChatRejectedError for a request
that can never succeed), so the retry and fallback paths are the real ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ragbus.orchestrator.ports import ChatMessage, ChatRejectedError, ChatResult, ChatUnavailable

Reply = str | Callable[[Sequence[ChatMessage]], str]


class FakeChatModel:
    def __init__(self, reply: Reply = "The sources answer it [1].", *, name: str = "fake-chat") -> None:
        self.reply = reply
        self._name = name
        self.calls: list[list[ChatMessage]] = []
        self.down = False  # True: every call fails as if the server were unreachable
        self.reject: int | None = None  # an HTTP status: every call is refused for good
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> ChatResult:
        self.calls.append(list(messages))
        if self.down:
            raise ChatUnavailable("fake-chat: connection refused")
        if self.reject is not None:
            raise ChatRejectedError("the request exceeds the available context size", status=self.reject)
        text = self.reply if isinstance(self.reply, str) else self.reply(messages)
        words = text.split()
        finish = "length" if len(words) > max_tokens else "stop"
        return ChatResult(
            text=" ".join(words[:max_tokens]) if finish == "length" else text,
            prompt_tokens=sum(len(m.content.split()) for m in messages),
            completion_tokens=min(len(words), max_tokens),
            model=self._name,
            finish_reason=finish,
        )

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], Awaitable[None]],
    ) -> ChatResult:
        """`complete`, its text handed on word by word (with the space before each word after the first)."""
        result = await self.complete(messages, max_tokens=max_tokens, temperature=temperature)
        for i, word in enumerate(result.text.split(" ")):
            await on_text(word if i == 0 else f" {word}")
        return result

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("fake chat model is down")

    async def aclose(self) -> None:
        self.closed = True
