"""The ingest use cases: a submitted document in, its `docs.chunked` parts out; a deletion in, its
marker out. No Kafka here: `app.py` hands each event in and publishes what comes back.

Handling a submitted document: read it (a file, off the event loop), decode it, normalise, version and
chunk it, scan each chunk for instructions aimed at the model and flag it, and cut the chunks into parts
that fit a Kafka message. That CPU work runs off the event loop, so heartbeats and other messages keep
flowing: in a worker process when the service has them (INGEST_PROCESSES; the loop then keeps the GIL
too), else in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ragbus.common import near_duplicates
from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsChunked, DocsDeleted, DocsSubmitted, MetadataValue
from ragbus.common.logging import get_logger
from ragbus.common.processes import WorkerPool
from ragbus.ingest.adapters.files import FileContent, FileReader
from ragbus.ingest.domain import (
    ByteQuotas,
    DocumentTooLarge,
    chunked_template,
    chunking_for,
    deletion,
    flag_chunks,
    prepare_document,
    split_parts,
)
from ragbus.ingest.loaders import LoaderRegistry, default_registry
from ragbus.ingest.ports import InjectionScanner, LanguageDetector, Tokenizer
from ragbus.ingest.settings import IngestPolicy

SERVICE = "ingest"
SOURCE = f"ragbus/{SERVICE}"
log = get_logger("ragbus.ingest")

# Bytes a part's envelope may grow by over the measured template: more digits in `part`/`parts`, and
# the event time, which pydantic writes without microseconds when they are zero.
_ENVELOPE_SLACK = 64


@dataclass(frozen=True, slots=True)
class IngestDeps:
    """What the use cases read and count with, and how they cut documents."""

    tokenizer: Tokenizer
    files: FileReader
    policy: IngestPolicy
    loaders: LoaderRegistry = field(default_factory=default_registry)
    # Scans every chunk for instructions aimed at the model (INGEST_INJECTION_SCAN); None: no scan.
    scanner: InjectionScanner | None = None
    # Document bytes per tenant (INGEST_QUOTAS); None: no quota.
    quotas: ByteQuotas | None = None
    # Tags each document with its language (`lang` in its metadata) unless the producer did; None: no tag.
    language: LanguageDetector | None = None
    # Worker processes that do the CPU work with deps of their own (`start_worker`); None: a thread.
    processes: WorkerPool | None = None


async def chunk_document(deps: IngestDeps, event: Envelope[DocsSubmitted]) -> list[DocsChunked]:
    """The `docs.chunked` parts of a submitted document, in order."""
    doc = event.data
    content: str | FileContent
    if doc.uri is not None:
        content = await deps.files.aread(doc.uri)
        size = len(content.data)
    else:
        if doc.content is not None:
            # A file carried in the event: its name (never opened) tells the format and the title.
            name = Path(PurePosixPath(doc.filename or "").name or "document")
            content, size, kind = FileContent(name, name, doc.content), len(doc.content), "the file"
        else:
            assert doc.text is not None  # DocsSubmitted holds exactly one of text, content and uri
            content, size, kind = doc.text, len(doc.text.encode("utf-8", "surrogatepass")), "inline text"
        if size > deps.policy.max_document_bytes:
            raise DocumentTooLarge(
                f"{kind} is {size} bytes, over the limit of {deps.policy.max_document_bytes} "
                "(INGEST_MAX_DOCUMENT_BYTES)"
            )
    if deps.quotas is not None:
        deps.quotas.check(str(event.id), event.tenantid, size)
    if deps.processes is not None:
        parts, fields = await deps.processes.run(_chunk_in_worker, event, content)
    else:
        parts, fields = await asyncio.to_thread(_chunk, deps, event, content)
    # Logged here, not where the work ran: a worker process has neither the log setup nor the event's
    # context (trace and event ids).
    log.info("document chunked", **fields)
    return parts


def delete_document(event: Envelope[DocsDeleted]) -> DocsChunked:
    """The deletion marker that makes the embed service drop every chunk of the document."""
    log.info("document deleted", doc_id=event.data.doc_id)
    return deletion(event.data)


# In a worker process: the deps its jobs use, built once by `start_worker`.
_worker_deps: list[IngestDeps] = []


def start_worker(build: Callable[[], IngestDeps]) -> None:
    """A worker process's initializer: build its own deps (tokenizer, scanner, language detector)."""
    _worker_deps.append(build())


def _chunk_in_worker(
    event: Envelope[DocsSubmitted], content: str | FileContent
) -> tuple[list[DocsChunked], dict[str, Any]]:
    return _chunk(_worker_deps[0], event, content)


def _chunk(
    deps: IngestDeps, event: Envelope[DocsSubmitted], content: str | FileContent
) -> tuple[list[DocsChunked], dict[str, Any]]:
    """The document's parts, and what to log about it."""
    doc, policy = event.data, deps.policy
    extra: dict[str, MetadataValue] = {}
    if isinstance(content, str):
        content_type, loaded = deps.loaders.load(content, declared=doc.content_type)
    else:
        content_type, loaded = deps.loaders.load(
            content.data, declared=doc.content_type, path=str(content.path)
        )
        if loaded.encoding is not None:
            extra["ingest.encoding"] = loaded.encoding
    extra.update(loaded.metadata)
    if deps.language is not None and "lang" not in doc.metadata:
        found = deps.language.detect(loaded.text)
        if found is not None:
            extra["lang"] = found.code
    prepared = prepare_document(
        event.tenantid,
        doc.doc_id,
        loaded.text,
        deps.tokenizer,
        chunking_for(policy.chunking, policy.strategy, doc.chunking, content_type, policy.sentence_window),
        dehyphenate=policy.dehyphenate,
        pages=loaded.pages,
    )
    chunks = prepared.chunks
    if deps.scanner is not None:
        chunks = flag_chunks(chunks, deps.scanner.scan([c.text for c in chunks]))
    # The producer's own metadata wins over what ingest adds.
    if doc.title is None:
        # The file's own title (HTML <title>, PDF or DOCX properties), else a file's name.
        title = loaded.title or (None if isinstance(content, str) else content.path.stem)
        doc = doc.model_copy(update={"title": title})
    template = chunked_template(doc, prepared, content_type=content_type, metadata={**extra, **doc.metadata})
    # Every part carries the document's MinHash, so each can tell whether the document nearly repeats
    # another (the embed service decides, against the store).
    template = template.model_copy(update={"minhash": near_duplicates.signature(prepared.text)})
    overhead = len(event.follow(template, source=SOURCE).to_bytes()) + _ENVELOPE_SLACK
    parts = split_parts(
        template,
        chunks,
        max_chunks=policy.max_chunks_per_part,
        chunk_bytes=policy.max_part_bytes - overhead,
    )
    fields: dict[str, Any] = {
        "doc_id": doc.doc_id,
        "version": prepared.version[:12],
        "chunks": len(prepared.chunks),
        "parts": len(parts),
        "duplicates": prepared.duplicates,
        "tokenizer": prepared.tokenizer,
    }
    if deps.scanner is not None:
        fields["flagged"] = sum(bool(c.flags) for c in chunks)
    if loaded.notes:
        fields["notes"] = "; ".join(loaded.notes)
    return parts, fields
