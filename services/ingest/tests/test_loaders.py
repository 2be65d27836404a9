from __future__ import annotations

import codecs

import pytest

from ragbus.common.errors import PoisonMessage
from ragbus.ingest.loaders import (
    LoadedText,
    NotText,
    UnsupportedContentType,
    decode_text,
    default_registry,
    split_content_type,
)

TEXT = "Café “naïve” – 10 µm"


def test_utf8_is_read_as_is() -> None:
    assert decode_text(TEXT.encode()) == LoadedText(TEXT, "utf-8")


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (codecs.BOM_UTF8 + TEXT.encode(), "utf-8-sig"),
        (TEXT.encode("utf-16"), "utf-16"),  # Python writes a BOM
        (TEXT.encode("utf-32"), "utf-32"),
    ],
)
def test_a_byte_order_mark_chooses_the_encoding_and_is_dropped(data: bytes, encoding: str) -> None:
    loaded = decode_text(data)
    assert loaded.text == TEXT
    assert loaded.encoding == encoding
    assert loaded.notes == (f"byte-order mark: decoded as {encoding}",)


def test_windows_text_falls_back_to_cp1252_with_a_note() -> None:
    loaded = decode_text(TEXT.encode("cp1252"))
    assert loaded.text == TEXT
    assert loaded.encoding == "cp1252"
    assert loaded.notes == ("not valid UTF-8: decoded as cp1252",)


def test_bytes_cp1252_leaves_undefined_fall_back_to_latin1() -> None:
    loaded = decode_text(b"caf\xe9 \x81")
    assert (loaded.text, loaded.encoding) == ("café \x81", "latin-1")
    assert "decoded as latin-1" in loaded.notes[0]


def test_a_declared_charset_is_used_and_a_wrong_one_noted() -> None:
    assert decode_text("Grüße".encode("iso-8859-15"), "iso-8859-15").text == "Grüße"
    loaded = decode_text(TEXT.encode(), "ascii")
    assert (loaded.text, loaded.encoding) == (TEXT, "utf-8")
    assert loaded.notes == ("not valid ascii as declared",)
    assert decode_text(b"plain", "no-such-charset").notes == (
        "unknown declared charset 'no-such-charset' ignored",
    )


def test_binary_content_is_refused() -> None:
    with pytest.raises(NotText, match="looks binary"):
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def test_content_type_comes_from_the_declaration_else_the_extension() -> None:
    registry = default_registry()
    assert registry.content_type("Text/Markdown; charset=UTF-8", "/x/notes.txt") == ("text/markdown", "UTF-8")
    assert registry.content_type(None, "/x/README.md") == ("text/markdown", None)
    assert registry.content_type(None, "/x/guide.rst") == ("text/x-rst", None)
    assert registry.content_type(None, "/x/rows.jsonl") == ("application/x-ndjson", None)
    assert registry.content_type(None, "/x/LICENSE") == ("text/plain", None)
    assert registry.content_type(None, None) == ("text/plain", None)


@pytest.mark.parametrize(("declared", "path"), [(None, "/x/blob.xyz123"), ("image/png", None)])
def test_types_without_a_loader_are_poison_naming_what_is_supported(
    declared: str | None, path: str | None
) -> None:
    registry = default_registry()
    with pytest.raises(UnsupportedContentType, match="supported: application/json") as err:
        registry.load(b"%PDF-1.7", declared=declared, path=path)
    assert isinstance(err.value, PoisonMessage)


def test_a_new_format_is_one_registration_away() -> None:
    registry = default_registry()

    def load_html(content: bytes | str, charset: str | None) -> LoadedText:
        raw = content if isinstance(content, str) else content.decode(charset or "utf-8")
        return LoadedText(raw.replace("<p>", "").replace("</p>", "\n\n"), charset)

    registry.register(["text/html"], load_html, extensions=[".html", ".htm"])
    content_type, loaded = registry.load(b"<p>One</p><p>Two</p>", declared=None, path="/x/page.HTM")
    assert content_type == "text/html"
    assert loaded.text == "One\n\nTwo\n\n"


def test_inline_text_needs_no_decoding() -> None:
    assert default_registry().load(TEXT, declared=None) == ("text/plain", LoadedText(TEXT))


def test_split_content_type() -> None:
    assert split_content_type('text/plain; format=flowed; charset="latin-1"') == ("text/plain", "latin-1")
