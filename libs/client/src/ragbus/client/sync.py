"""Keeping a directory and the index in step: `ragbus sync DIR [--watch]`.

A sync pass finds the files under the directory, compares them with the manifest of the last pass and
sends only what changed: `docs.submitted` for added and updated files, `docs.deleted` for files that
are gone. It produces events and reads replies, nothing else, so it runs anywhere a client can reach
the broker. Its manifest (a JSON file under RAGBUS_HOME, one per tenant and directory) holds each
document's content digest and the size and mtime it was read at: a file whose size and mtime did not
move is not read again, and one that was touched but not changed is not sent again.

The manifest only speeds things up and finds deletions: without it (a first run, another machine) every
file is sent, and the embed service still embeds only chunks it does not hold as they are. A document is
written to the manifest once the stack has indexed it, so a pass that fails half-way sends the rest
again next time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragbus.client.client import Document, Indexed, RagbusClient
from ragbus.client.errors import CliError
from ragbus.client.sources import (
    AS_THEY_ARE,
    DocumentOptions,
    SourceFile,
    content_digest,
    find_files,
    read_document,
)

MANIFEST_VERSION = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """A document as the last pass indexed it."""

    digest: str
    size: int
    mtime_ns: int


@dataclass
class Manifest:
    """What the last passes indexed from one directory for one tenant: doc id -> Entry."""

    path: Path
    root: str
    tenant: str
    entries: dict[str, Entry] = field(default_factory=dict)
    # What the last whole pass set on every document (`options_key`): while it is the same, a file whose
    # size and mtime did not move need not be read; another --meta, --groups or --chunking changes
    # every document, so every file is read (and sent where its digest moved).
    options: str | None = None

    @classmethod
    def load(cls, path: Path, *, root: str, tenant: str) -> Manifest:
        if not path.exists():
            return cls(path, root, tenant)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != MANIFEST_VERSION:
                raise ValueError(f"version {raw.get('version')!r}, expected {MANIFEST_VERSION}")
            entries = {k: Entry(**v) for k, v in raw["documents"].items()}
            options = raw.get("options")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CliError(
                f"cannot read the sync manifest {path}: {exc} (remove it to send every file again)"
            ) from exc
        return cls(path, root, tenant, entries, options)

    def save(self) -> None:
        """Atomically: a crash mid-write leaves the previous manifest, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "version": MANIFEST_VERSION,
            "root": self.root,
            "tenant": self.tenant,
            "options": self.options,
            "documents": {
                k: {"digest": e.digest, "size": e.size, "mtime_ns": e.mtime_ns}
                for k, e in sorted(self.entries.items())
            },
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, indent=1)
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def manifest_path(home: Path, root: Path, tenant: str, topic_prefix: str) -> Path:
    """Where the manifest of (directory, tenant, deployment) lives: one per index it keeps in step."""
    key = f"{root.resolve()}\n{tenant}\n{topic_prefix}"
    return home / "sync" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def options_key(options: DocumentOptions, by_reference: bool) -> str:
    """What a pass sets on every document it sends, as a digest the manifest keeps."""
    fields = {
        "meta": dict(options.metadata),
        "groups": list(options.groups),
        "chunking": options.chunking,
        "ref": by_reference,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Change:
    file: SourceFile
    document: Document
    digest: str


@dataclass
class Plan:
    """What a pass will do: documents to send (added, updated), to leave (unchanged), to delete."""

    added: list[Change] = field(default_factory=list)
    updated: list[Change] = field(default_factory=list)
    unchanged: list[SourceFile] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Unchanged files whose mtime moved (touched, rewritten with the same bytes): the manifest learns
    # their new mtime, so the next pass need not read them.
    touched: dict[str, Entry] = field(default_factory=dict)


def plan(
    files: Sequence[SourceFile],
    manifest: Manifest,
    *,
    by_reference: bool = False,
    options: DocumentOptions = AS_THEY_ARE,
    read: Callable[..., Document] = read_document,
) -> Plan:
    """Compare the files with the manifest. A file with the size and mtime on record is unchanged without
    being read, as long as the pass sets what the last one did on every document; another is read and
    its digest decides."""
    out = Plan()
    seen = set()
    same_options = manifest.options == options_key(options, by_reference)
    for file in files:
        seen.add(file.doc_id)
        known = manifest.entries.get(file.doc_id)
        if same_options and known is not None and (known.size, known.mtime_ns) == (file.size, file.mtime_ns):
            out.unchanged.append(file)
            continue
        doc = options.apply(read(file, by_reference=by_reference))
        digest = content_digest(doc)
        if known is None:
            out.added.append(Change(file, doc, digest))
        elif known.digest != digest:
            out.updated.append(Change(file, doc, digest))
        else:
            out.unchanged.append(file)
            out.touched[file.doc_id] = Entry(digest, file.size, file.mtime_ns)
    out.deleted = sorted(set(manifest.entries) - seen)
    return out


@dataclass(frozen=True, slots=True)
class SyncReport:
    added: int
    updated: int
    unchanged: int
    deleted: int
    chunks: int
    seconds: float
    # Of the updated files, those whose text the index held as it is: only their metadata changed (a
    # payload update, nothing embedded).
    metadata: int = 0

    def line(self) -> str:
        updated = f"{self.updated} updated" + (f" ({self.metadata} metadata only)" if self.metadata else "")
        return (
            f"{self.added} added, {updated}, {self.unchanged} unchanged, {self.deleted} deleted"
            f" ({self.chunks} chunks indexed in {self.seconds:.1f} s)"
        )


async def sync_pass(
    client: RagbusClient,
    root: Path,
    manifest: Manifest,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    by_reference: bool = False,
    options: DocumentOptions = AS_THEY_ARE,
    stall_timeout: float = 120.0,
    on_indexed: Callable[[Indexed], None] | None = None,
) -> SyncReport:
    """One pass: send what changed since the manifest, delete what is gone, record what was indexed."""
    started = time.monotonic()

    def scan() -> Plan:  # file reads and digests: off the event loop
        if not root.is_dir():
            # A missing or unmounted directory must not read as "every file was deleted".
            raise CliError(f"{root}: not a directory (nothing synced, nothing deleted)")
        files = find_files(root, include, exclude)
        return plan(files, manifest, by_reference=by_reference, options=options)

    work = await asyncio.to_thread(scan)
    manifest.entries.update(work.touched)
    changes = {c.document.doc_id: c for c in (*work.added, *work.updated)}
    updated = {c.document.doc_id for c in work.updated}
    chunks = metadata = 0

    def indexed(result: Indexed) -> None:
        nonlocal chunks, metadata
        chunks += result.chunks
        if result.change == "metadata" and result.doc_id in updated:
            metadata += 1
        change = changes[result.doc_id]
        manifest.entries[result.doc_id] = Entry(change.digest, change.file.size, change.file.mtime_ns)
        if on_indexed:
            on_indexed(result)

    try:
        if changes:
            await client.ingest(
                [c.document for c in changes.values()], stall_timeout=stall_timeout, on_indexed=indexed
            )

        async def delete(doc_id: str) -> None:
            await client.delete(doc_id, timeout=stall_timeout)
            del manifest.entries[doc_id]

        await asyncio.gather(*(delete(d) for d in work.deleted))
        # Every file was compared under these options: the next pass may trust size and mtime again.
        manifest.options = options_key(options, by_reference)
    finally:
        manifest.save()  # what did get indexed is on record, even when the pass failed half-way
    return SyncReport(
        added=len(work.added),
        updated=len(work.updated),
        unchanged=len(work.unchanged),
        deleted=len(work.deleted),
        chunks=chunks,
        seconds=time.monotonic() - started,
        metadata=metadata,
    )
