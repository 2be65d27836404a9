"""`POST /v1/documents` as `multipart/form-data`: a file in any format the ingest service reads goes to
the stack as it is (`docs.submitted`'s `content`), with its name and type, the JSON request's fields
beside it; the body limit (413) applies to uploads, and so does the bus's message size. The same
upload through the whole stack, indexed from a real PDF and DOCX: tests/e2e/test_webapp.py."""

from __future__ import annotations

import json

import httpx
import pytest
from fpdf import FPDF

from ragbus.gateway.domain import DocumentUpload, GatewayError, check_fits, upload_fields
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps
from ragbus.gateway.web import create_web_app

from .conftest import FakeAnswerer

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def a_pdf(text: str = "The tower was completed in 1889.") -> bytes:
    paper = FPDF()
    paper.set_font("Helvetica", size=12)
    paper.add_page()
    paper.multi_cell(0, 8, text)
    return bytes(paper.output())


async def test_a_pdf_upload_goes_to_the_stack_as_it_is_and_is_followed_until_indexed(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    pdf = a_pdf()
    answerer.indexing.set()
    response = await http.post(
        "/v1/documents",
        files={"file": ("Eiffel tower.pdf", pdf, "application/pdf")},
        data={
            "doc_id": "eiffel",
            "groups": ["staff", "eng,ops"],
            "metadata": '{"year": 1889}',
            "wait": "true",
        },
        headers=auth(api_key),
    )
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/v1/documents/eiffel"
    state = response.json()
    assert (state["id"], state["status"], state["chunks"]) == ("eiffel", "indexed", 3)
    assert state["title"] == "Eiffel tower.pdf"  # the file's name until the stack has its own title
    ((tenant, event),) = answerer.ingested
    assert tenant == "acme"
    assert (event.content, event.text, event.uri) == (pdf, None, None)  # the very bytes
    assert (event.filename, event.content_type) == ("Eiffel tower.pdf", "application/pdf")
    assert (event.groups, event.metadata, event.title) == (["staff", "eng", "ops"], {"year": 1889}, None)


async def test_the_file_name_tells_the_format_when_the_browser_does_not(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    """A browser sends `application/octet-stream` for a type it does not know (Markdown, often DOCX):
    then no type is declared, and the ingest service reads the format from the file name."""
    answerer.indexing.set()
    # (A DOCX's bytes stand in: the fake stack does not read them, and a real one is over this
    # gateway's 20 kB test limit. The stack reads real ones: tests/e2e/test_webapp.py.)
    for name, data in (("notes.md", b"# Notes\n\nSome notes."), ("guide.docx", b"PK\x03\x04 a docx")):
        response = await http.post(
            "/v1/documents",
            files={"file": (f"C:/fakepath/{name}", data, "application/octet-stream")},
            data={"title": "Given title", "wait": "1"},
            headers=auth(api_key),
        )
        assert response.status_code == 201, response.text
        assert response.json()["title"] == "Given title"
    assert [(e.filename, e.content_type, e.title) for _, e in answerer.ingested] == [
        ("notes.md", None, "Given title"),
        ("guide.docx", None, "Given title"),
    ]
    assert all(len(e.doc_id) == 36 for _, e in answerer.ingested)  # ids the gateway made
    declared = await http.post(
        "/v1/documents",
        files={"file": ("guide", b"PK\x03\x04 a docx", "application/octet-stream")},
        data={"content_type": DOCX, "doc_id": "guide", "wait": "true"},
        headers=auth(api_key),
    )
    assert declared.status_code == 201
    assert answerer.ingested[-1][1].content_type == DOCX


@pytest.mark.parametrize(
    ("files", "data", "message"),
    [
        (None, {"doc_id": "d"}, "invalid request"),  # no file: not even multipart
        ({"other": ("a.txt", b"x", "text/plain")}, {}, "needs its file in the field `file`"),
        ({"file": ("a.txt", b"", "text/plain")}, {}, "content"),  # an empty file
        ({"file": ("a.txt", b"x", "text/plain")}, {"tenant": "globex"}, "unknown form field 'tenant'"),
        ({"file": ("a.txt", b"x", "text/plain")}, {"metadata": "[1]"}, "metadata must be a JSON object"),
        ({"file": ("a.txt", b"x", "text/plain")}, {"metadata": "{"}, "metadata is not JSON"),
        ({"file": ("a.txt", b"x", "text/plain")}, {"doc_id": "a:b"}, "doc_id"),
        ({"file": ("a.txt", b"x", "text/plain")}, {"chunking": "pages"}, "chunking"),
    ],
)
async def test_an_upload_is_checked_and_nothing_reaches_the_stack_when_it_is_wrong(
    http: httpx.AsyncClient,
    answerer: FakeAnswerer,
    api_key: str,
    files: dict[str, tuple[str, bytes, str]] | None,
    data: dict[str, str],
    message: str,
) -> None:
    if files is None:
        response = await http.post("/v1/documents", data=data, headers=auth(api_key))
    else:
        response = await http.post("/v1/documents", files=files, data=data, headers=auth(api_key))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
    assert answerer.ingested == []


async def test_two_files_in_one_upload_are_refused(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str
) -> None:
    files = [("file", ("a.txt", b"a", "text/plain")), ("file", ("b.txt", b"b", "text/plain"))]
    response = await http.post("/v1/documents", files=files, headers=auth(api_key))
    assert response.status_code == 400
    assert answerer.ingested == []


async def test_an_upload_over_the_body_limit_is_a_413_with_or_without_its_length(
    http: httpx.AsyncClient, answerer: FakeAnswerer, api_key: str, gateway_settings: GatewaySettings
) -> None:
    big = b"x" * (gateway_settings.max_body_bytes + 1)
    response = await http.post(
        "/v1/documents", files={"file": ("big.txt", big, "text/plain")}, headers=auth(api_key)
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    async def chunks() -> httpx.AsyncByteStream:  # type: ignore[misc]
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        for _ in range(4):
            yield big[: len(big) // 2]  # no Content-Length: counted as it is read
        yield b"\r\n--b--\r\n"

    streamed = await http.post(
        "/v1/documents",
        content=chunks(),
        headers={**auth(api_key), "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert streamed.status_code == 413
    assert answerer.ingested == []


async def test_a_document_too_large_for_one_bus_message_is_a_413_that_says_so(
    gateway_settings: GatewaySettings, deps: GatewayDeps, answerer: FakeAnswerer, api_key: str
) -> None:
    settings = gateway_settings.with_kafka(max_request_size=12_000)  # the body limit (20 kB) lets it in
    app = create_web_app(settings, deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        upload = await http.post(
            "/v1/documents",
            files={"file": ("f.pdf", b"%PDF" + b"x" * 9_000, "application/pdf")},
            headers=auth(api_key),
        )  # 9 kB of file: 12 kB in base64, and the envelope beside it
        text = await http.post("/v1/documents", json={"text": "y" * 9_000}, headers=auth(api_key))
        small = await http.post("/v1/documents", json={"text": "y" * 5_000}, headers=auth(api_key))
        listed = (await http.get("/v1/documents", headers=auth(api_key))).json()["data"]
    for response in (upload, text):
        assert response.status_code == 413, response.text
        assert "too large for one message on the bus" in response.json()["error"]["message"]
        assert "KAFKA_MAX_REQUEST_SIZE (12000)" in response.json()["error"]["message"]
    assert small.status_code == 202
    assert [d["id"] for d in listed] == [small.json()["id"]]  # the others were never submitted
    assert all(e.doc_id == small.json()["id"] for _, e in answerer.ingested)


async def test_the_api_document_describes_both_bodies(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    body = spec["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert "text" in body["application/json"]["schema"]["properties"]
    json.dumps(spec)  # and it is one JSON document


def test_upload_fields_and_the_bus_limit_in_the_domain() -> None:
    fields = upload_fields([("groups", "a, b"), ("groups", "c"), ("title", " ")], "dir/x.md", "text/markdown")
    assert fields == {"filename": "x.md", "groups": ["a", "b", "c"], "content_type": "text/markdown"}
    with pytest.raises(GatewayError, match="unknown form field"):
        upload_fields([("text", "inline")], "x.md", None)
    upload = DocumentUpload.model_validate({**fields, "content": b"# x"})
    check_fits(upload.event(), 10_000)
    with pytest.raises(GatewayError) as raised:
        check_fits(upload.event(), 4_000)
    assert raised.value.status == 413
