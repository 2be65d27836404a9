"""Each document format through its loader, on files the tests write with real tools (fpdf2, python-docx,
pypdf's writer): what text comes out, what is left out, and a clear refusal for each kind of bad file."""

from __future__ import annotations

import io
import json

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from ragbus.common.errors import PoisonMessage
from ragbus.ingest.loaders import Unreadable, default_registry

PAGE = """<!doctype html>
<html><head><title>Vitamin D and bone health</title>
<style>body { color: red }</style><script>var tracker = "SECRET-TRACKING-ID";</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/shop">Shop</a></nav>
<article>
<h1>Vitamin D and bone health</h1>
<p>Vitamin D helps the body absorb calcium, which bones need to stay strong. Adults who lack it can
develop osteomalacia, a softening of the bones that causes pain and fractures.</p>
<h2>How much do adults need?</h2>
<p>Most guidelines recommend 600 to 800 international units a day for adults, more for people over
seventy, and blood levels are measured as 25-hydroxyvitamin D.</p>
</article>
<footer>Copyright 2026 Example Health. All rights reserved. Cookie settings.</footer>
</body></html>"""


def load(data: bytes | str, path: str, **kw: str | None) -> tuple[str, str]:
    content_type, loaded = default_registry(**kw).load(data, declared=None, path=path)
    return content_type, loaded.text


def pdf(*pages: str, title: str | None = None) -> bytes:
    doc = FPDF()
    doc.set_font("Helvetica", size=12)
    if title:
        doc.set_title(title)
    for text in pages:
        doc.add_page()
        if text:
            doc.multi_cell(0, 8, text)
    return bytes(doc.output())


def test_html_keeps_the_article_and_drops_menus_footers_scripts_and_styles() -> None:
    content_type, loaded = default_registry().load(PAGE.encode(), declared=None, path="/x/page.html")
    assert content_type == "text/html"
    assert "absorb calcium" in loaded.text
    assert "600 to 800 international units" in loaded.text
    assert "How much do adults need?" in loaded.text  # headings kept (as Markdown)
    for boilerplate in (
        "SECRET-TRACKING-ID",
        "color: red",
        "About us",
        "Cookie settings",
        "<p>",
        "<!doctype",
    ):
        assert boilerplate not in loaded.text
    assert loaded.title == "Vitamin D and bone health"
    assert loaded.encoding == "utf-8"


def test_a_short_page_still_loses_its_menu_and_footer() -> None:
    page = (
        "<html><head><title>Canteen</title></head><body><nav>Home | Menu</nav><article><h1>Canteen hours</h1>"
        "<p>The canteen opens at 11:30 and closes at 14:00 on weekdays.</p></article>"
        "<footer>Cookie settings</footer></body></html>"
    )
    _, text = load(page, "/x/canteen.html")
    assert text == "# Canteen hours\n\nThe canteen opens at 11:30 and closes at 14:00 on weekdays."


def test_an_html_fragment_too_short_to_judge_keeps_its_visible_text() -> None:
    _, text = load("<div><b>Opening hours:</b> 9 to 5</div><script>x()</script>", "/x/snippet.htm")
    assert "Opening hours:" in text
    assert "9 to 5" in text
    assert "x()" not in text


def test_a_pdf_is_read_page_by_page_with_its_title_and_page_count() -> None:
    data = pdf(
        "Calcium intake and fracture risk in older adults.", "Second page: the trial results.", title="Trial"
    )
    content_type, loaded = default_registry().load(data, declared=None, path="/x/paper.PDF")
    assert content_type == "application/pdf"
    first, second = loaded.text.split("\n\n")
    assert "fracture risk" in first
    assert "trial results" in second
    assert loaded.title == "Trial"
    assert loaded.metadata == {"ingest.pages": 2}


def test_a_pdf_without_a_text_layer_is_refused_with_what_to_do() -> None:
    with pytest.raises(Unreadable, match=r"2 pages hold no text layer \(scanned images\?\): OCR it first"):
        load(pdf("", ""), "/x/scan.pdf")


def test_an_encrypted_pdf_is_refused_with_what_to_do() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf("Confidential results."))))
    writer.encrypt(user_password="secret", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(Unreadable, match="encrypted: decrypt it first"):
        load(out.getvalue(), "/x/locked.pdf")


@pytest.mark.parametrize("data", [b"%PDF-1.7\nnot really a pdf", b"", b"\x00" * 64])
def test_a_damaged_pdf_is_poison_not_a_crash(data: bytes) -> None:
    with pytest.raises(PoisonMessage):
        load(data, "/x/broken.pdf")


def test_a_binary_format_cannot_arrive_as_inline_text() -> None:
    with pytest.raises(Unreadable, match=r"arrives as a file \(`uri`"):
        default_registry().load("%PDF-1.7 ...", declared="application/pdf")


def test_a_docx_keeps_headings_paragraphs_and_tables_in_order() -> None:
    document = docx.Document()
    document.core_properties.title = "Dosing guide"
    document.add_heading("Vitamin D dosing", level=1)
    document.add_paragraph("Adults need 600 to 800 units a day.")
    document.add_heading("By age", level=2)
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("age", "units"), ("over 70", "800")]):
        for c, cell in enumerate(row):
            table.cell(r, c).text = cell
    document.add_paragraph("Ask your doctor before taking more.")
    out = io.BytesIO()
    document.save(out)

    content_type, loaded = default_registry().load(out.getvalue(), declared=None, path="/x/guide.docx")
    assert content_type.endswith("wordprocessingml.document")
    assert loaded.text.split("\n\n") == [
        "# Vitamin D dosing",
        "Adults need 600 to 800 units a day.",
        "## By age",
        "age | units\nover 70 | 800",
        "Ask your doctor before taking more.",
    ]
    assert loaded.title == "Dosing guide"


def test_a_file_that_is_not_a_docx_is_poison() -> None:
    with pytest.raises(Unreadable, match="not a readable DOCX"):
        load(b"PK\x03\x04 not a zip at all", "/x/broken.docx")


RECORDS = [
    {"id": 1, "title": "Vitamin D", "abstract": "Helps absorb calcium.", "tags": ["bone", "diet"]},
    {"id": 2, "title": "Calcium", "abstract": "Builds bones.", "source": {"journal": "BMJ", "year": 2020}},
]


def test_json_and_json_lines_read_as_field_lines_one_record_after_another() -> None:
    _, from_json = load(json.dumps(RECORDS).encode(), "/x/papers.json")
    _, from_lines = load("\n".join(json.dumps(r) for r in RECORDS).encode(), "/x/papers.jsonl")
    assert from_json == from_lines
    first, second = from_json.split("\n\n")
    assert first == "id: 1\ntitle: Vitamin D\nabstract: Helps absorb calcium.\ntags: bone, diet"
    assert "source.journal: BMJ\nsource.year: 2020" in second


def test_a_record_template_picks_the_fields_and_leaves_missing_ones_empty() -> None:
    template = "{title}\n\n{abstract} {missing}"
    _, text = load("\n".join(json.dumps(r) for r in RECORDS).encode(), "/x/p.jsonl", record_template=template)
    assert text == "Vitamin D\n\nHelps absorb calcium.\n\nCalcium\n\nBuilds bones."


def test_csv_rows_become_records_whatever_the_delimiter() -> None:
    comma = 'title,abstract\n"Vitamin D","Helps absorb calcium, and more."\nCalcium,Builds bones.\n'
    _, text = load(comma.encode(), "/x/papers.csv")
    assert text.split("\n\n") == [
        "title: Vitamin D\nabstract: Helps absorb calcium, and more.",
        "title: Calcium\nabstract: Builds bones.",
    ]
    _, semicolons = load(comma.replace(",", ";").replace("; and", ", and").encode(), "/x/papers.csv")
    assert semicolons == text
    _, templated = load(comma.encode(), "/x/papers.csv", record_template="{title}: {abstract}")
    assert templated.splitlines() == [
        "Vitamin D: Helps absorb calcium, and more.",
        "",
        "Calcium: Builds bones.",
    ]


@pytest.mark.parametrize(
    ("data", "path"), [(b"{not json", "/x/a.json"), (b'{"a": 1}\n{oops\n', "/x/b.jsonl")]
)
def test_invalid_records_are_refused_naming_where(data: bytes, path: str) -> None:
    with pytest.raises(Unreadable, match="not valid JSON"):
        load(data, path)


def test_running_headers_and_footers_are_left_out_of_a_pdf_and_pages_are_kept() -> None:
    body = [
        "Calcium intake and fracture risk in older adults was followed for ten years.",
        "The trial enrolled 36,282 women aged 50 to 79 at forty clinical centres.",
        "Hip fractures were fewer among those who took the supplements as assigned.",
    ]
    pages = [
        f"Journal of Bone Research, Vol. 12\n{text}\nConfidential draft - page {n} of 3"
        for n, text in enumerate(body, start=1)
    ]
    _, loaded = default_registry().load(pdf(*pages), declared=None, path="/x/paper.pdf")
    assert "Journal of Bone Research" not in loaded.text
    assert "Confidential draft" not in loaded.text
    assert loaded.pages is not None
    assert [p.strip() for p in loaded.pages] == body
    assert loaded.notes == ("6 running header/footer lines left out",)


def test_lines_repeated_on_few_pages_or_in_the_body_stay() -> None:
    from ragbus.ingest.loaders import strip_running_lines

    # Two pages: too few to tell a running line from a repeated one.
    assert strip_running_lines(["Header\nA", "Header\nB"]) == (["Header\nA", "Header\nB"], 0)
    # "Note" tops 2 of 5 pages: under half, so kept. "Figure 2" is mid-page on every page: never touched.
    pages = [
        "\n".join(
            [top, f"first line of page {n} says {word}", "Figure 2", f"{word} again", f"{word} ends here"]
        )
        for n, (top, word) in enumerate(
            zip(
                ["Note", "Note", "Start", "Begin", "Open"],
                ["alpha", "beta", "gamma", "delta", "omega"],
                strict=True,
            ),
            start=1,
        )
    ]
    kept, removed = strip_running_lines(pages)
    assert removed == 0
    assert kept == pages
