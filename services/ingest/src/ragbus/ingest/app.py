"""The ingest service: `docs.submitted` / `docs.deleted` in, `docs.chunked` out."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import partial
from typing import Annotated, Any

from pydantic import Discriminator, Tag

from ragbus.common import topics
from ragbus.common.app import RagbusApp
from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsChunked, DocsDeleted, DocsSubmitted
from ragbus.common.keyed import subject_key
from ragbus.common.processes import WorkerPool
from ragbus.common.service import Clients, Service
from ragbus.ingest import usecases
from ragbus.ingest.adapters.files import FileReader
from ragbus.ingest.adapters.wordpiece import load_tokenizer
from ragbus.ingest.domain import ByteQuotas
from ragbus.ingest.loaders import default_registry
from ragbus.ingest.settings import IngestSettings
from ragbus.ingest.usecases import IngestDeps

SERVICE = usecases.SERVICE


def _event_type(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


# The handler chooses the payload model by the CloudEvents `type`: an event of the other type on a topic
# is dead-lettered with a one-line reason rather than a validation error per union member.
DocsEvent = Annotated[
    Annotated[Envelope[DocsSubmitted], Tag(DocsSubmitted.event_type())]
    | Annotated[Envelope[DocsDeleted], Tag(DocsDeleted.event_type())],
    Discriminator(_event_type),
]


def cpu_deps(settings: IngestSettings, models: bool = True) -> IngestDeps:
    """The deps that do the CPU work themselves (blocking: loads the tokenizer and, with `models`, the
    injection scanner and language detector, ~120 MB); what each worker process builds for itself."""
    tokenizer = load_tokenizer(settings.tokenizer, settings.tokenizer_path)
    files = FileReader(settings.allowed_roots, settings.max_document_bytes, denied=settings.denied_roots)
    scanner = None
    if settings.injection_scan and models:
        # Imported here: numpy and scikit-learn load only when scanning is on.
        from ragbus.ingest.adapters.injection_scan import ShieldsInjectionScanner

        scanner = ShieldsInjectionScanner.load(settings.injection_threshold, settings.injection_cache)
    language = None
    if settings.language_tag and models:
        from ragbus.ingest.adapters.language import FastTextLanguage

        language = FastTextLanguage.load()
    quotas = ByteQuotas(settings.quotas) if settings.quotas else None
    return IngestDeps(
        tokenizer=tokenizer,
        files=files,
        policy=settings.policy(),
        loaders=default_registry(settings.record_template),
        scanner=scanner,
        quotas=quotas,
        language=language,
    )


async def open_deps(settings: IngestSettings, clients: Clients) -> IngestDeps:
    if not settings.processes:
        return await asyncio.to_thread(cpu_deps, settings)
    # The models load in the workers only: this process reads files and checks sizes and quotas.
    deps = await asyncio.to_thread(cpu_deps, settings, models=False)
    build = partial(cpu_deps, settings)
    processes = WorkerPool(SERVICE, settings.processes, initializer=usecases.start_worker, initargs=(build,))
    # Its ping starts the workers (each loads the tokenizer and models) before the first document.
    clients.add("processes", processes)
    return replace(deps, processes=processes)


def create_app(settings: IngestSettings | None = None, deps: IngestDeps | None = None) -> RagbusApp:
    settings = settings or IngestSettings()
    service = Service(
        SERVICE, settings, deps=deps, open_deps=partial(open_deps, settings), publishes=[DocsChunked]
    )

    async def on_docs(event: DocsEvent) -> None:
        if isinstance(event.data, DocsDeleted):
            await service.bus.reply(event, usecases.delete_document(event))
            return
        # Each part gets its own deterministic id: a redelivered submission republishes the same events.
        for part in await usecases.chunk_document(service.deps(), event):
            await service.bus.reply(event, part, seq=part.part)

    # Submissions `workers` at once, in order per document; deletions (no reading, no CPU) one at a time.
    service.subscriber(topics.DOCS_SUBMITTED, concurrent=True, bulk=True, order_by=subject_key)(on_docs)
    service.subscriber(topics.DOCS_DELETED, bulk=True)(on_docs)

    return service.app
