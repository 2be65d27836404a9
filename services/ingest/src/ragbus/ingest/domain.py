"""The ingest domain, pure: a document's text in, its version and chunks out, cut into bus-sized parts.

Same text, same version and same chunk ids (uuid5 of tenant, document, index and chunk hash), so a
re-submitted document changes nothing downstream, and an edit changes only the chunks it touches (as
long as it does not move later chunk boundaries).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from ragbus.common.errors import PoisonMessage
from ragbus.common.events import (
    FLAG_INJECTION,
    ChunkData,
    DocsChunked,
    DocsDeleted,
    DocsSubmitted,
    MetadataValue,
    TextSpan,
)
from ragbus.common.ids import content_hash, record_id
from ragbus.common.quotas import TokenBuckets
from ragbus.ingest.chunking import ChunkingConfig, Span, plan_chunks, plan_sentence_windows, sections
from ragbus.ingest.normalize import normalize_text
from ragbus.ingest.ports import ChunkScan, Tokenizer
from ragbus.ingest.tokens import tokenize_in_blocks

# The version of a deletion marker: it removes every version, so it names none.
DELETED_VERSION = ""


class EmptyDocument(PoisonMessage):
    """Nothing is left of the document once normalised: there is nothing to index."""


class QuotaExceeded(PoisonMessage):
    """The tenant has used up its ingest allowance for now: the document is dead-lettered with when it
    would fit, and `ragbus dlq replay` sends it again (nothing is lost)."""


_MB = 1_000_000


class ByteQuota(BaseModel):
    """A tenant's ingest allowance: `mb_per_hour` of document bytes, up to `burst_mb` at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mb_per_hour: float = Field(gt=0)
    burst_mb: float = Field(gt=0)


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1000 else f"{n / 1000:.1f} kB" if n < _MB else f"{n / _MB:.1f} MB"


@dataclass
class ByteQuotas:
    """Document bytes per tenant (INGEST_QUOTAS; `*` for every tenant not named), as token buckets
    (ragbus.common.quotas): one tenant's bulk load cannot take the indexer from every other tenant."""

    limits: Mapping[str, ByteQuota]
    buckets: TokenBuckets = field(default_factory=TokenBuckets)
    clock: Callable[[], float] = time.monotonic

    def check(self, key: str, tenant: str, size: int) -> None:
        """Take `size` bytes from the tenant's allowance for the request `key`, or raise QuotaExceeded."""
        limit = self.limits.get(tenant) or self.limits.get("*")
        if limit is None:
            return
        wait = self.buckets.take(
            key,
            tenant,
            per_s=limit.mb_per_hour * _MB / 3600.0,
            burst=limit.burst_mb * _MB,
            now=self.clock(),
            amount=float(size),
        )
        if wait is None:
            return
        if math.isinf(wait):
            raise QuotaExceeded(
                f"the document is {_size(size)}, more than tenant {tenant}'s ingest burst of "
                f"{limit.burst_mb} MB (INGEST_QUOTAS): it can never fit; split it or raise the burst"
            )
        raise QuotaExceeded(
            f"tenant {tenant} is over its ingest quota of {limit.mb_per_hour} MB an hour (INGEST_QUOTAS): "
            f"this document ({_size(size)}) fits in {math.ceil(wait)} s; replay it then (`ragbus dlq replay`)"
        )


class DocumentTooLarge(PoisonMessage):
    """The document (or its metadata) is over a configured limit."""


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A document version: its normalised text, content hash and chunks."""

    version: str
    text: str
    chunks: tuple[ChunkData, ...]
    tokenizer: str
    duplicates: int = 0  # chunks dropped because an earlier chunk had the very same text


def document_version(text: str, tokenizer: str, config: ChunkingConfig) -> str:
    """The version of a document: its normalised text *and* how it was cut.

    Changing the chunk size, overlap or tokenizer changes every chunk id while the text stays the same;
    folding the chunker into the version makes the embed service drop the old chunks (it removes every
    version but the current one) instead of keeping them beside the new ones.
    """
    return content_hash(f"{tokenizer}|{config!r}\x00{text}")


# The formats whose loaders write headings as Markdown: `auto` chunking cuts them at their headings.
HEADED_TYPES = frozenset(
    {
        "text/markdown",
        "text/html",
        "application/xhtml+xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
)


def chunking_for(
    base: ChunkingConfig, strategy: str, asked: str | None, content_type: str | None, window: int = 2
) -> ChunkingConfig:
    """The chunking of one document: the strategy it asked for, else the service's (`auto`: by its
    format), on the service's token budget. `sentences` keeps a headed format's sections too."""
    chosen = asked or strategy
    headed = content_type in HEADED_TYPES
    if chosen == "auto":
        chosen = "headings" if headed else "tokens"
    return dataclasses.replace(
        base,
        headings=chosen == "headings" or (chosen == "sentences" and headed),
        sentence_window=window if chosen == "sentences" else 0,
    )


def _paged_text(pages: Sequence[str], dehyphenate: bool) -> tuple[str, list[tuple[int, int]]] | None:
    """The pages normalised one by one and joined by blank lines, with (where it starts, page number)
    of each page that has text; None when that is not the text normalised as a whole (then chunks go
    without page numbers)."""
    starts: list[tuple[int, int]] = []
    parts: list[str] = []
    at = 0
    for n, page in enumerate(pages, start=1):
        clean = normalize_text(page, dehyphenate=dehyphenate)
        if clean:
            starts.append((at, n))
            parts.append(clean)
            at += len(clean) + 2
    text = "\n\n".join(parts)
    if not text or normalize_text(text, dehyphenate=dehyphenate) != text:
        return None
    return text, starts


def prepare_document(
    tenant: str,
    doc_id: str,
    raw_text: str,
    tokenizer: Tokenizer,
    config: ChunkingConfig,
    *,
    dehyphenate: bool = True,
    pages: Sequence[str] | None = None,
) -> PreparedDocument:
    """Normalise, version and chunk a document's text. Raises EmptyDocument if nothing is left.

    `pages`: a paged format's text page by page (`raw_text` is them joined): each chunk then gets the
    pages it starts and ends on. With `config.headings`, chunks stay within their section and carry
    its heading path."""
    paged = _paged_text(pages, dehyphenate) if pages else None
    text = paged[0] if paged else normalize_text(raw_text, dehyphenate=dehyphenate)
    if not text:
        raise EmptyDocument(
            f"document {doc_id!r} has no text once normalised (empty, blank or control characters)"
        )
    tokens = tokenize_in_blocks(tokenizer.tokenize, text)
    parts = sections(text) if config.headings else []
    breaks = [bisect.bisect_left(tokens.starts, p.start) for p in parts]
    # (span, focus in the text or None): sentence windows embed their focus, other chunks all of it.
    planned: list[tuple[Span, tuple[int, int] | None]]
    if config.sentence_window > 0:
        planned = [
            (w.span, (w.focus_start, w.focus_end))
            for w in plan_sentence_windows(text, tokens, config, breaks)
        ]
    else:
        planned = [(span, None) for span in plan_chunks(text, tokens, config, tokenizer.count, breaks)]
    if not planned:
        raise EmptyDocument(f"document {doc_id!r} has no tokens once normalised")
    section_starts = [p.start for p in parts]
    page_starts = [start for start, _ in paged[1]] if paged else []
    page_numbers = [n for _, n in paged[1]] if paged else []
    chunks: list[ChunkData] = []
    seen: set[str] = set()
    for span, focus in planned:
        chunk_text = text[span.char_start : span.char_end]
        # A window's focus is part of what the chunk is: two windows of the same text differ by it.
        digest = content_hash(chunk_text if focus is None else f"{focus[0] - span.char_start}|{chunk_text}")
        # Repeated boilerplate (a disclaimer on every page) would be stored, embedded and retrieved
        # once per copy; the first copy is enough. Indexes stay dense: 0..n-1.
        if digest in seen:
            continue
        seen.add(digest)
        index = len(chunks)
        chunks.append(
            ChunkData(
                chunk_id=record_id(tenant, doc_id, str(index), digest),
                index=index,
                text=chunk_text,
                content_hash=digest,
                token_count=span.token_count,
                char_start=span.char_start,
                char_end=span.char_end,
                focus=TextSpan(start=focus[0] - span.char_start, end=focus[1] - span.char_start)
                if focus
                else None,
                section=list(parts[bisect.bisect_right(section_starts, span.char_start) - 1].path)
                if parts
                else [],
                page=page_numbers[bisect.bisect_right(page_starts, span.char_start) - 1] if paged else None,
                last_page=page_numbers[bisect.bisect_right(page_starts, span.char_end - 1) - 1]
                if paged
                else None,
            )
        )
    return PreparedDocument(
        version=document_version(text, tokenizer.name, config),
        text=text,
        chunks=tuple(chunks),
        tokenizer=tokenizer.name,
        duplicates=len(planned) - len(chunks),
    )


def flag_chunks(chunks: Sequence[ChunkData], scans: Sequence[ChunkScan]) -> tuple[ChunkData, ...]:
    """The chunks with what the injection scan found: every chunk gets its score, a flagged one the
    `injection` flag and the spans that read as instructions to the model. Ids do not change (a chunk
    is the same chunk, flagged or not)."""
    if len(scans) != len(chunks):
        raise ValueError(f"{len(scans)} scans for {len(chunks)} chunks")
    return tuple(
        chunk.model_copy(
            update={
                "injection_score": round(scan.score, 4),
                "flags": [FLAG_INJECTION] if scan.flagged else [],
                "injection_spans": [TextSpan(start=a, end=b) for a, b in scan.spans] if scan.flagged else [],
            }
        )
        for chunk, scan in zip(chunks, scans, strict=True)
    )


def chunked_template(
    submitted: DocsSubmitted,
    doc: PreparedDocument,
    *,
    content_type: str | None,
    metadata: dict[str, MetadataValue],
) -> DocsChunked:
    """The `docs.chunked` payload of a document version, before its chunks are split into parts."""
    return DocsChunked(
        doc_id=submitted.doc_id,
        version=doc.version,
        title=submitted.title,
        uri=submitted.uri,
        content_type=content_type,
        metadata=metadata,
        groups=sorted(set(submitted.groups)),
        total_chunks=len(doc.chunks),
        tokenizer=doc.tokenizer,
    )


def plan_parts(sizes: Sequence[int], *, max_items: int, max_bytes: int) -> list[range]:
    """Consecutive runs of items, each at most `max_items` long and `max_bytes` in total (greedy).

    Raises DocumentTooLarge if one item alone is over `max_bytes`.
    """
    parts: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if size > max_bytes:
            raise DocumentTooLarge(
                f"chunk {i} takes {size} bytes, over the {max_bytes} left in a message "
                "(metadata or title too large, or INGEST_MAX_PART_BYTES too small)"
            )
        if i > start and (i - start >= max_items or total + size > max_bytes):
            parts.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes) or not parts:
        parts.append(range(start, len(sizes)))
    return parts


def split_parts(
    template: DocsChunked, chunks: Sequence[ChunkData], *, max_chunks: int, chunk_bytes: int
) -> list[DocsChunked]:
    """The parts of a document version: each carries `part`/`parts`, the version and the total.

    `chunk_bytes` is what a message has room for once the envelope and the rest of the payload are in;
    each chunk takes its JSON size plus a separating comma.
    """
    sizes = [len(c.model_dump_json().encode()) + 1 for c in chunks]
    ranges = plan_parts(sizes, max_items=max_chunks, max_bytes=chunk_bytes)
    return [
        template.model_copy(
            update={"chunks": list(chunks[r.start : r.stop]), "part": i, "parts": len(ranges)}
        )
        for i, r in enumerate(ranges)
    ]


def deletion(deleted: DocsDeleted) -> DocsChunked:
    """The marker that tells the embed service to remove every point of the document."""
    return DocsChunked(doc_id=deleted.doc_id, version=DELETED_VERSION, deleted=True)
