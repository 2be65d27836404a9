"""The ingest use cases over injected dependencies: what the Kafka handlers call.

Handling a submitted document: read it (a file, off the event loop), decode it, normalise, version and
chunk it (CPU work, also off the loop so that heartbeats and other messages keep flowing), and cut the
chunks into parts that fit a Kafka message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsChunked, DocsDeleted, DocsSubmitted, MetadataValue
from ragbus.ingest.adapters.files import FileContent, FileReader
from ragbus.ingest.adapters.wordpiece import load_tokenizer
from ragbus.ingest.domain import DocumentTooLarge, chunked_template, deletion, prepare_document, split_parts
from ragbus.ingest.loaders import LoaderRegistry, default_registry
from ragbus.ingest.ports import Tokenizer
from ragbus.ingest.settings import IngestSettings

log = structlog.stdlib.get_logger("ragbus.ingest")

# Bytes a part's envelope may grow by over the measured template: more digits in `part`/`parts`, and
# the event time, which pydantic writes without microseconds when they are zero.
_ENVELOPE_SLACK = 64


@dataclass(slots=True)
class IngestDeps:
    """What the service reads and counts with; tests and the one-process runner pass their own."""

    tokenizer: Tokenizer
    files: FileReader
    loaders: LoaderRegistry = field(default_factory=default_registry)


def build_deps(settings: IngestSettings) -> IngestDeps:
    """The real dependencies (blocking: loads the tokenizer file and resolves the allowed roots)."""
    return IngestDeps(
        tokenizer=load_tokenizer(settings.tokenizer, settings.tokenizer_path),
        files=FileReader(settings.allowed_roots, settings.max_document_bytes),
    )


class Ingestor:
    def __init__(self, settings: IngestSettings, *, source: str, deps: IngestDeps | None = None) -> None:
        self.settings = settings
        self.source = source
        self._deps = deps
        self._chunking = settings.chunking()

    @property
    def deps(self) -> IngestDeps:
        if self._deps is None:
            raise RuntimeError("ingest dependencies are not loaded: the app has not started")
        return self._deps

    @deps.setter
    def deps(self, deps: IngestDeps) -> None:
        self._deps = deps

    async def submitted(self, event: Envelope[DocsSubmitted]) -> list[DocsChunked]:
        """The `docs.chunked` parts of a submitted document, in order."""
        doc = event.data
        content: str | FileContent
        if doc.text is not None:
            size = len(doc.text.encode("utf-8", "surrogatepass"))
            if size > self.settings.max_document_bytes:
                raise DocumentTooLarge(
                    f"inline text is {size} bytes, over the limit of {self.settings.max_document_bytes} "
                    "(INGEST_MAX_DOCUMENT_BYTES)"
                )
            content = doc.text
        else:
            assert doc.uri is not None  # DocsSubmitted holds exactly one of text and uri
            content = await self.deps.files.aread(doc.uri)
        return await asyncio.to_thread(self._chunk, event, content)

    def _chunk(self, event: Envelope[DocsSubmitted], content: str | FileContent) -> list[DocsChunked]:
        doc, deps = event.data, self.deps
        extra: dict[str, MetadataValue] = {}
        if isinstance(content, str):
            content_type, loaded = deps.loaders.load(content, declared=doc.content_type)
        else:
            content_type, loaded = deps.loaders.load(
                content.data, declared=doc.content_type, path=str(content.path)
            )
            extra["ingest.encoding"] = loaded.encoding
        prepared = prepare_document(
            event.tenantid,
            doc.doc_id,
            loaded.text,
            deps.tokenizer,
            self._chunking,
            dehyphenate=self.settings.dehyphenate,
        )
        # The producer's own metadata wins over what ingest adds.
        template = chunked_template(
            doc, prepared, content_type=content_type, metadata={**extra, **doc.metadata}
        )
        overhead = len(event.follow(template, source=self.source).to_bytes()) + _ENVELOPE_SLACK
        parts = split_parts(
            template,
            prepared.chunks,
            max_chunks=self.settings.max_chunks_per_part,
            chunk_bytes=self.settings.max_part_bytes - overhead,
        )
        fields: dict[str, Any] = {
            "doc_id": doc.doc_id,
            "version": prepared.version[:12],
            "chunks": len(prepared.chunks),
            "parts": len(parts),
            "duplicates": prepared.duplicates,
            "tokenizer": prepared.tokenizer,
        }
        if loaded.notes:
            fields["notes"] = "; ".join(loaded.notes)
        log.info("document chunked", **fields)
        return parts

    def deleted(self, event: Envelope[DocsDeleted]) -> DocsChunked:
        log.info("document deleted", doc_id=event.data.doc_id)
        return deletion(event.data)
