"""Loaders turn a document's bytes (a file) or inline text into plain text, chosen by content type.

The registry maps content types (and file extensions) to loaders: plain text and Markdown as they are,
HTML without its boilerplate (trafilatura), PDF's text layer page by page (pypdf), DOCX's paragraphs,
headings and tables (python-docx), and records (JSON, JSON lines, CSV) as readable `field: value` lines
or through a template. Extraction is the libraries' work, not parsers of our own. Everything here is
pure: reading files is the job of `adapters/files.py`.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import math
import mimetypes
import re
import string
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ragbus.common.errors import PoisonMessage
from ragbus.common.events import MetadataValue

DEFAULT_CONTENT_TYPE = "text/plain"
# How far into a file to look for NUL bytes, which no text encoding we accept produces.
_SNIFF_BYTES = 8192


class UnsupportedContentType(PoisonMessage):
    """No loader handles the document's content type."""


class NotText(PoisonMessage):
    """The bytes are not text in any encoding we read (a binary file under a text name)."""


class Unreadable(PoisonMessage):
    """The file is of a type we read but this one cannot be read (encrypted, damaged, no text in it)."""


@dataclass(frozen=True, slots=True)
class LoadedText:
    text: str
    encoding: str | None = None  # None for inline text, which arrives decoded
    notes: tuple[str, ...] = field(default=())
    # What the file says of itself: its title (used when the producer gave none), and metadata the
    # chunks carry under `ingest.*` (a PDF's page count).
    title: str | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    # A paged format's text, page by page (`text` is them joined by blank lines): chunks get page numbers.
    pages: tuple[str, ...] | None = None


Loader = Callable[[bytes | str, str | None], LoadedText]
"""(content, declared charset or None) -> text. Raises PoisonMessage for content it cannot read."""


def decode_text(data: bytes, charset: str | None = None) -> LoadedText:
    """Decode bytes: a byte-order mark, else the declared charset, else UTF-8, else cp1252/latin-1.

    The fallbacks never fail (latin-1 maps every byte), so a note says when one was used: the text may
    then hold mojibake rather than the author's characters.
    """
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts with UTF-16-LE's
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return LoadedText(
                    data.decode(encoding), encoding, (f"byte-order mark: decoded as {encoding}",)
                )
            except UnicodeDecodeError as exc:
                raise NotText(
                    f"the file starts with a {encoding} byte-order mark but is not {encoding}"
                ) from exc
    notes: list[str] = []
    if charset:
        try:
            return LoadedText(data.decode(charset), charset)
        except LookupError:
            notes.append(f"unknown declared charset {charset!r} ignored")
        except UnicodeDecodeError:
            notes.append(f"not valid {charset} as declared")
    # Only UTF-16/32 text holds NUL bytes, and it comes with a BOM or a declared charset (both above).
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise NotText("the file holds NUL bytes: it looks binary, not text")
    try:
        return LoadedText(data.decode("utf-8"), "utf-8", tuple(notes))
    except UnicodeDecodeError:
        pass
    # cp1252 before latin-1: Windows text uses 0x80-0x9F for quotes and dashes, which latin-1 would
    # turn into control characters (and normalisation would then drop them).
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return LoadedText(text, encoding, (*notes, f"not valid UTF-8: decoded as {encoding}"))
    raise AssertionError("unreachable: latin-1 decodes any bytes")


def load_text(content: bytes | str, charset: str | None) -> LoadedText:
    """Plain text, Markdown and reStructuredText: the text as it is (and the record loaders' first step)."""
    return LoadedText(content) if isinstance(content, str) else decode_text(content, charset)


def split_content_type(value: str) -> tuple[str, str | None]:
    """`text/plain; charset=UTF-8` -> ("text/plain", "UTF-8")."""
    media, *params = (p.strip() for p in value.split(";"))
    charset = None
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val:
            charset = val.strip().strip('"')
    return media.lower(), charset


class LoaderRegistry:
    """Loaders by content type, and the content type of a file by its extension."""

    def __init__(self) -> None:
        self._loaders: dict[str, Loader] = {}
        self._extensions: dict[str, str] = {}

    def register(
        self, content_types: Iterable[str], loader: Loader, *, extensions: Iterable[str] = ()
    ) -> None:
        """Handle `content_types` with `loader`; files ending in `extensions` get the first content type."""
        types = [t.lower() for t in content_types]
        for content_type in types:
            self._loaders[content_type] = loader
        for ext in extensions:
            self._extensions[ext.lower()] = types[0]

    @property
    def content_types(self) -> list[str]:
        return sorted(self._loaders)

    def content_type(self, declared: str | None, path: str | None = None) -> tuple[str, str | None]:
        """The media type and charset: as declared, else from the file extension, else plain text.

        A file without an extension (README, LICENSE) is read as text; a binary one is caught by the
        NUL-byte check. An extension we do not know is refused rather than read as text.
        """
        if declared:
            return split_content_type(declared)
        if path is None:
            return DEFAULT_CONTENT_TYPE, None
        suffix = PurePosixPath(path).suffix.lower()
        if not suffix:
            return DEFAULT_CONTENT_TYPE, None
        if suffix in self._extensions:
            return self._extensions[suffix], None
        guessed, _ = mimetypes.guess_type(f"x{suffix}", strict=False)
        if guessed is None:
            supported = ", ".join(self.content_types)
            raise UnsupportedContentType(
                f"unknown file type {suffix!r}: give `content_type`; supported: {supported}"
            )
        return guessed, None

    def loader(self, content_type: str) -> Loader:
        try:
            return self._loaders[content_type]
        except KeyError:
            raise UnsupportedContentType(
                f"unsupported content type {content_type!r}; supported: {', '.join(self.content_types)}"
            ) from None

    def load(
        self, content: bytes | str, *, declared: str | None, path: str | None = None
    ) -> tuple[str, LoadedText]:
        """(content type, text) of a document."""
        content_type, charset = self.content_type(declared, path)
        return content_type, self.loader(content_type)(content, charset)


# --- HTML, PDF, DOCX ---------------------------------------------------------------------------------


def _binary(content: bytes | str, kind: str) -> bytes:
    if isinstance(content, str):
        # Inline text cannot carry a binary file's bytes faithfully: the producer must send a reference.
        raise Unreadable(
            f"a {kind} arrives as a file (`uri`, `ragbus ingest --by-reference`), not as inline text"
        )
    return content


@functools.cache
def _trafilatura_config() -> Any:
    """trafilatura's defaults, but no minimum size: below 250 characters it gives up on the main text
    and returns the whole page, menus and footers included (a short intranet page kept "Home | Menu")."""
    from trafilatura.settings import use_config

    config = use_config()
    for key in ("MIN_EXTRACTED_SIZE", "MIN_OUTPUT_SIZE", "MIN_EXTRACTED_COMM_SIZE", "MIN_OUTPUT_COMM_SIZE"):
        config.set("DEFAULT", key, "1")
    return config


def load_html(content: bytes | str, charset: str | None) -> LoadedText:
    """The page's main text (menus, footers, scripts and styles left out), headings kept as Markdown;
    a page too short for that judgement (a fragment) keeps all of its visible text."""
    import trafilatura

    decoded = LoadedText(content) if isinstance(content, str) else decode_text(content, charset)
    html = decoded.text
    main = trafilatura.extract(
        html,
        output_format="markdown",
        include_tables=True,
        include_comments=False,
        favor_recall=True,
        config=_trafilatura_config(),
    )
    notes: tuple[str, ...] = ()
    if not main or not main.strip():
        # A fragment without <body> gives html2txt nothing to walk: wrap it.
        page = html if "<body" in html.lower() else f"<html><body>{html}</body></html>"
        main = trafilatura.html2txt(page) or ""
        notes = ("no main text found: all visible text kept",)
    meta = trafilatura.extract_metadata(html)
    title = meta.title if meta is not None and meta.title else None
    return LoadedText(main, decoded.encoding, (*decoded.notes, *notes), title=title)


_DIGITS = re.compile(r"\d+")
_RUNNING_LINES = 2  # lines at the top and at the bottom of a page that may be a running header/footer


def _line_key(line: str) -> str:
    """A line as a running header or footer repeats: page numbers and dates vary, the rest does not."""
    return " ".join(_DIGITS.sub("#", line).lower().split())


def strip_running_lines(pages: Sequence[str], *, min_share: float = 0.5) -> tuple[list[str], int]:
    """The pages without their running headers and footers, and how many lines went.

    A line among the first or last two of a page is a running line when the same line (digits aside:
    "Page 3 of 12", a date) is there on at least half the pages, and on three or more. Body text rarely
    repeats at the same place of most pages; a journal's name, a confidentiality notice and page numbers
    do, and each copy would otherwise cut a sentence in two at every page break and be indexed again
    and again. Fewer than three pages: nothing is taken out.
    """
    if len(pages) < 3:
        return list(pages), 0
    lines = [p.splitlines() for p in pages]
    edges: list[set[int]] = []  # per page, the indexes of its top and bottom non-empty lines
    counts: dict[str, int] = {}
    for page_lines in lines:
        filled = [i for i, line in enumerate(page_lines) if line.strip()]
        near = set(filled[:_RUNNING_LINES] + filled[-_RUNNING_LINES:])
        edges.append(near)
        for key in {_line_key(page_lines[i]) for i in near}:
            counts[key] = counts.get(key, 0) + 1
    threshold = max(3, math.ceil(min_share * len(pages)))
    running = {key for key, n in counts.items() if n >= threshold and key}
    if not running:
        return list(pages), 0
    out, removed = [], 0
    for page_lines, near in zip(lines, edges, strict=True):
        kept = [line for i, line in enumerate(page_lines) if not (i in near and _line_key(line) in running)]
        removed += len(page_lines) - len(kept)
        out.append("\n".join(kept))
    return out, removed


def load_pdf(content: bytes | str, charset: str | None) -> LoadedText:
    """The text layer, page after page (a blank line between pages), without running headers and
    footers (`strip_running_lines`); `ingest.pages` counts the pages, and `pages` keeps each page's
    text so that a chunk can tell the page it comes from."""
    import pypdf
    from pypdf.errors import PdfReadError

    data = _binary(content, "PDF")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("the PDF is encrypted: decrypt it first (qpdf --decrypt)")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata is not None else None
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Unreadable(f"not a readable PDF: {exc}") from exc
    if not any(p.strip() for p in pages):
        raise Unreadable(f"the PDF's {len(pages)} pages hold no text layer (scanned images?): OCR it first")
    pages, removed = strip_running_lines(pages)
    metadata: dict[str, MetadataValue] = {"ingest.pages": len(pages)}
    notes = (f"{removed} running header/footer lines left out",) if removed else ()
    return LoadedText(
        "\n\n".join(pages),
        None,
        notes=notes,
        title=str(title) if title else None,
        metadata=metadata,
        pages=tuple(pages),
    )


def load_docx(content: bytes | str, charset: str | None) -> LoadedText:
    """Paragraphs in order, headings as Markdown headings (so heading-aware chunking sees them), and
    each table row as `cell | cell`."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    data = _binary(content, "DOCX")
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise Unreadable(f"not a readable DOCX: {exc}") from exc
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, docx.table.Table):
            lines.extend(" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows)
            lines.append("")
            continue
        text = block.text.strip()
        if not text:
            continue
        style = (block.style.name if block.style is not None else "") or ""
        if style.startswith("Heading") and style[len("Heading") :].strip().isdigit():
            level = min(int(style[len("Heading") :]), 6)
            lines.append(f"{'#' * level} {text}")
        elif style == "Title":
            lines.append(f"# {text}")
        else:
            lines.append(text)
        lines.append("")
    title = document.core_properties.title or None
    return LoadedText("\n".join(lines).strip(), None, title=title)


# --- records: JSON, JSON lines, CSV -------------------------------------------------------------------


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        if all(not isinstance(v, (Mapping, list)) for v in value):
            if value:
                yield path, ", ".join(str(v) for v in value)
        else:
            for n, item in enumerate(value):
                yield from _flatten(item, f"{path}[{n}]")
    elif value is not None and str(value).strip():
        yield path, str(value)


class RecordText:
    """One record (a JSON object, a JSON line, a CSV row) as text: `field: value` lines (nested keys
    dotted), or `template` filled with the record's fields (`{title}\n\n{abstract}`; a field the record
    lacks is left empty)."""

    def __init__(self, template: str | None = None) -> None:
        self.template = template
        if template is not None:
            # Checked once: a template with a bad placeholder is a configuration error, not bad input.
            list(string.Formatter().parse(template))

    def __call__(self, record: Any) -> str:
        if self.template is not None and isinstance(record, Mapping):
            return self.template.format_map(_Fields(record)).strip()
        # A bare value (a JSON line that is a string, say) has no field name to put before it.
        return "\n".join(f"{k}: {v}" if k else v for k, v in _flatten(record))


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def record_loaders(template: str | None = None) -> tuple[Loader, Loader, Loader]:
    """The JSON, JSON lines and CSV loaders: records separated by blank lines."""
    as_text = RecordText(template)

    def joined(loaded: LoadedText, records: Iterable[Any]) -> LoadedText:
        return LoadedText("\n\n".join(filter(None, map(as_text, records))), loaded.encoding, loaded.notes)

    def load_json(content: bytes | str, charset: str | None) -> LoadedText:
        loaded = load_text(content, charset)
        try:
            value = json.loads(loaded.text)
        except json.JSONDecodeError as exc:
            raise Unreadable(f"not valid JSON: {exc}") from exc
        return joined(loaded, value if isinstance(value, list) else [value])

    def load_jsonl(content: bytes | str, charset: str | None) -> LoadedText:
        loaded = load_text(content, charset)
        records = []
        for n, line in enumerate(loaded.text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise Unreadable(f"line {n} is not valid JSON: {exc}") from exc
        return joined(loaded, records)

    def load_csv(content: bytes | str, charset: str | None) -> LoadedText:
        loaded = load_text(content, charset)
        try:
            dialect = csv.Sniffer().sniff(loaded.text[:4096], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        try:
            rows = list(csv.DictReader(io.StringIO(loaded.text), dialect=dialect))
        except csv.Error as exc:
            raise Unreadable(f"not valid CSV: {exc}") from exc
        return joined(loaded, ({k: v for k, v in row.items() if k is not None} for row in rows))

    return load_json, load_jsonl, load_csv


def default_registry(record_template: str | None = None) -> LoaderRegistry:
    registry = LoaderRegistry()
    registry.register(["text/plain"], load_text, extensions=[".txt", ".text"])
    registry.register(["text/markdown", "text/x-markdown"], load_text, extensions=[".md", ".markdown"])
    registry.register(["text/x-rst", "text/prs.fallenstein.rst"], load_text, extensions=[".rst"])
    registry.register(
        ["text/html", "application/xhtml+xml"], load_html, extensions=[".html", ".htm", ".xhtml"]
    )
    registry.register(["application/pdf"], load_pdf, extensions=[".pdf"])
    registry.register(
        ["application/vnd.openxmlformats-officedocument.wordprocessingml.document"],
        load_docx,
        extensions=[".docx"],
    )
    load_json, load_jsonl, load_csv = record_loaders(record_template)
    registry.register(["application/json"], load_json, extensions=[".json"])
    registry.register(
        ["application/x-ndjson", "application/jsonl", "application/jsonlines", "application/x-jsonlines"],
        load_jsonl,
        extensions=[".jsonl", ".ndjson"],
    )
    registry.register(["text/csv"], load_csv, extensions=[".csv"])
    return registry
