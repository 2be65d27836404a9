"""ChatModel over any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Errors, sorted by what retrying can change:
- outage (connection refused, timeout, 5xx, 429 rate limit) and a misconfigured endpoint (401/403 bad
  key, 404 unknown model, 408/409): `ChatUnavailable`. The cascade calls again with backoff, then goes on
  without the tier (the answer's cascade names the error), and its circuit breaker skips the tier while
  it stays down: a model outage never holds the queue;
- any other 4xx (400 prompt too long, 413, 422): this request can never succeed: `ChatRejectedError`, and
  the cascade falls back at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx2
import openai
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from ragbus.common.telemetry import tracer
from ragbus.orchestrator.ports import ChatMessage, ChatRejectedError, ChatResult, ChatUnavailable

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

    from ragbus.orchestrator.settings import ChatTierSettings

# openai's errors that mean "down or overloaded, try later".
_OUTAGE: tuple[type[openai.APIError], ...] = (
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
        provider: str = "openai",
        http_client: httpx2.AsyncClient | None = None,  # tests pass one with a mock transport
    ) -> None:
        self._model = model
        self._base_url = base_url
        self._provider = provider
        url = urlsplit(base_url)
        self._server: dict[str, AttributeValue] = {
            "server.address": url.hostname or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        # max_retries=0: retries live in one place, the cascade's FailurePolicy (bounded, with a circuit
        # breaker); a local server needs no key, but the client insists on one.
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
        return cls(
            base_url=tier.base_url,
            model=tier.model,
            api_key=key,
            timeout_s=tier.timeout_s,
            provider=tier.provider,
        )

    @property
    def name(self) -> str:
        return self._model

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], Awaitable[None]] | None = None,
    ) -> ChatResult:
        # One client span per model call, with OpenTelemetry's GenAI attributes (semantic conventions
        # for generative AI): what was asked of which model, and the tokens it took.
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self._provider,
            "gen_ai.request.model": self._model,
            "gen_ai.request.max_tokens": max_tokens,
            "gen_ai.request.temperature": temperature,
            **self._server,
        }
        with tracer("orchestrator").start_as_current_span(
            f"chat {self._model}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                result = await self._complete(
                    messages, max_tokens=max_tokens, temperature=temperature, on_text=on_text
                )
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
                raise
            span.set_attributes(
                {
                    "gen_ai.response.model": result.model,
                    "gen_ai.response.finish_reasons": [result.finish_reason or "unknown"],
                    "gen_ai.usage.input_tokens": result.prompt_tokens,
                    "gen_ai.usage.output_tokens": result.completion_tokens,
                }
            )
            return result

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], Awaitable[None]],
    ) -> ChatResult:
        return await self.complete(messages, max_tokens=max_tokens, temperature=temperature, on_text=on_text)

    async def _complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], Awaitable[None]] | None = None,
    ) -> ChatResult:
        payload: list[ChatCompletionMessageParam] = [
            {"role": m.role, "content": m.content}  # type: ignore[misc]
            for m in messages
        ]
        try:
            if on_text is not None:
                return await self._streamed(payload, max_tokens, temperature, on_text)
            response = await self._client.chat.completions.create(
                model=self._model, messages=payload, max_tokens=max_tokens, temperature=temperature
            )
        except _OUTAGE as exc:
            raise ChatUnavailable(
                f"chat endpoint {self._base_url} (model {self._model}): {_describe(exc)}"
            ) from exc
        except openai.APIStatusError as exc:
            if exc.status_code in _ENDPOINT_MISCONFIGURED or exc.status_code >= 500:
                raise ChatUnavailable(
                    f"chat endpoint {self._base_url} (model {self._model}) answered {exc.status_code}: "
                    f"{exc.message}"
                ) from exc
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

    async def _streamed(
        self,
        payload: list[ChatCompletionMessageParam],
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], Awaitable[None]],
    ) -> ChatResult:
        """Server-sent chunks; usage from the last one (`include_usage`), else counted as chunks."""
        chunks = await self._client.chat.completions.create(
            model=self._model,
            messages=payload,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
            stream_options={"include_usage": True},
        )
        text: list[str] = []
        finish: str | None = None
        model, prompt_tokens, completion_tokens, pieces = self._model, 0, 0, 0
        async for chunk in chunks:
            model = chunk.model or model
            if chunk.usage is not None:
                prompt_tokens, completion_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                if piece := choice.delta.content:
                    text.append(piece)
                    pieces += 1
                    await on_text(piece)
        return ChatResult(
            text="".join(text),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens or pieces,
            model=model,
            finish_reason=finish,
        )

    async def ping(self) -> None:
        """Raise unless the endpoint answers and serves this model."""
        try:
            models = await self._client.models.list()
        except openai.APIError as exc:
            raise ChatUnavailable(f"chat endpoint {self._base_url}: {_describe(exc)}") from exc
        names = {m.id for m in models.data}
        if names and self._model not in names:
            raise ChatUnavailable(
                f"chat endpoint {self._base_url} does not serve {self._model!r} (it serves {sorted(names)})"
            )

    async def aclose(self) -> None:
        await self._client.close()


def _describe(exc: openai.APIError) -> str:
    # A status error's message already names its code ("Error code: 503 - ...").
    return exc.message if isinstance(exc, openai.APIStatusError) else f"{type(exc).__name__}: {exc.message}"
