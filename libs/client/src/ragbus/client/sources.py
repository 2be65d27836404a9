"""Where documents come from: files under a directory (recursive, with glob include/exclude), one file,
or stdin, turned into the `Document`s that `ragbus ingest` and `ragbus sync` submit.

A document's id is its path relative to the directory, so the same tree always gives the same ids:
re-ingesting it replaces documents rather than adding copies, and `ragbus sync` can tell which were
deleted. Text formats travel inline with their content type; PDF and DOCX travel as a reference to the
file, which the ingest service reads itself (under its allowed roots). A JSON lines or CSV dataset can
also be read as one document per record (`read_records`).

A file's document carries its `path` and its modification time, `modified` (ISO 8601, UTC, to the
second), in its metadata: a date filter can ask for documents changed since a day (`date_field:
"modified"`). The time alone never makes a file changed: `content_digest` leaves it out, so `ragbus sync`
does not send a file that was touched but not edited (its `modified` in the index stays the time of the
content it holds); a file sent again anyway (`ragbus ingest DIR`) with only a newer time costs a payload
update in the embed service, not an embedding.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ragbus.client.client import Document
from ragbus.client.errors import CliError
from ragbus.common.events import MetadataValue

# What a directory yields by default: text formats inline with their content type (the ingest service
# strips HTML's boilerplate, reads JSON, JSON lines and CSV as records); binary formats by reference.
TEXT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": None,
    ".text": None,
    ".rst": "text/x-rst",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".csv": "text/csv",
}
BINARY_SUFFIXES = (".pdf", ".docx")
DOCUMENT_SUFFIXES = (*TEXT_TYPES, *BINARY_SUFFIXES)
INLINE_LIMIT = 900_000  # bytes: inline text travels in one Kafka message (1 MB by default)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file found under a source directory, with what tells a change without reading it."""

    path: Path
    doc_id: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class DocumentOptions:
    """What a command sets on every document it sends: metadata (over the document's own), who may
    read it, and how to cut it."""

    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    chunking: Literal["tokens", "headings", "sentences"] | None = None

    def apply(self, doc: Document) -> Document:
        return replace(
            doc, metadata={**doc.metadata, **self.metadata}, groups=self.groups, chunking=self.chunking
        )


AS_THEY_ARE = DocumentOptions()  # nothing set: documents go as their source gives them


def doc_id_of(path: Path, base: Path) -> str:
    rel = path.relative_to(base) if path != base else Path(path.name)
    return re.sub(r"[\s:]+", "_", rel.as_posix())


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    # fnmatch's `*` crosses `/`: `*.md` is every Markdown file at any depth, `drafts/*` a whole folder.
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(Path(rel).name, p) for p in patterns)


def find_files(root: Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[SourceFile]:
    """The documents under `root` (a directory, searched recursively, or one file), sorted by path.

    Without `include`, the formats ragbus reads (DOCUMENT_SUFFIXES); with it, the files it matches,
    whatever their suffix (read as text). `exclude` wins over both. Hidden files and folders (a name
    starting with `.`) are left out unless an `include` pattern starts one with its dot (`.github/*`).
    """
    if not root.exists():
        raise CliError(f"{root}: no such file or directory")
    if root.is_file():
        stat = root.stat()
        return [SourceFile(root, doc_id_of(root, root.parent), stat.st_size, stat.st_mtime_ns)]
    found = []
    # Hidden files and folders (.git, .cache) only when a pattern asks for them by their dot.
    hidden_ok = any(p.startswith(".") or "/." in p for p in include)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not hidden_ok and any(part.startswith(".") for part in rel.split("/")):
            continue
        if not (_matches(rel, include) if include else path.suffix.lower() in DOCUMENT_SUFFIXES):
            continue
        if exclude and _matches(rel, exclude):
            continue
        try:
            if not path.is_file():
                continue
            stat = path.stat()
        except OSError:  # gone or unreadable between the listing and now: the next pass sees it
            continue
        found.append(SourceFile(path, doc_id_of(path, root), stat.st_size, stat.st_mtime_ns))
    return found


# The metadata key of a file's modification time: what a file's document carries besides its content.
MODIFIED = "modified"


def modified_at(mtime_ns: int) -> str:
    """A file's modification time as document metadata: ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_metadata(file: SourceFile) -> dict[str, MetadataValue]:
    return {"path": str(file.path), MODIFIED: modified_at(file.mtime_ns)}


def title_of(text: str, fallback: str) -> str:
    for line in text.splitlines()[:20]:
        if line.startswith("#"):
            return line.lstrip("#").strip() or fallback
    return fallback


def read_document(file: SourceFile, *, by_reference: bool = False, doc_id: str | None = None) -> Document:
    """The document of one file: inline text, or a reference for PDF, DOCX and `by_reference`."""
    path, ident = file.path, doc_id or file.doc_id
    suffix = path.suffix.lower()
    if by_reference or suffix in BINARY_SUFFIXES:
        # A PDF's or DOCX's own title (its properties) wins over the file name, when it has one.
        title = None if suffix in BINARY_SUFFIXES else path.stem
        return Document(doc_id=ident, uri=str(path.resolve()), title=title, metadata=file_metadata(file))
    data = path.read_bytes()
    if len(data) > INLINE_LIMIT:
        raise CliError(f"{path} is {len(data)} bytes: too big to send inline; use --by-reference")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Replacing the bad bytes would index a damaged text without a word; the ingest service
        # detects other encodings when it reads the file itself.
        raise CliError(
            f"{path} is not UTF-8 text; use --by-reference to let the ingest service detect its encoding"
        ) from None
    content_type = TEXT_TYPES.get(suffix)
    return Document(
        doc_id=ident,
        text=text,
        # An HTML page's <title> is read by the ingest service; other formats have none of their own.
        title=None if content_type == "text/html" else title_of(text, path.stem),
        content_type=content_type,
        metadata=file_metadata(file),
    )


def content_digest(doc: Document) -> str:
    """What the document would be indexed from: its text, or the referenced file's bytes, and every
    field that goes with it but the file's time (`modified`: touching a file changes nothing in it).
    Equal digests: sending it again would change nothing but that time."""
    h = hashlib.sha256()
    if doc.text is not None:
        h.update(doc.text.encode("utf-8", "surrogatepass"))
    else:
        assert doc.uri is not None
        with open(doc.uri, "rb") as f:  # noqa: PTH123 - a plain binary read, in blocks
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    fields = {
        "title": doc.title,
        "type": doc.content_type,
        "meta": {k: v for k, v in doc.metadata.items() if k != MODIFIED},
        "groups": sorted(doc.groups),
        "chunking": doc.chunking,
        "ref": doc.uri is not None,
    }
    h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class RecordFields:
    """Which fields of a dataset record are what: its id, its text (one field, or several joined by a
    blank line) and its title; any other field with a plain value becomes metadata."""

    id: str = "id"
    text: tuple[str, ...] = ("text",)
    title: str | None = "title"


_SCALARS = (str, int, float, bool)


def read_records(source: str | Path, fields: RecordFields) -> list[Document]:
    """A JSON lines or CSV dataset as documents, one per record (`ragbus ingest --records`).

    A record without its id or without any text is an error naming its line: a dataset is data,
    and a silent skip would lose it. Ids must be unique."""
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            if suffix == ".csv":
                rows: list[tuple[int, dict[str, Any]]] = [
                    (n, dict(r)) for n, r in enumerate(csv.DictReader(f), 2)
                ]
            elif suffix in (".jsonl", ".ndjson"):
                rows = []
                for n, line in enumerate(f, start=1):
                    if line.strip():
                        row = json.loads(line)
                        if not isinstance(row, dict):
                            raise CliError(f"{path}:{n}: a record must be a JSON object")
                        rows.append((n, row))
            else:
                raise CliError(f"{path}: --records reads .jsonl, .ndjson or .csv files")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise CliError(f"{path}: {exc}") from None
    docs: list[Document] = []
    seen: set[str] = set()
    for n, row in rows:
        ident = row.get(fields.id)
        if ident in (None, ""):
            raise CliError(f"{path}:{n}: the record has no {fields.id!r} (set --id-field)")
        doc_id = re.sub(r"[\s:]+", "_", str(ident))
        if doc_id in seen:
            raise CliError(f"{path}:{n}: the id {doc_id!r} is there twice")
        seen.add(doc_id)
        text = "\n\n".join(str(row[k]) for k in fields.text if row.get(k) not in (None, ""))
        if not text.strip():
            raise CliError(
                f"{path}:{n}: the record has no text in {', '.join(fields.text)} (set --text-field)"
            )
        title = row.get(fields.title) if fields.title else None
        used = {fields.id, *fields.text, fields.title}
        metadata = {k: v for k, v in row.items() if k not in used and isinstance(v, _SCALARS) and v != ""}
        docs.append(
            Document(
                doc_id=doc_id,
                text=text,
                title=str(title) if title not in (None, "") else None,
                metadata={**metadata, "source": str(path)},
            )
        )
    return docs
