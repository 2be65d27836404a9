"""The official `openai` SDK as a real client: over a uvicorn server on a free loopback port (real
sockets, real streaming) and in process, for a chat, a stream, and the error of a blocked question."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import httpx2
import openai
import pytest

from ragbus.gateway.adapters.memory import MemoryKeyStore
from ragbus.gateway.app import HttpServer
from ragbus.gateway.keys import new_key
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps
from ragbus.gateway.web import create_web_app

from .conftest import BLOCKED, FakeAnswerer


@pytest.fixture
async def server(gateway_settings: GatewaySettings, deps: GatewayDeps) -> AsyncIterator[HttpServer]:
    settings = gateway_settings.model_copy(update={"host": "127.0.0.1", "port": 0})
    http = HttpServer(settings, create_web_app(settings, deps))
    await http.start()
    yield http
    await http.stop()


@pytest.fixture
async def sdk(server: HttpServer, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0) as client:
        yield client


async def test_the_sdk_lists_the_model_and_gets_an_answer_with_its_citations(
    sdk: openai.AsyncOpenAI, answerer: FakeAnswerer
) -> None:
    assert [m.id async for m in sdk.models.list()] == ["ragbus"]
    completion = await sdk.chat.completions.create(
        model="ragbus",
        messages=[{"role": "user", "content": "When was the Eiffel Tower completed?"}],
        extra_body={"conversation_id": "c-42"},
    )
    message = completion.choices[0].message
    assert message.content is not None
    assert message.content.startswith("It was completed in 1889 [1].")
    assert "[1] The Eiffel Tower (eiffel), p. 2" in message.content
    assert message.model_extra is not None
    assert [c["doc_id"] for c in message.model_extra["citations"]] == ["eiffel"]
    assert completion.usage is not None
    assert completion.usage.total_tokens == 132
    assert answerer.asked[0].conversation_id == "c-42"


async def test_the_sdk_streams_the_answer_in_pieces(sdk: openai.AsyncOpenAI, answerer: FakeAnswerer) -> None:
    answerer.pieces = ("It was ", "completed ", "in 1889 ", "[1].")
    answerer.delay_s = 0.01
    stream = await sdk.chat.completions.create(
        model="ragbus",
        messages=[{"role": "user", "content": "When was the Eiffel Tower completed?"}],
        stream=True,
    )
    pieces, finish, citations = [], None, None
    async for chunk in stream:
        choice = chunk.choices[0]
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
            assert choice.delta.model_extra is not None
            citations = choice.delta.model_extra["citations"]
    assert pieces[:4] == ["It was ", "completed ", "in 1889 ", "[1]."]
    assert "".join(pieces).endswith("[1] The Eiffel Tower (eiffel), p. 2")
    assert finish == "stop"
    assert citations is not None
    assert [c["doc_id"] for c in citations] == ["eiffel"]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_sdk_raises_the_guards_reason_for_a_blocked_question(
    sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model="ragbus", messages=[{"role": "user", "content": f"Now {BLOCKED}."}], stream=stream
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "content_policy_violation"
    assert "prompt injection" in caught.value.message


async def test_the_sdk_raises_authentication_error_for_a_bad_key(server: HttpServer) -> None:
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_the_sdk_raises_permission_denied_for_a_key_without_the_scope(
    server: HttpServer, key_store: MemoryKeyStore
) -> None:
    new = new_key()
    await key_store.create(new, "acme", scopes=["ingest"])
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=new.key, max_retries=0) as client:
        with pytest.raises(openai.PermissionDeniedError) as raised:
            await client.chat.completions.create(model="ragbus", messages=[{"role": "user", "content": "q"}])
    assert raised.value.code == "insufficient_scope"


async def test_the_sdk_works_in_process_too(
    gateway_settings: GatewaySettings, deps: GatewayDeps, api_key: str
) -> None:
    """No server: httpx's ASGI transport (how an application embedding the gateway could test it)."""
    # The SDK's own HTTP client (httpx2 since openai 3) with its ASGI transport.
    transport = httpx2.ASGITransport(app=create_web_app(gateway_settings, deps))
    async with (
        httpx2.AsyncClient(transport=transport) as http,
        openai.AsyncOpenAI(base_url="http://gateway/v1", api_key=api_key, http_client=http) as client,
    ):
        completion = await client.chat.completions.create(
            model="ragbus", messages=[{"role": "user", "content": "q"}]
        )
    assert completion.choices[0].message.content is not None
    assert completion.choices[0].message.content.startswith("It was completed in 1889 [1].")


async def test_a_client_that_leaves_mid_stream_stops_the_wait_for_its_answer(
    server: HttpServer, answerer: FakeAnswerer, api_key: str
) -> None:
    """No waiter is left behind: the request's wait for its answer is cancelled with the connection."""
    answerer.pieces = tuple(f"piece {i} " for i in range(50))
    answerer.delay_s = 0.05
    body = {"model": "ragbus", "messages": [{"role": "user", "content": "q"}], "stream": True}
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx.AsyncClient(base_url=server.url) as client,
        client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        async for line in response.aiter_lines():
            if "piece 1 " in line:
                break  # leave after two pieces
    for _ in range(200):
        if answerer.cancelled:
            break
        await asyncio.sleep(0.02)
    assert answerer.cancelled == 1
    async with httpx.AsyncClient(base_url=server.url) as client:
        metrics = (await client.get("/metrics")).text
    assert "ragbus_gateway_streams 0.0" in metrics
