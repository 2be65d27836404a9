"""The web app's files as the gateway serves them, and the API calls it makes that the other tests do
not cover (the documents list). The app itself is driven in a real browser by tests/e2e/test_webapp.py."""

from __future__ import annotations

import re

import httpx

from ragbus.gateway.web import WEBAPP


async def test_the_root_opens_the_web_app(http: httpx.AsyncClient) -> None:
    root = await http.get("/")
    assert (root.status_code, root.headers["location"]) == (307, "/app/")
    page = await http.get("/app/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert '<script src="app.js"' in page.text
    script = await http.get("/app/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert (await http.get("/app/app.css")).status_code == 200


def test_the_web_app_loads_nothing_from_elsewhere() -> None:
    """No CDN at run time: every file the pages load is one of the app's own, by a relative path."""
    for path in WEBAPP.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path.name
        assert not re.search(r"\b(import|fetch)\(\s*[\"'`]https?:", text), path.name
        assert "innerHTML" not in text, path.name  # server text goes in as text, never as markup


async def test_the_documents_page_lists_the_tenants_documents(http: httpx.AsyncClient, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    for doc_id in ("notes.md", "faq.json"):
        sent = await http.post("/v1/documents", json={"doc_id": doc_id, "text": "some text"}, headers=headers)
        assert sent.status_code == 202
    listed = await http.get("/v1/documents", headers=headers)
    assert listed.status_code == 200
    assert {d["id"] for d in listed.json()["data"]} == {"notes.md", "faq.json"}
    assert (await http.get("/v1/documents")).status_code == 401
