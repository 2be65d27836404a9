"""ChatModel over any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Errors, sorted by what retrying can change:
- outage (connection refused, timeout, 5xx, 429 rate limit): raised as openai's own exceptions, listed in
  `RETRYABLE_ERRORS` for `make_broker(retryable=...)`, so the message waits for the server to come back;
- a misconfigured endpoint (401/403 bad key, 404 unknown model, 408/409): every request would fail the
  same, so it is `DependencyUnavailable` (retried, loudly logged) rather than a silent downgrade of
  every answer to a lower tier;
- any other 4xx (400 prompt too long, 413, 422): this request can never succeed: `ChatRejectedError`, and
  the cascade falls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx2
import openai

from ragbus.common.errors import DependencyUnavailable
from ragbus.orchestrator.ports import ChatMessage, ChatRejectedError, ChatResult

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

    from ragbus.orchestrator.settings import ChatTierSettings

RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    openai.APIConnectionError,  # includes APITimeoutError
    openai.RateLimitError,
    openai.InternalServerError,
)
_ENDPOINT_MISCONFIGURED = frozenset({401, 403, 404, 408, 409})


class OpenAIChatModel:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        http_client: httpx2.AsyncClient | None = None,  # tests pass one with a mock transport
    ) -> None:
        self._model = model
        self._base_url = base_url
        # max_retries=0: retries live in one place, the shared middleware (with backoff, and without
        # holding a request open); a local server needs no key, but the client insists on one.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "unused",
            timeout=timeout_s,
            max_retries=0,
            http_client=http_client,
        )

    @classmethod
    def from_settings(cls, tier: ChatTierSettings) -> OpenAIChatModel:
        key = tier.api_key.get_secret_value() if tier.api_key else None
        return cls(base_url=tier.base_url, model=tier.model, api_key=key, timeout_s=tier.timeout_s)

    @property
    def name(self) -> str:
        return self._model

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> ChatResult:
        payload: list[ChatCompletionMessageParam] = [
            {"role": m.role, "content": m.content}  # type: ignore[misc]
            for m in messages
        ]
        try:
            response = await self._client.chat.completions.create(
                model=self._model, messages=payload, max_tokens=max_tokens, temperature=temperature
            )
        except openai.APIStatusError as exc:
            if exc.status_code in _ENDPOINT_MISCONFIGURED:
                raise DependencyUnavailable(
                    f"chat endpoint {self._base_url} (model {self._model}) answered {exc.status_code}: "
                    f"{exc.message}"
                ) from exc
            if isinstance(exc, RETRYABLE_ERRORS) or exc.status_code >= 500:
                raise
            raise ChatRejectedError(exc.message, status=exc.status_code) from exc
        choice = response.choices[0] if response.choices else None
        usage = response.usage
        return ChatResult(
            text=(choice.message.content or "") if choice else "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            model=response.model or self._model,
            finish_reason=choice.finish_reason if choice else None,
        )

    async def ping(self) -> None:
        """Raise unless the endpoint answers and serves this model."""
        try:
            models = await self._client.models.list()
        except openai.APIStatusError as exc:
            raise DependencyUnavailable(
                f"chat endpoint {self._base_url}: {exc.status_code} {exc.message}"
            ) from exc
        names = {m.id for m in models.data}
        if names and self._model not in names:
            raise DependencyUnavailable(
                f"chat endpoint {self._base_url} does not serve {self._model!r} (it serves {sorted(names)})"
            )

    async def aclose(self) -> None:
        await self._client.close()
