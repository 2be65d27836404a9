"""API keys with scopes: a key may `ask`, `ingest` and `audit`, or fewer of them; an endpoint outside
its scopes answers 403 in OpenAI's shape, before it looks anything up, so a 403 tells nothing about what
exists; another tenant's request stays a 404 for a key that may audit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from ragbus.gateway.adapters.memory import MemoryKeyStore, MemoryRequestRecord
from ragbus.gateway.keys import new_key, scopes_of
from ragbus.gateway.ports import Scope

from .conftest import FakeAnswerer

CHAT = {"model": "ragbus", "messages": [{"role": "user", "content": "When was it built?"}]}


async def key_with(store: MemoryKeyStore, scopes: Sequence[Scope], tenant: str = "acme") -> dict[str, str]:
    new = new_key()
    await store.create(new, tenant, scopes=scopes)
    return {"Authorization": f"Bearer {new.key}"}


@pytest.fixture
def record(request_record: MemoryRequestRecord) -> MemoryRequestRecord:
    request_record.stories = [
        {"tenant": t, "query_id": q, "submitted_at": "2026-12-05T10:00:00+00:00", "status": "answered"}
        for t, q in (("acme", "q1"), ("globex", "g1"))
    ]
    return request_record


async def test_each_endpoint_needs_its_scope_and_answers_403_in_openais_shape_without_it(
    http: httpx.AsyncClient, key_store: MemoryKeyStore, answerer: FakeAnswerer, record: MemoryRequestRecord
) -> None:
    answerer.indexing.set()
    calls: dict[str, list[tuple[str, str, dict[str, Any] | None]]] = {
        "ask": [
            ("POST", "/v1/chat/completions", CHAT),
            ("POST", "/v1/feedback", {"query_id": "q1", "rating": "up"}),
        ],
        "ingest": [
            ("POST", "/v1/documents", {"doc_id": "d1", "text": "Some text.", "wait": True}),
            ("GET", "/v1/documents", None),
            ("GET", "/v1/documents/d1", None),
            ("DELETE", "/v1/documents/d1", None),
        ],
        "audit": [
            ("GET", "/v1/requests", None),
            ("GET", "/v1/requests/q1", None),
            ("GET", "/v1/requests/q1/trace", None),
        ],
    }
    for scope in ("ask", "ingest", "audit"):
        headers = await key_with(key_store, [scope])
        for needed, endpoints in calls.items():
            for method, path, body in endpoints:
                response = await http.request(method, path, json=body, headers=headers)
                if needed != scope:
                    assert response.status_code == 403, (scope, method, path, response.text)
                    error = response.json()["error"]
                    assert (error["type"], error["code"]) == ("permission_error", "insufficient_scope")
                    assert f"needs the scope `{needed}`, and has {scope}" in error["message"]
                    assert response.headers["WWW-Authenticate"] == (
                        f'Bearer error="insufficient_scope", scope="{needed}"'
                    )
                else:
                    assert response.status_code in (200, 201), (scope, method, path, response.text)
        # Any valid key lists the models (clients call it to check a key).
        assert (await http.get("/v1/models", headers=headers)).status_code == 200
    # Only the asking key's question reached the stack, only the ingesting key's document.
    assert len(answerer.asked) == 1
    assert [doc.doc_id for _, doc in answerer.ingested] == ["d1"]


async def test_a_key_that_may_audit_finds_no_other_tenants_request_and_one_that_may_not_learns_nothing(
    http: httpx.AsyncClient, key_store: MemoryKeyStore, record: MemoryRequestRecord
) -> None:
    auditor = await key_with(key_store, ["audit"])
    asker = await key_with(key_store, ["ask"])
    for path in ("/v1/requests/g1", "/v1/requests/g1/trace"):
        assert (await http.get(path, headers=auditor)).status_code == 404  # globex's: not found
    # Without the scope, a request that exists and one that does not get the same answer.
    there, absent = [await http.get(f"/v1/requests/{q}", headers=asker) for q in ("q1", "nope")]
    assert (there.status_code, absent.status_code) == (403, 403)
    assert there.json() == absent.json()


async def test_a_key_is_refused_in_order_unknown_401_then_out_of_scope_403(
    http: httpx.AsyncClient, key_store: MemoryKeyStore
) -> None:
    assert (await http.get("/v1/requests", headers={"Authorization": "Bearer rbk_nope"})).status_code == 401
    headers = await key_with(key_store, ["ask", "ingest"])
    assert (await http.get("/v1/requests", headers=headers)).status_code == 403
    assert (await http.get("/v1/documents", headers=headers)).status_code == 200


def test_scopes_are_read_from_repeated_or_comma_separated_names() -> None:
    assert scopes_of(["audit,ask", " ask "]) == ("ask", "audit")
    with pytest.raises(ValueError, match="unknown scope admin"):
        scopes_of(["admin"])
    with pytest.raises(ValueError, match="at least one scope"):
        scopes_of([" , "])
