"""The web app as a user drives it, in a real headless Chromium (Debian's `chromium` and
`chromium-driver`, through Selenium), against the whole stack in this process with the gateway on a free
port: enter the key, upload a DOCX (multipart, read by the ingest service), ask, watch the answer stream
in, open its citation, rate it, and find the request, its story and its trace's spans as a waterfall on
the audit page. Screenshots of the three pages are saved under test-artifacts/webapp/ (or
RAGBUS_TEST_ARTIFACTS), printed at the end. Beside it, on the same stack and without a browser: a PDF
uploaded to the gateway's API as multipart, indexed and answered from.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.model, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
NOTE = """# The quillfeather archive

The quillfeather archive in Lower Brindle keeps exactly forty-two illuminated maps, stored in cedar
drawers that are opened only on the first Tuesday of each month.
"""
QUESTION = "How many illuminated maps does the quillfeather archive keep?"


def note_docx(path: Path) -> Path:
    """NOTE as a Word document (python-docx, as the ingest service's own tests make them)."""
    import docx

    document = docx.Document()
    title, *paragraphs = [p for p in NOTE.split("\n\n") if p.strip()]
    document.add_heading(title.removeprefix("# "), level=1)
    for paragraph in paragraphs:
        document.add_paragraph(" ".join(paragraph.split()))
    document.save(str(path))
    return path


def browser_or_skip() -> tuple[str, str]:
    """The chromium and chromedriver binaries, or a skip that says what is missing."""
    pytest.importorskip("selenium", reason="selenium (dev dependency group) is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "no headless browser: install Debian's chromium and chromium-driver "
            "(`apt-get install chromium chromium-driver`; .ci/run does)"
        )
    return chromium, driver


@pytest.fixture(scope="module")
def artifacts() -> Iterator[Path]:
    folder = Path(os.environ.get("RAGBUS_TEST_ARTIFACTS") or REPO / "test-artifacts") / "webapp"
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    print(f"\nweb app screenshots: {folder}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
async def api_key(stack: Stack) -> AsyncIterator[str]:
    """A key for a tenant of this module's own, made as `ragbus keys create` makes one."""
    from ragbus.gateway.adapters.postgres import PostgresKeyStore
    from ragbus.gateway.keys import new_key
    from ragbus.gateway.settings import GatewaySettings

    assert stack.gateway_url, "the stack hosts no gateway"
    settings = GatewaySettings(database_url=stack.database_url, db_schema=stack.gateway_schema)
    store = await PostgresKeyStore.open(settings)
    try:
        new = new_key()
        await store.create(new, f"web-{uuid.uuid4().hex[:6]}", name="browser test")
        yield new.key
    finally:
        await store.aclose()


def wait(browser: Any, what: str, timeout: float = 60) -> Any:
    """Wait until the JS expression `what` is truthy in the page, and return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(
        lambda b: b.execute_script(f"return {what}")
    )


async def test_upload_ask_cite_rate_and_audit_in_a_browser(
    stack: Stack, api_key: str, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    import asyncio

    from selenium.webdriver.common.by import By

    def step(fn: Any, *args: Any) -> Any:  # Selenium blocks: off the loop, which runs the stack
        return asyncio.to_thread(fn, *args)

    by_css = By.CSS_SELECTOR
    url = f"{stack.gateway_url}/"

    # The key, entered once, kept in the browser.
    await step(browser.get, url)
    await step(lambda: browser.find_element(by_css, "#key-input").send_keys(api_key))
    await step(lambda: browser.find_element(by_css, "#key-save").click())
    assert await step(wait, browser, "document.getElementById('key-status').textContent === 'key ok'")
    assert await step(browser.execute_script, "return localStorage.getItem('ragbus.key')") == api_key

    # Documents: upload a DOCX (multipart: the file as it is, for the ingest service to read), watch it
    # until indexed, see it listed.
    note = note_docx(tmp_path / "quillfeather.docx")
    await step(browser.get, f"{stack.gateway_url}/app/#/documents")
    await step(lambda: browser.find_element(by_css, "#upload-file").send_keys(str(note)))
    await step(lambda: browser.find_element(by_css, "#upload-send").click())
    progress = "document.querySelector('#upload-progress li')"
    status = await step(
        wait,
        browser,
        f"{progress} && !/sending|uploading|indexing/.test({progress}.textContent) && {progress}.className",
        180,
    )
    line = await step(browser.execute_script, f"return {progress}.textContent")
    assert status == "status-indexed", line
    assert re.fullmatch(r"quillfeather\.docx: indexed, \d+ chunks, version \w+", line), line
    assert await step(
        wait, browser, "document.querySelector('#doc-table tr[data-doc=\"quillfeather.docx\"]')"
    )
    await step(browser.save_screenshot, str(artifacts / "documents.png"))

    # Chat: ask, the answer streams in, its citation opens the passage, tier and cost are shown.
    await step(browser.get, f"{stack.gateway_url}/app/#/chat")
    await step(lambda: browser.find_element(by_css, "#chat-input").send_keys(QUESTION))
    await step(lambda: browser.find_element(by_css, "#chat-send").click())
    assert await step(wait, browser, "document.querySelector('.turn.done, .turn.error')", 180)
    turn = await step(
        browser.execute_script,
        "const t = document.querySelector('.turn'); const a = t.querySelector('.a');"
        "return {error: t.classList.contains('error'), text: a.textContent, pieces: a.dataset.pieces,"
        " query: t.dataset.queryId, cites: t.querySelectorAll('.a .cite').length,"
        " tier: (t.querySelector('.tier') || {}).textContent,"
        " cost: (t.querySelector('.cost') || {}).textContent,"
        " sources: [...t.querySelectorAll('.sources button')].map(b => b.textContent)};",
    )
    assert not turn["error"], turn
    assert "forty-two" in turn["text"], turn
    assert int(turn["pieces"] or 0) >= 1, turn  # it came as a stream of pieces (SSE)
    assert turn["cites"] >= 1, turn
    assert turn["sources"], turn
    assert "quillfeather" in turn["sources"][0], turn
    assert turn["tier"].startswith("tier "), turn
    assert turn["cost"].startswith("$"), turn
    await step(lambda: browser.find_element(by_css, ".turn .a .cite").click())
    assert await step(wait, browser, "document.getElementById('passage').open")
    passage = await step(browser.execute_script, "return document.getElementById('passage-text').textContent")
    assert "forty-two illuminated maps" in passage
    await step(browser.save_screenshot, str(artifacts / "chat-citation.png"))
    await step(lambda: browser.find_element(by_css, "#passage-close").click())

    # Feedback: thumbs up, recorded by the monitor.
    await step(lambda: browser.find_element(by_css, ".turn .rate-up").click())
    assert await step(wait, browser, "document.querySelector('.turn .rate').dataset.rated === 'up'", 60)
    await step(browser.save_screenshot, str(artifacts / "chat.png"))

    # Audit: the request is listed, and its story says what was read and how it was rated.
    query_id = turn["query"]
    await step(browser.get, f"{stack.gateway_url}/app/#/audit/{query_id}")
    assert await step(
        wait, browser, f"document.querySelector('#audit-table tr[data-query=\"{query_id}\"]')", 60
    )
    story = await step(
        wait,
        browser,
        "document.querySelector('#story h3') && document.getElementById('story').textContent",
        60,
    )
    assert f"Request {query_id}" in story
    assert QUESTION in story
    assert "quillfeather.docx" in story  # the source read, with its version
    assert "rating" in story
    assert "up" in story
    # The trace: the request's spans as a waterfall, each service's share, parents before children.
    spans = await step(
        wait,
        browser,
        "document.querySelectorAll('#trace .span-row').length >= 3 && [...document.querySelectorAll("
        "'#trace .span-row')].map(r => ({name: r.querySelector('.wf-name').textContent,"
        " width: r.querySelector('.wf-bar').style.width, span: r.dataset.span}))",
        60,
    )
    names = " | ".join(s["name"] for s in spans)
    for service in ("ragbus-guard", "ragbus-orchestrator"):
        assert service in names, names
    assert all(s["width"].endswith("%") for s in spans), spans
    assert len({s["span"] for s in spans}) == len(spans)
    # Embedded: the spans come from the span file, and there is no Jaeger to link to.
    assert await step(browser.execute_script, "return document.getElementById('jaeger-link')") is None
    await step(browser.set_window_size, 1280, 2400)  # the whole story, stages and sources too
    await step(browser.save_screenshot, str(artifacts / "audit.png"))
    await step(browser.set_window_size, 1280, 1000)

    # The filters: this tenant's blocked requests are none.
    await step(browser.execute_script, "document.getElementById('f-status').value = 'blocked'")
    await step(lambda: browser.find_element(by_css, "#audit-apply").click())
    assert await step(
        wait,
        browser,
        "document.querySelector('#audit-table tbody').textContent.includes('No requests match')",
    )


async def test_a_pdf_uploaded_to_the_api_as_multipart_is_indexed_and_answered_from(
    stack: Stack, api_key: str, tmp_path: Path
) -> None:
    """The gateway's API without the page: a real PDF (fpdf2) as `multipart/form-data`, waited for until
    the ingest service has read its pages and the embed service indexed them, then a question the
    extractive tier answers from it, citing its page."""
    import httpx
    from fpdf import FPDF

    paper = FPDF()
    paper.set_title("Orchard survey")
    paper.set_font("Helvetica", size=12)
    for page in (
        "The Hollin Vale orchard survey counted apple trees along the river terraces.",
        "The survey recorded exactly three hundred and twelve pear trees in the Hollin Vale orchard.",
    ):
        paper.add_page()
        paper.multi_cell(0, 8, page)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=180) as http:
        uploaded = await http.post(
            "/v1/documents",
            files={"file": ("orchard-survey.pdf", bytes(paper.output()), "application/pdf")},
            data={"doc_id": "orchard-survey", "wait": "true"},
        )
        assert uploaded.status_code == 201, uploaded.text
        state = uploaded.json()
        assert (state["id"], state["status"]) == ("orchard-survey", "indexed"), state
        assert state["chunks"] >= 1
        assert (await http.get("/v1/documents/orchard-survey")).json()["status"] == "indexed"

        asked = await http.post(
            "/v1/chat/completions",
            json={
                "model": "ragbus",
                "messages": [
                    {"role": "user", "content": "How many pear trees did the Hollin Vale survey record?"}
                ],
                "ragbus": {"max_tier": 0, "doc_ids": ["orchard-survey"], "cache": False},
            },
        )
    assert asked.status_code == 200, asked.text
    message = asked.json()["choices"][0]["message"]
    assert "three hundred and twelve" in message["content"], message
    cited = message["citations"][0]
    assert (cited["doc_id"], cited["title"]) == ("orchard-survey", "Orchard survey")  # the PDF's own title
    assert cited["page"] <= 2 <= (cited.get("last_page") or cited["page"])  # the passage covers page 2
