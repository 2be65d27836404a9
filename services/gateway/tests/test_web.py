"""The HTTP API in process (httpx's ASGI transport) over a scripted answerer and the in-memory keys:
auth, tenancy, limits, the OpenAI shapes, streaming, errors, health, metrics and docs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from ragbus.gateway.adapters.memory import MemoryKeyStore
from ragbus.gateway.keys import new_key
from ragbus.gateway.ports import Answered
from ragbus.gateway.ratelimit import RateLimiter
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps
from ragbus.gateway.web import create_web_app

from .conftest import BLOCKED, FakeAnswerer, blocked

CHAT = "/v1/chat/completions"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ask(question: str = "When was the Eiffel Tower completed?", **extra: Any) -> dict[str, Any]:
    return {"model": "ragbus", "messages": [{"role": "user", "content": question}], **extra}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def events(body: str) -> list[Any]:
    """The `data:` payloads of an SSE body, `[DONE]` as a string."""
    frames = [f for f in body.split("\n\n") if f]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames), frames
    return [f[6:] if f == "data: [DONE]" else json.loads(f[6:]) for f in frames]


# --- authentication and tenancy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk-not-ours"}, {"Authorization": f"Bearer {new_key().key}"}],
    ids=["missing", "malformed", "unknown"],
)
async def test_a_request_without_a_valid_key_is_a_401_in_openais_shape(
    http: httpx.AsyncClient, answerer: FakeAnswerer, headers: dict[str, str]
) -> None:
    for response in (
        await http.post(CHAT, json=ask(), headers=headers),
        await http.get("/v1/models", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert answerer.asked == []  # nothing reached the bus


async def test_the_tenant_and_groups_come_from_the_key_never_from_the_body(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    body = ask(tenant="globex", tenantid="globex", groups=["admins"], user="mallory")
    response = await http.post(CHAT, json=body, headers=auth(api_key))
    assert response.status_code == 200
    assert [(a.tenant, list(a.groups)) for a in answerer.asked] == [("acme", ["staff"])]


async def test_a_revoked_key_is_refused_once_its_cache_entry_is_gone(
    deps: GatewayDeps, key_store: MemoryKeyStore, api_key: str
) -> None:
    app = create_web_app(GatewaySettings(key_cache_s=0), deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        assert (await http.get("/v1/models", headers=auth(api_key))).status_code == 200
        (key,) = await key_store.list()
        assert await key_store.revoke(key.key_id)
        assert (await http.get("/v1/models", headers=auth(api_key))).status_code == 401


async def test_a_verified_key_is_looked_up_once_per_cache_period(
    http: httpx.AsyncClient, key_store: MemoryKeyStore, api_key: str
) -> None:
    for _ in range(3):
        assert (await http.get("/v1/models", headers={"X-API-Key": api_key})).status_code == 200
    assert key_store.lookups == 1


# --- limits -----------------------------------------------------------------------------------------


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not(
    deps: GatewayDeps, key_store: MemoryKeyStore, api_key: str
) -> None:
    app = create_web_app(GatewaySettings(rate_per_minute=1, rate_burst=2), deps)
    other = new_key()
    await key_store.create(other, "acme")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        codes = [(await http.get("/v1/models", headers=auth(api_key))).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = await http.get("/v1/models", headers=auth(api_key))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert (await http.get("/v1/models", headers=auth(other.key))).status_code == 200


async def test_a_keys_own_rate_wins_over_the_default(
    deps: GatewayDeps, key_store: MemoryKeyStore, api_key: str
) -> None:
    clock = Clock()
    app = create_web_app(GatewaySettings(rate_per_minute=1, rate_burst=1), deps, limiter=RateLimiter(clock))
    generous = new_key()
    await key_store.create(generous, "acme", rate_per_minute=6000)  # 100 a second
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:

        async def codes() -> list[int]:
            keys = (generous.key, api_key)
            return [(await http.get("/v1/models", headers=auth(k))).status_code for k in keys]

        assert await codes() == [200, 200]  # each key's burst of one
        clock.now += 0.011  # a hundredth of a second: a token for the generous key only
        assert await codes() == [200, 429]


async def test_a_body_over_the_limit_is_a_413_by_its_length_or_as_it_is_read(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    big = ask("x" * 30_000)
    response = await http.post(CHAT, json=big, headers=auth(api_key))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    async def chunked() -> Any:  # no Content-Length: counted while it is read
        payload = json.dumps(big).encode()
        for i in range(0, len(payload), 4096):
            yield payload[i : i + 4096]

    response = await http.post(
        CHAT, content=chunked(), headers=auth(api_key) | {"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert answerer.asked == []


async def test_cors_answers_preflights_for_the_configured_origins_only(deps: GatewayDeps) -> None:
    app = create_web_app(GatewaySettings(cors_origins=["https://app.example"]), deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        ok = await http.options(CHAT, headers={"Origin": "https://app.example", **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = await http.options(CHAT, headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
    app = create_web_app(GatewaySettings(), deps)  # none configured: no CORS headers at all
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        response = await http.get("/healthz", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers


# --- chat completions ----------------------------------------------------------------------------------


async def test_models_lists_the_configured_names(http: httpx.AsyncClient, api_key: str) -> None:
    listed = (await http.get("/v1/models", headers=auth(api_key))).json()
    assert listed == {
        "object": "list",
        "data": [{"id": "ragbus", "object": "model", "created": 0, "owned_by": "ragbus"}],
    }
    assert (await http.get("/v1/models/ragbus", headers=auth(api_key))).json()["id"] == "ragbus"
    missing = await http.get("/v1/models/gpt-4o", headers=auth(api_key))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "model_not_found")


async def test_an_answer_comes_back_as_a_chat_completion_with_its_citations(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    body = ask(conversation_id="conv-1", ragbus={"max_tier": 1})
    body["messages"] = [
        {"role": "user", "content": "When was the Eiffel Tower completed?"},
        {"role": "assistant", "content": "In 1889."},
        {"role": "user", "content": "How tall is it?"},
    ]
    response = await http.post(CHAT, json=body, headers=auth(api_key))
    assert response.status_code == 200
    completion = response.json()
    message = completion["choices"][0]["message"]
    assert message["content"].startswith("It was completed in 1889 [1].\n\nSources:\n[1] The Eiffel Tower")
    assert [c["doc_id"] for c in message["citations"]] == ["eiffel"]
    assert completion["ragbus"]["tier"] == 1
    (asked,) = answerer.asked
    assert (asked.question, asked.conversation_id, asked.options.max_tier) == ("How tall is it?", "conv-1", 1)
    assert asked.options.stream is False


async def test_an_unknown_model_or_an_invalid_body_is_a_4xx_in_openais_shape(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    unknown = await http.post(CHAT, json=ask() | {"model": "gpt-4o"}, headers=auth(api_key))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
    invalid = await http.post(CHAT, json={"model": "ragbus", "messages": []}, headers=auth(api_key))
    assert invalid.status_code == 400
    assert invalid.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in invalid.json()["error"]["message"]
    assert answerer.asked == []


async def test_a_blocked_question_is_a_400_with_the_guards_reason(
    http: httpx.AsyncClient, api_key: str
) -> None:
    for stream in (False, True):  # streamed or not: refused before any text, so an HTTP error
        response = await http.post(CHAT, json=ask(f"Please {BLOCKED}", stream=stream), headers=auth(api_key))
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["message"] == "the question reads as a prompt injection"
        assert (error["code"], error["check"]) == ("content_policy_violation", "input.injection")


async def test_the_tenants_quota_from_the_guard_is_a_429(deps: GatewayDeps, api_key: str) -> None:
    deps.answerer = FakeAnswerer(answer_for=lambda qid, _: blocked(qid, check="input.rate", retry_after_s=4))
    app = create_web_app(GatewaySettings(), deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        response = await http.post(CHAT, json=ask(), headers=auth(api_key))
    assert (response.status_code, response.headers["Retry-After"]) == (429, "4")


async def test_a_stream_is_openais_chunks_with_the_sources_citations_and_done(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    body = ask(stream=True, stream_options={"include_usage": True})
    async with http.stream("POST", CHAT, json=body, headers=auth(api_key)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join([part async for part in response.aiter_text()])
    frames = events(text)
    assert frames[-1] == "[DONE]"
    chunks = frames[:-1]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == "It was completed in 1889 [1].\n\nSources:\n[1] The Eiffel Tower (eiffel), p. 2"
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert [c["doc_id"] for c in last["choices"][0]["delta"]["citations"]] == ["eiffel"]
    assert last["ragbus"]["answer"] == "It was completed in 1889 [1]."
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 132
    assert answerer.asked[0].options.stream is True


async def test_a_withdrawn_draft_is_marked_in_the_stream(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    answerer.withdraw = True
    async with http.stream("POST", CHAT, json=ask(stream=True), headers=auth(api_key)) as response:
        frames = events("".join([part async for part in response.aiter_text()]))
    texts = [(c["choices"][0]["delta"].get("content"), c.get("ragbus", {}).get("reset")) for c in frames[:-1]]
    assert texts[1:4] == [("A draft that ", None), ("", True), ("It was completed ", None)]


async def test_an_answer_blocked_after_its_draft_ends_the_stream_with_an_error_event(
    deps: GatewayDeps, api_key: str
) -> None:
    class BlockedAfterDraft(FakeAnswerer):
        async def ask(self, tenant: str, question: str, **kw: Any) -> Any:
            drafted = await super().ask(tenant, question, **kw)  # streams its draft
            return Answered(blocked(drafted.answer.query_id, check="output.pii"))

    deps.answerer = BlockedAfterDraft()
    app = create_web_app(GatewaySettings(), deps)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
        http.stream("POST", CHAT, json=ask(stream=True), headers=auth(api_key)) as response,
    ):
        assert response.status_code == 200
        frames = events("".join([part async for part in response.aiter_text()]))
    assert frames[-1] != "[DONE]"
    assert frames[-1]["error"]["code"] == "content_policy_violation"
    assert frames[-1]["error"]["check"] == "output.pii"


# --- operations --------------------------------------------------------------------------------------


async def test_healthz_reports_each_dependency(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "checks": {"kafka": "ok", "database": "ok"}}


async def test_healthz_is_503_while_the_dependencies_are_not_open(gateway_settings: GatewaySettings) -> None:
    from ragbus.common.errors import DependencyUnavailable

    def not_open() -> GatewayDeps:
        raise DependencyUnavailable("PostgreSQL unreachable")

    app = create_web_app(gateway_settings, not_open)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        assert (await http.get("/healthz")).status_code == 503
        response = await http.post(CHAT, json=ask(), headers=auth(new_key().key))
        assert (response.status_code, response.json()["error"]["code"]) == (503, "unavailable")


async def test_metrics_count_requests_by_route_and_status_and_answers_by_outcome(
    http: httpx.AsyncClient, api_key: str
) -> None:
    await http.post(CHAT, json=ask(), headers=auth(api_key))
    await http.post(CHAT, json=ask(BLOCKED), headers=auth(api_key))
    await http.get("/v1/models")
    text = (await http.get("/metrics")).text
    assert (
        'ragbus_gateway_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in text
    )
    assert (
        'ragbus_gateway_requests_total{method="POST",route="/v1/chat/completions",status="400"} 1.0' in text
    )
    assert 'ragbus_gateway_requests_total{method="GET",route="/v1/models",status="401"} 1.0' in text
    assert 'ragbus_gateway_answers_total{outcome="blocked"} 1.0' in text
    assert "ragbus_gateway_request_seconds_bucket" in text


async def test_the_openapi_document_and_its_docs_page_are_served_without_a_cdn(
    http: httpx.AsyncClient,
) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert {"/v1/chat/completions", "/v1/models", "/healthz", "/metrics"} <= set(spec["paths"])
    page = (await http.get("/docs")).text
    assert "/docs/static/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    script = await http.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.content) > 100_000


# --- feedback ---------------------------------------------------------------------------------------


async def test_feedback_rates_an_answer_of_the_keys_tenant_by_its_query_or_completion_id(
    http: httpx.AsyncClient, answerer: FakeAnswerer, key_store: MemoryKeyStore, api_key: str
) -> None:
    completion = (await http.post(CHAT, json=ask(), headers=auth(api_key))).json()
    rated = await http.post(
        "/v1/feedback",
        json={"query_id": completion["id"], "rating": "up", "comment": "clear"},
        headers=auth(api_key),
    )
    assert rated.status_code == 200
    query_id = completion["ragbus"]["query_id"]
    assert rated.json() == {"object": "feedback", "query_id": query_id, "rating": "up", "known": True}

    other = new_key()
    await key_store.create(other, "globex")  # another tenant rates acme's answer: kept, known to be unknown
    foreign = await http.post(
        "/v1/feedback", json={"query_id": query_id, "rating": "down"}, headers=auth(other.key)
    )
    assert foreign.json()["known"] is False
    assert answerer.rated == [("acme", query_id, "up", "clear"), ("globex", query_id, "down", None)]

    bad = await http.post("/v1/feedback", json={"query_id": query_id, "rating": "meh"}, headers=auth(api_key))
    assert bad.status_code == 400
    assert "rating" in bad.json()["error"]["message"]
    assert (await http.post("/v1/feedback", json={"query_id": query_id, "rating": "up"})).status_code == 401


# --- documents --------------------------------------------------------------------------------------


async def test_a_document_is_accepted_at_once_then_shows_indexed_for_its_tenant_only(
    http: httpx.AsyncClient, answerer: FakeAnswerer, key_store: MemoryKeyStore, api_key: str
) -> None:
    body = {
        "doc_id": "eiffel",
        "text": "The tower was completed in 1889.",
        "title": "Eiffel",
        "groups": ["staff"],
    }
    accepted = await http.post("/v1/documents", json=body, headers=auth(api_key))
    assert accepted.status_code == 202
    assert accepted.headers["Location"] == "/v1/documents/eiffel"
    assert accepted.json()["status"] == "submitted"
    assert (await http.get("/v1/documents/eiffel", headers=auth(api_key))).json()["status"] == "submitted"

    answerer.indexing.set()  # the stack indexes it
    for _ in range(100):
        state = (await http.get("/v1/documents/eiffel", headers=auth(api_key))).json()
        if state["status"] != "submitted":
            break
        await asyncio.sleep(0.01)
    assert (state["status"], state["version"], state["chunks"], state["title"]) == (
        "indexed",
        "v1",
        3,
        "Eiffel",
    )
    ((tenant, event),) = answerer.ingested
    assert (tenant, event.doc_id, event.text, event.groups) == ("acme", "eiffel", body["text"], ["staff"])

    other = new_key()
    await key_store.create(other, "globex")
    missing = await http.get("/v1/documents/eiffel", headers=auth(other.key))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_a_document_waited_for_is_201_when_indexed_and_says_why_when_it_fails(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    answerer.indexing.set()
    done = await http.post("/v1/documents", json={"text": "Some text.", "wait": True}, headers=auth(api_key))
    assert done.status_code == 201
    assert done.json()["status"] == "indexed"
    assert len(done.json()["id"]) == 36  # an id the gateway made
    failed = await http.post(
        "/v1/documents", json={"doc_id": "bad", "text": "unreadable", "wait": True}, headers=auth(api_key)
    )
    assert failed.status_code == 502
    assert failed.json()["status"] == "failed"
    assert "no text" in failed.json()["reason"]
    assert (await http.get("/v1/documents/bad", headers=auth(api_key))).json()["status"] == "failed"


async def test_a_document_body_is_checked_and_its_tenant_is_the_keys(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    for body in ({"text": ""}, {"doc_id": "a:b", "text": "x"}, {"text": "x", "tenant": "globex"}):
        response = await http.post("/v1/documents", json=body, headers=auth(api_key))
        assert response.status_code == 400, body
    assert answerer.ingested == []


async def test_a_deleted_document_is_removed_for_the_keys_tenant(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    answerer.indexing.set()
    await http.post("/v1/documents", json={"doc_id": "old", "text": "x", "wait": True}, headers=auth(api_key))
    deleted = await http.delete("/v1/documents/old", headers=auth(api_key))
    assert deleted.json() == {"object": "document.deleted", "id": "old", "deleted": True, "removed_chunks": 3}
    assert answerer.deleted == [("acme", "old")]
    assert (await http.get("/v1/documents/old", headers=auth(api_key))).json()["status"] == "deleted"


async def test_a_piece_delivered_twice_is_streamed_once(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    answerer.redeliver = True
    async with http.stream("POST", CHAT, json=ask(stream=True), headers=auth(api_key)) as response:
        frames = events("".join([part async for part in response.aiter_text()]))
    texts = [c["choices"][0]["delta"].get("content") for c in frames[1:-3]]
    assert texts == ["It was completed ", "in 1889 [1]."]
