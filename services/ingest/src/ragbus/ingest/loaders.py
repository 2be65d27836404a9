"""Loaders turn a document's bytes (a file) or inline text into plain text, chosen by content type.

The registry maps content types (and file extensions) to loaders, so a PDF, DOCX or HTML loader is one
`register(...)` call away and nothing else changes. Everything here is pure: reading files is the job of
`adapters/files.py`.
"""

from __future__ import annotations

import codecs
import mimetypes
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ragbus.common.errors import PoisonMessage

DEFAULT_CONTENT_TYPE = "text/plain"
# How far into a file to look for NUL bytes, which no text encoding we accept produces.
_SNIFF_BYTES = 8192


class UnsupportedContentType(PoisonMessage):
    """No loader handles the document's content type."""


class NotText(PoisonMessage):
    """The bytes are not text in any encoding we read (a binary file under a text name)."""


@dataclass(frozen=True, slots=True)
class LoadedText:
    text: str
    encoding: str | None = None  # None for inline text, which arrives decoded
    notes: tuple[str, ...] = field(default=())


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
    """Plain text, Markdown, reStructuredText, JSON and JSON lines: the text as it is."""
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


def default_registry() -> LoaderRegistry:
    registry = LoaderRegistry()
    registry.register(["text/plain"], load_text, extensions=[".txt", ".text"])
    registry.register(["text/markdown", "text/x-markdown"], load_text, extensions=[".md", ".markdown"])
    registry.register(["text/x-rst", "text/prs.fallenstein.rst"], load_text, extensions=[".rst"])
    registry.register(["application/json"], load_text, extensions=[".json"])
    registry.register(
        ["application/x-ndjson", "application/jsonl", "application/jsonlines", "application/x-jsonlines"],
        load_text,
        extensions=[".jsonl", ".ndjson"],
    )
    return registry
