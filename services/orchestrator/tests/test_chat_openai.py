"""The OpenAI-compatible adapter: what it sends, what it reads back, and how it sorts server errors
into retry (outage), wait (misconfigured endpoint) and fall back (this request can never succeed).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from ragbus.common.errors import DependencyUnavailable
from ragbus.common.telemetry import recording
from ragbus.orchestrator.adapters.chat_openai import OpenAIChatModel
from ragbus.orchestrator.ports import ChatMessage, ChatRejectedError, ChatUnavailable

MESSAGES = [ChatMessage("system", "Answer from the sources."), ChatMessage("user", "Question: why?")]


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "tiny-served",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
    }


def model_answering(
    status: int, body: dict[str, Any], seen: list[dict[str, Any]] | None = None
) -> OpenAIChatModel:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(
                {
                    "path": request.url.path,
                    "auth": request.headers.get("authorization"),
                    **json.loads(request.content),
                }
            )
        return httpx2.Response(status, json=body)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return OpenAIChatModel(
        base_url="http://model.test/v1", model="tiny", api_key="sk-test", http_client=client
    )


async def test_a_completion_is_sent_and_read_back_with_its_token_counts() -> None:
    seen: list[dict[str, Any]] = []
    model = model_answering(200, completion("Because of the fair [1]."), seen)
    result = await model.complete(MESSAGES, max_tokens=64, temperature=0.0)

    assert result.text == "Because of the fair [1]."
    assert (result.prompt_tokens, result.completion_tokens, result.model) == (42, 7, "tiny-served")
    assert result.finish_reason == "stop"
    [request] = seen
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test"
    assert request["model"] == "tiny"
    assert request["max_tokens"] == 64
    assert request["temperature"] == 0.0
    assert request["messages"] == [
        {"role": "system", "content": "Answer from the sources."},
        {"role": "user", "content": "Question: why?"},
    ]
    await model.aclose()


async def test_a_prompt_too_long_is_rejected_for_good() -> None:
    error = {
        "error": {
            "code": 400,
            "message": "request exceeds the available context size",
            "type": "exceed_context_size_error",
        }
    }
    model = model_answering(400, error)
    with pytest.raises(ChatRejectedError, match="context size") as caught:
        await model.complete(MESSAGES, max_tokens=64, temperature=0.0)
    assert caught.value.status == 400


@pytest.mark.parametrize("status", [401, 404])
async def test_a_misconfigured_endpoint_waits_for_the_operator(status: int) -> None:
    model = model_answering(status, {"error": {"message": "nope"}})
    with pytest.raises(DependencyUnavailable, match=f"answered {status}"):
        await model.complete(MESSAGES, max_tokens=64, temperature=0.0)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_and_rate_limits_are_retryable(status: int) -> None:
    model = model_answering(status, {"error": {"message": "busy"}})
    with pytest.raises(ChatUnavailable, match=f"{status} - busy") as caught:
        await model.complete(MESSAGES, max_tokens=64, temperature=0.0)
    assert isinstance(caught.value, DependencyUnavailable)  # what the middleware retries


async def test_a_server_that_is_down_is_unavailable_not_rejected() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAIChatModel(base_url=f"http://127.0.0.1:{port}/v1", model="tiny", timeout_s=5)
    with pytest.raises(ChatUnavailable, match="APIConnectionError") as caught:
        await model.complete(MESSAGES, max_tokens=8, temperature=0.0)
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)
    with pytest.raises(ChatUnavailable):
        await model.ping()
    await model.aclose()


async def test_ping_checks_that_the_endpoint_serves_the_model() -> None:
    def listing(model_id: str) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "x"}],
        }

    with pytest.raises(DependencyUnavailable, match="does not serve 'tiny'"):
        await model_answering(200, listing("other")).ping()
    await model_answering(200, listing("tiny")).ping()


async def test_each_call_is_a_client_span_with_the_genai_attributes() -> None:
    with recording("orchestrator") as exporter:
        await model_answering(200, completion("Because [1].")).complete(
            MESSAGES, max_tokens=64, temperature=0.2
        )
        with pytest.raises(ChatRejectedError):
            await model_answering(400, {"error": {"message": "too long"}}).complete(
                MESSAGES, max_tokens=64, temperature=0.0
            )
    ok, failed = exporter.get_finished_spans()

    assert ok.name == "chat tiny"
    assert ok.kind == SpanKind.CLIENT
    assert dict(ok.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "tiny",
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.2,
        "server.address": "model.test",
        "server.port": 80,
        "gen_ai.response.model": "tiny-served",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 42,
        "gen_ai.usage.output_tokens": 7,
    }
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "ChatRejectedError"
    assert "gen_ai.usage.input_tokens" not in (failed.attributes or {})


async def test_a_streamed_completion_hands_on_each_piece_and_counts_the_tokens() -> None:
    def chunk(content: str | None, finish: str | None = None, usage: bool = False) -> str:
        body: dict[str, Any] = {
            "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "tiny-served",
            "choices": [] if usage else [
                {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
            ],
        }  # fmt: skip
        if usage:
            body["usage"] = {"prompt_tokens": 42, "completion_tokens": 3, "total_tokens": 45}
        return f"data: {json.dumps(body)}\n\n"

    sent: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        events = [chunk("Because"), chunk(" of the"), chunk(" fair [1].", "stop"), chunk(None, usage=True)]
        body = "".join(events) + "data: [DONE]\n\n"
        return httpx2.Response(200, text=body, headers={"content-type": "text/event-stream"})

    model = OpenAIChatModel(
        base_url="http://model.test/v1",
        model="tiny",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    pieces: list[str] = []

    async def on_text(piece: str) -> None:
        pieces.append(piece)

    result = await model.stream(MESSAGES, max_tokens=64, temperature=0.0, on_text=on_text)
    assert pieces == ["Because", " of the", " fair [1]."]
    assert (result.text, result.finish_reason, result.model) == (
        "Because of the fair [1].",
        "stop",
        "tiny-served",
    )
    assert (result.prompt_tokens, result.completion_tokens) == (42, 3)
    assert sent[0]["stream"] is True
    assert sent[0]["stream_options"] == {"include_usage": True}
