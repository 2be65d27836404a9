"""`GET /v1/requests/{id}` and `GET /v1/requests`: a request's story from the monitor's record, for the
key's tenant only, over the in-memory record (the PostgreSQL one: tests/test_gateway_monitor_record.py,
against the monitor's own view)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ragbus.gateway.adapters.memory import MemoryKeyStore, MemoryRequestRecord
from ragbus.gateway.keys import new_key
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps
from ragbus.gateway.web import create_web_app


def story(tenant: str, query_id: str, at: str, **extra: Any) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "correlation_id": f"corr-{query_id}",
        "query_id": query_id,
        "question": f"question {query_id}",
        "status": "answered",
        "tier": 0,
        "cost_usd": 0.0,
        "submitted_at": at,
        "stages": [{"stage": "retrieve", "service": "orchestrator"}],
        "sources": [{"rank": 1, "doc_id": "eiffel", "version": "v1", "cited": 1}],
        **extra,
    }


@pytest.fixture
def record(request_record: MemoryRequestRecord) -> MemoryRequestRecord:
    request_record.stories = [
        story("acme", "q1", "2026-12-05T10:00:00+00:00"),
        story("acme", "q2", "2026-12-05T11:00:00+00:00", status="blocked", tier=None),
        story("acme", "q3", "2026-12-05T12:00:00+00:00", tier=1, cost_usd=0.002),
        story("globex", "g1", "2026-12-05T12:30:00+00:00"),
    ]
    return request_record


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_request_of_the_keys_tenant_is_told_whole(
    http: httpx.AsyncClient, api_key: str, record: MemoryRequestRecord
) -> None:
    for request_id in ("q1", "chatcmpl-q1", "corr-q1"):  # query id, completion id, correlation id
        response = await http.get(f"/v1/requests/{request_id}", headers=auth(api_key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["query_id"], body["question"], body["status"]) == ("q1", "question q1", "answered")
        assert body["sources"] == [{"rank": 1, "doc_id": "eiffel", "version": "v1", "cited": 1}]
        assert body["stages"][0]["stage"] == "retrieve"


async def test_another_tenants_request_is_not_found(
    http: httpx.AsyncClient, api_key: str, key_store: MemoryKeyStore, record: MemoryRequestRecord
) -> None:
    response = await http.get("/v1/requests/g1", headers=auth(api_key))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    globex = new_key()
    await key_store.create(globex, "globex")
    assert (await http.get("/v1/requests/g1", headers=auth(globex.key))).status_code == 200
    assert (await http.get("/v1/requests/q1", headers=auth(globex.key))).status_code == 404


async def test_requests_need_a_key(http: httpx.AsyncClient, record: MemoryRequestRecord) -> None:
    assert (await http.get("/v1/requests/q1")).status_code == 401
    assert (await http.get("/v1/requests")).status_code == 401


async def test_the_list_is_the_tenants_newest_first_filtered_and_without_sources(
    http: httpx.AsyncClient, api_key: str, record: MemoryRequestRecord
) -> None:
    async def ids(**params: Any) -> list[str]:
        response = await http.get("/v1/requests", params=params, headers=auth(api_key))
        assert response.status_code == 200, response.text
        assert all("sources" not in r for r in response.json()["data"])
        return [r["query_id"] for r in response.json()["data"]]

    assert await ids() == ["q3", "q2", "q1"]
    assert await ids(status="blocked") == ["q2"]
    assert await ids(tier=1) == ["q3"]
    assert await ids(since="2026-12-05T10:30:00Z", until="2026-12-05T11:30:00") == ["q2"]
    assert await ids(limit=1) == ["q3"]
    bad = await http.get("/v1/requests", params={"status": "lost"}, headers=auth(api_key))
    assert bad.status_code == 400


async def test_a_gateway_without_the_monitors_record_says_so(api_key: str, deps: GatewayDeps) -> None:
    deps.requests = None
    app = create_web_app(GatewaySettings(), deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        response = await http.get("/v1/requests/q1", headers=auth(api_key))
    assert response.status_code == 501
