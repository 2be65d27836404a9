"""`ragbus`: the command line of the stack.

    ragbus up [--detach]        start broker, model server and every service (embedded defaults)
    ragbus ingest PATH|-        publish documents, wait until they are indexed
    ragbus ask "question"       publish a question, print the cited answer, its tier and trace id
    ragbus trace ID             draw a trace from the local span file
    ragbus dlq [replay]         list dead letters and why; replay them once their cause is fixed
    ragbus down / status        stop / show what `ragbus up` started

`up`, `down`, `status`, `serve` and `local` come from the ragbus-stack package, plugged in through the
`ragbus.cli` entry points (`ragbus.client.plugins`); this package never imports it. Errors are one
line on stderr and a non-zero exit code, never a traceback. Output cut short by its reader
(`ragbus ask ... | head -1`) ends the command quietly with status 141, as SIGPIPE ends `cat`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from pydantic import ValidationError

from ragbus.client.client import Answer, Document, Indexed, RagbusClient, RequestFailed, WaitTimeout
from ragbus.client.dlq import read_letters, record_letters, replay, replay_letters
from ragbus.client.errors import CliError
from ragbus.client.plugins import EvalGroup, PluginGroup
from ragbus.client.progress import IngestProgress
from ragbus.client.sources import (
    DOCUMENT_SUFFIXES,
    DocumentOptions,
    RecordFields,
    find_files,
    read_document,
    read_records,
    title_of,
)
from ragbus.client.trace import TraceNotFound, await_trace, render_tree
from ragbus.common import trust as trust_lib
from ragbus.common.admin import TopicAdminError, ensure_topics
from ragbus.common.envelope import parse_event
from ragbus.common.events import AnswersDelta, Citation, MetadataValue, QueryFilter, QueryOptions
from ragbus.common.letters import Letter
from ragbus.common.settings import KafkaSettings, TelemetrySettings, ragbus_home
from ragbus.common.topics import ALL_WITH_DLQ, Topics
from ragbus.common.trust import TrustSettings

T = TypeVar("T")
# `ragbus ingest`: a line per document on a terminal up to this many documents (beyond, the status line
# alone), and the status line in a log every this many seconds.
LIVE_DOCUMENT_LINES = 50
PROGRESS_EVERY_S = 10.0
# The status of a command whose reader went away (128 + SIGPIPE): what a shell reports for `cat | head`.
BROKEN_PIPE_EXIT = 141


def plural(count: int, word: str) -> str:
    """`1 document`, `2 documents`."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _explain(exc: BaseException, bootstrap: str) -> str:
    name = type(exc).__name__
    if name in {"KafkaConnectionError", "NoBrokersAvailable"} or isinstance(exc, ConnectionError):
        return f"cannot reach the Kafka broker at {bootstrap} (is `ragbus up` running? set KAFKA_BOOTSTRAP)"
    if isinstance(exc, WaitTimeout):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the stack (is `ragbus up` running, and are all services ready?)"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"invalid request: {where}: {message}" if where else f"invalid request: {message}"
    return str(exc) or name


def run_async(func: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        # The CLI reports failures itself, in one line; the libraries' own log lines would repeat them.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        try:
            return asyncio.run(func(*args, **kwargs))
        except (click.ClickException, click.exceptions.Exit, BrokenPipeError):
            raise  # a closed stdout is not a broker error: RagbusGroup ends the command quietly
        except RequestFailed as exc:
            raise CliError(str(exc)) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None  # Ctrl-C: the shell's status for SIGINT, no trace
        except Exception as exc:  # noqa: BLE001 - the CLI turns every failure into one clear line
            raise CliError(_explain(exc, kwargs.get("bootstrap") or KafkaSettings().bootstrap)) from None

    return wrapper


def _kafka(bootstrap: str | None) -> KafkaSettings:
    settings = KafkaSettings()
    return settings.model_copy(update={"bootstrap": bootstrap}) if bootstrap else settings


bootstrap_option = click.option("--bootstrap", envvar="KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")
tenant_option = click.option("--tenant", envvar="RAGBUS_TENANT", default="default", show_default=True)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test's captured output)
        pass


class RagbusGroup(PluginGroup):
    """The `ragbus` group: its own and the plugged-in commands; a reader that stops reading (`| head`)
    ends any of them quietly with status 141 instead of an error about the broker."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _discard_stdout()
            raise click.exceptions.Exit(BROKEN_PIPE_EXIT) from None


@click.group(cls=RagbusGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ragbus-client")
def main() -> None:
    """ragbus: an event-driven retrieval-augmented generation stack on Kafka."""


# --- documents --------------------------------------------------------------------------------------


def _documents(
    path: str,
    doc_id: str | None,
    by_reference: bool,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Iterator[Document]:
    if path == "-":
        text = sys.stdin.read()
        yield Document(doc_id=doc_id or "stdin", text=text, title=title_of(text, doc_id or "stdin"))
        return
    root = Path(path).expanduser()
    files = find_files(root, include, exclude)
    if not files:
        what = ", ".join(include) if include else ", ".join(DOCUMENT_SUFFIXES)
        raise CliError(f"{path}: no documents ({what}) found")
    for file in files:
        yield read_document(file, by_reference=by_reference, doc_id=doc_id if root.is_file() else None)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, list[str]]:
    """`KEY=VALUE` options, a repeated key collecting its values."""
    found: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{option} takes KEY=VALUE, not {item!r}")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


meta_option = click.option(
    "--meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Metadata of every document (repeat a key for a list, e.g. --meta tags=a --meta tags=b).",
)


def wait_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--stall-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=120.0,
        show_default=True,
        help=help_text,
    )


def _document_options(
    meta: tuple[str, ...],
    groups: tuple[str, ...],
    chunking: Literal["tokens", "headings", "sentences"] | None,
) -> DocumentOptions:
    """--meta KEY=VALUE (a repeated key becomes a list), --groups and --chunking, for every document."""
    metadata: dict[str, MetadataValue] = {
        k: v[0] if len(v) == 1 else v for k, v in _pairs(meta, "--meta").items()
    }
    return DocumentOptions(metadata, _groups(groups), chunking)


def _groups(values: tuple[str, ...]) -> tuple[str, ...]:
    """--groups a,b --groups c: every group named, once, in order."""
    found = [g.strip() for v in values for g in v.split(",") if g.strip()]
    return tuple(dict.fromkeys(found))


def groups_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--groups", "groups", multiple=True, metavar="G[,G...]", help=help_text)


READ_GROUPS = "Only askers in one of these groups may read the documents (default: the whole tenant)."
chunking_option = click.option(
    "--chunking",
    type=click.Choice(["headings", "tokens", "sentences"]),
    help="Cut at headings (chunks stay in their section), by token budget alone, or one chunk per "
    "sentence with its neighbours as context (default: headings for Markdown/HTML/DOCX, else tokens).",
)


def include_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--include / --exclude: glob patterns on the path below the directory (`*` crosses folders)."""
    func = click.option(
        "--exclude", multiple=True, metavar="GLOB", help="Leave out files matching GLOB (repeatable)."
    )(func)
    return click.option(
        "--include",
        multiple=True,
        metavar="GLOB",
        help="Only files matching GLOB, any suffix (repeatable; default: the formats ragbus reads).",
    )(func)


@main.command()
@click.argument("path")
@click.option("--doc-id", help="Document id (default: the path relative to PATH).")
@meta_option
@click.option("--by-reference", is_flag=True, help="Send the file path for the ingest service to read.")
@groups_option(READ_GROUPS)
@chunking_option
@include_options
@click.option("--records", is_flag=True, help="PATH is a JSON lines or CSV dataset: one document per record.")
@click.option("--id-field", default="id", show_default=True, help="With --records: the field of the id.")
@click.option(
    "--text-field",
    "text_fields",
    multiple=True,
    default=["text"],
    show_default=True,
    help="With --records: the field of the text (repeat to join several, a blank line apart).",
)
@click.option(
    "--title-field", default="title", show_default=True, help="With --records: the field of the title."
)
@wait_option("Give up after this many seconds in which no document is indexed on the bus (anyone's).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Give up after this many seconds in all, progress or not (default: no limit).",
)
@bootstrap_option
@tenant_option
@run_async
async def ingest(
    path: str,
    doc_id: str | None,
    meta: tuple[str, ...],
    by_reference: bool,
    groups: tuple[str, ...],
    chunking: Literal["tokens", "headings", "sentences"] | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    records: bool,
    id_field: str,
    text_fields: tuple[str, ...],
    title_field: str,
    stall_timeout: float,
    timeout: float | None,
    bootstrap: str | None,
    tenant: str,
) -> None:
    """Index documents: a file, a directory (recursive), - for stdin, or a dataset (--records).

    It waits as long as the stack indexes documents (its own may wait behind a backlog) and gives up
    after --stall-timeout seconds without progress, saying where each document not indexed yet is
    (submitted but not chunked yet, or chunked but not indexed).
    """
    options = _document_options(meta, groups, chunking)
    found = (
        read_records(path, RecordFields(id_field, text_fields, title_field or None))
        if records
        else _documents(path, doc_id, by_reference, include, exclude)
    )
    docs = [options.apply(d) for d in found]
    tally = IngestProgress(len(docs), time.monotonic())
    # On a terminal one status line updates in place (a line per document for a few documents); in a
    # log, a line per document and the status line every PROGRESS_EVERY_S seconds.
    live = sys.stdout.isatty()
    last = tally.started

    def progress(result: Indexed) -> None:
        nonlocal last
        tally.add(result.chunks)
        now = time.monotonic()
        same = f"  {result.label}" if result.change in ("unchanged", "metadata") else ""
        line = (
            f"  indexed {result.doc_id}  {plural(result.chunks, 'chunk')}{same}{_duplicate(result)}"
            f"  ({tally.docs}/{len(docs)})"
        )
        if live:
            if len(docs) <= LIVE_DOCUMENT_LINES:
                click.echo(f"\r\x1b[K{line}")
            click.echo(f"\r\x1b[K  {tally.line(now)}", nl=False)
            return
        click.echo(line)
        if now - last >= PROGRESS_EVERY_S and tally.docs < len(docs):
            last = now
            click.echo(f"  … {tally.line(now)}")

    click.echo(f"ingesting {plural(len(docs), 'document')} …")
    async with RagbusClient(
        _kafka(bootstrap), tenant=tenant, source="ragbus/cli", replies="documents"
    ) as client:
        results = await client.ingest(docs, stall_timeout=stall_timeout, timeout=timeout, on_indexed=progress)
    if live:
        click.echo()
    took = max(r.elapsed_ms for r in results) / 1000
    chunks = sum(r.chunks for r in results)
    rates = f"{len(results) / took:.1f} docs/s, {chunks / took:.1f} chunks/s" if took > 0 else "at once"
    counts = f"{plural(len(results), 'document')}, {plural(chunks, 'chunk')}"
    click.echo(f"{counts} indexed in {took:.1f} s ({rates})")
    # An unchanged document costs a lookup, not an embedding: say so, or a re-ingest looks like work.
    kinds = Counter(r.change for r in results)
    updated = updated_count(kinds["updated"], kinds["metadata"])
    line = f"{kinds['added']} added, {updated}, {kinds['unchanged']} unchanged"
    near = sum(r.duplicate_of is not None for r in results)
    if near:
        line += f"; {plural(near, 'near duplicate')} of other documents ({kinds['skipped']} skipped)"
    click.echo(line)


@main.command()
@click.argument("doc_id")
@bootstrap_option
@tenant_option
@run_async
async def delete(doc_id: str, bootstrap: str | None, tenant: str) -> None:
    """Remove a document from the index (exit 1 when the tenant has no such document)."""
    async with RagbusClient(
        _kafka(bootstrap), tenant=tenant, source="ragbus/cli", replies="documents"
    ) as client:
        result = await client.delete(doc_id)
    if result.removed == 0:
        raise CliError(f"document {doc_id} not found for tenant {tenant}: nothing to delete")
    click.echo(f"deleted {doc_id}: {plural(result.removed, 'chunk')} removed")


def updated_count(updated: int, metadata: int) -> str:
    """`3 updated`, and how many of them only in their metadata (nothing embedded), when any."""
    total = f"{updated + metadata} updated"
    return f"{total} ({metadata} metadata only)" if metadata else total


def _duplicate(result: Indexed) -> str:
    if result.duplicate_of is None:
        return ""
    what = "skipped: near duplicate" if result.skipped else "near duplicate"
    return f"  {what} of {result.duplicate_of} ({result.similarity or 0:.2f})"


def _sync_state(directory: Path, state: Path | None, tenant: str, topic_prefix: str) -> tuple[Path, Any]:
    """The directory to sync and its manifest (`--state`, else the one of this tenant and directory)."""
    from ragbus.client.sync import Manifest, manifest_path

    root = directory.expanduser()
    path = state or manifest_path(ragbus_home(), root, tenant, topic_prefix)
    return root, Manifest.load(path, root=str(root.resolve()), tenant=tenant)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@meta_option
@click.option("--by-reference", is_flag=True, help="Send file paths for the ingest service to read.")
@groups_option(READ_GROUPS)
@chunking_option
@include_options
@click.option("--watch", is_flag=True, help="Keep running: sync again whenever a file changes.")
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="With --watch, also sync every this many seconds without a change seen.",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The manifest file (default: one per tenant and directory under RAGBUS_HOME/sync).",
)
@wait_option("Give up a pass after this many seconds in which no document is indexed on the bus.")
@bootstrap_option
@tenant_option
@run_async
async def sync(
    directory: Path,
    meta: tuple[str, ...],
    by_reference: bool,
    groups: tuple[str, ...],
    chunking: Literal["tokens", "headings", "sentences"] | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    watch: bool,
    interval: float,
    state: Path | None,
    stall_timeout: float,
    bootstrap: str | None,
    tenant: str,
) -> None:
    """Keep the index in step with a directory: send added and changed files, delete removed ones.

    A manifest of the last pass (content digests) tells what changed, so unchanged files cost nothing;
    it only produces events, so it runs wherever the broker is reachable. With --watch it syncs again
    on every change until interrupted.
    """
    from ragbus.client.sync import sync_pass

    options = _document_options(meta, groups, chunking)
    kafka = _kafka(bootstrap)
    root, manifest = _sync_state(directory, state, tenant, kafka.topic_prefix)
    async with RagbusClient(kafka, tenant=tenant, source="ragbus/sync", replies="documents") as client:

        async def once() -> None:
            report = await sync_pass(
                client,
                root,
                manifest,
                include=include,
                exclude=exclude,
                by_reference=by_reference,
                options=options,
                stall_timeout=stall_timeout,
                on_indexed=lambda r: click.echo(
                    f"  {r.label} {r.doc_id}  {plural(r.chunks, 'chunk')}{_duplicate(r)}"
                ),
            )
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            click.echo(f"{stamp} {root}: {report.line()}")

        await once()
        if not watch:
            return

        click.echo(f"watching {root} (Ctrl-C to stop)")
        await _watch(root, interval, once)
        click.echo("stopped watching")


async def _watch(root: Path, interval: float, once: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `once` on every batch of changes under `root` (debounced) and every `interval` seconds
    without one, until SIGINT or SIGTERM. The pass itself finds what changed, so a change the watcher
    misses (one made while it started, a network share without inotify) waits at most an interval.

    The first signal lets a pass in progress finish and ends the watch; a second one interrupts."""
    from watchfiles import awatch

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        stop.set()
        loop.remove_signal_handler(sig)  # a second Ctrl-C gets Python's own: KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async for _ in awatch(
            root,
            debounce=1000,
            step=200,
            rust_timeout=int(interval * 1000),
            yield_on_timeout=True,
            stop_event=stop,
        ):
            if stop.is_set():
                break
            await once()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# --- questions ----------------------------------------------------------------------------------------


def _print_answer(result: Answer) -> None:
    a = result.answer
    if a.status != "answered":
        click.secho(f"{a.status}: {a.reason or 'no reason given'}", fg="red", err=False)
    if a.answer.strip() and (a.status == "answered" or a.answer.strip() != (a.reason or "").strip()):
        click.echo(a.answer)  # a blocked answer that only repeats its reason is not printed twice
    if a.citations:
        click.echo("\nSources:")
        for c in a.citations:
            quote = (c.quote or "").replace("\n", " ")
            quote = f' — "{quote[:110]}{"…" if len(quote) > 110 else ""}"' if quote else ""
            title = f" ({c.title})" if c.title and c.title != c.doc_id else ""
            click.echo(f"  [{c.n}] {c.doc_id}{_place(c)}{title}{quote}")
    tier = f"{a.cascade.reason}  ·  " if a.cascade else ""
    click.secho(f"\n{tier}{result.elapsed_ms:.0f} ms  ·  trace {result.trace_id}", dim=True)
    click.secho(f"query {a.query_id}  ·  rate it: ragbus feedback {a.query_id} up|down", dim=True)


def _place(c: Citation) -> str:
    """Where the cited passage is: ` p. 3`, ` pp. 3-4`, ` § Methods > Participants`."""
    out = ""
    if c.page is not None:
        last = c.last_page or c.page
        out += f" p. {c.page}" if last == c.page else f" pp. {c.page}-{last}"
    if c.section:
        out += f" § {' > '.join(c.section)}"
    return out


class _DraftPrinter:
    """`ragbus ask --stream`: the draft as it comes, dimmed; a withdrawn tier's text is announced, and
    the answer the guard checked is printed in full after it (`_print_answer`)."""

    def __init__(self) -> None:
        self.shown = ""

    def on_delta(self, delta: AnswersDelta) -> None:
        if delta.reset and self.shown:
            click.secho(f"\n[tier {delta.tier}'s draft was not accepted; another tier answers]", dim=True)
            self.shown = ""
        if delta.text:
            click.secho(delta.text, nl=False, dim=True)
            self.shown += delta.text
        if delta.final and self.shown:
            click.echo()

    def close(self, result: Answer) -> None:
        if result.answer.status != "answered" and self.shown:
            click.secho("[the draft above was withdrawn by the guard]", fg="red")
        click.secho("— as checked —", dim=True)


def _aware(moment: datetime | None) -> datetime | None:
    """A date given without a zone means UTC (documents' dates are compared as instants)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _print_ranking(result: Answer) -> None:
    for n, c in enumerate(result.answer.retrieved, start=1):
        lexical = f"  bm25 {c.lexical:.2f}" if c.lexical is not None else ""
        title = f"  ({c.title})" if c.title and c.title != c.doc_id else ""
        click.echo(f"{n:3}. {c.doc_id}#{c.index}  cosine {c.score:.3f}{lexical}{title}")
    click.secho(f"\n{result.elapsed_ms:.0f} ms  ·  trace {result.trace_id}", dim=True)


@main.command()
@click.argument("question")
@click.option("--top-k", type=int, help="How many chunks to retrieve.")
@click.option("--min-tier", type=int, help="Start the cascade at this tier (1 = always use the model).")
@click.option("--max-tier", type=int, help="Never escalate past this tier (0 = no model).")
@click.option("--max-cost", type=click.FloatRange(min=0), help="Spend at most this many USD on models.")
@click.option("--max-latency-ms", type=click.FloatRange(min=1), help="Stop calling models after this long.")
@click.option(
    "--conversation",
    help="Conversation id: the question sees the conversation's earlier turns (and stays in order).",
)
@click.option(
    "--where",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only documents whose metadata KEY has VALUE (repeat a key for any of several values).",
)
@click.option("--after", type=click.DateTime(), help="Only documents whose date (--date-field) is on/after.")
@click.option("--before", type=click.DateTime(), help="Only documents whose date (--date-field) is before.")
@click.option(
    "--date-field", default="date", show_default=True, help="The metadata key --after/--before read."
)
@groups_option("The asker's groups: retrieval sees documents open to all and those shared with these.")
@click.option("--retrieve-only", is_flag=True, help="Print the ranked chunks; generate no answer.")
@click.option("--no-cache", is_flag=True, help="Answer afresh: neither read nor write the semantic cache.")
@click.option(
    "--stream",
    is_flag=True,
    help="Print the answer as it is generated (a draft; the answer as the guard checked it follows).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answers.completed event as JSON.")
@click.option("--timeout", default=180.0, show_default=True)
@bootstrap_option
@tenant_option
@run_async
async def ask(
    question: str,
    top_k: int | None,
    min_tier: int | None,
    max_tier: int | None,
    max_cost: float | None,
    max_latency_ms: float | None,
    conversation: str | None,
    where: tuple[str, ...],
    after: datetime | None,
    before: datetime | None,
    date_field: str,
    groups: tuple[str, ...],
    retrieve_only: bool,
    no_cache: bool,
    stream: bool,
    as_json: bool,
    timeout: float,
    bootstrap: str | None,
    tenant: str,
) -> None:
    """Ask a question; print the answer with its citations, tier and trace id."""
    filters = None
    if where or after or before:
        filters = QueryFilter(
            metadata=_pairs(where, "--where"),
            after=_aware(after),
            before=_aware(before),
            date_field=date_field,
        )
    options = QueryOptions(
        top_k=top_k,
        min_tier=min_tier,
        max_tier=max_tier,
        max_cost_usd=max_cost,
        max_latency_ms=max_latency_ms,
        where=filters,
        retrieve_only=retrieve_only,
        cache=not no_cache,
    )
    printer = _DraftPrinter() if stream and not as_json and not retrieve_only else None
    async with RagbusClient(_kafka(bootstrap), tenant=tenant, source="ragbus/cli") as client:
        result = await client.ask(
            question,
            conversation_id=conversation,
            options=options.model_copy(update={"stream": stream}),
            timeout=timeout,
            on_delta=printer.on_delta if printer else None,
            groups=_groups(groups),
        )
    if printer is not None:
        printer.close(result)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "trace_id": result.trace_id,
                    "elapsed_ms": round(result.elapsed_ms, 1),
                    "event": json.loads(result.event.to_bytes()),
                },
                indent=2,
            )
        )
    elif retrieve_only and result.answer.status == "answered":
        _print_ranking(result)
    else:
        _print_answer(result)
    if result.answer.status != "answered":
        raise click.exceptions.Exit(2)


@main.command()
@click.argument("query_id")
@click.argument("rating", type=click.Choice(["up", "down"]))
@click.option("--comment")
@click.option(
    "--correction", help="The answer as it should have been (`ragbus export` uses it in place of the answer)."
)
@bootstrap_option
@tenant_option
@run_async
async def feedback(
    query_id: str,
    rating: str,
    comment: str | None,
    correction: str | None,
    bootstrap: str | None,
    tenant: str,
) -> None:
    """Rate an answer (its query id is on the last line `ragbus ask` prints).

    It waits until the monitor has recorded the rating, and exits 1 when no question with this id is on
    record for the tenant.
    """
    async with RagbusClient(_kafka(bootstrap), tenant=tenant, source="ragbus/cli") as client:
        recorded = await client.feedback(query_id, rating, comment, correction=correction)
    if not recorded.known:
        raise CliError(f"no question with id {query_id} on record for tenant {tenant}")
    click.echo("feedback recorded")


# --- dead letters -------------------------------------------------------------------------------------


def _letter_line(letter: Letter) -> str:
    where = f"{letter.dlq_topic}#{letter.partition}@{letter.offset}"
    if letter.letter is None:
        return f"  {where}  (no x-ragbus-dlq-* headers)  {len(letter.value)} bytes"
    d = letter.letter
    reason = d.reason if len(d.reason) <= 120 else d.reason[:119] + "…"
    return f"  {where}  {d.service}  {d.failed_at:%Y-%m-%d %H:%M:%S}  {d.error_type}: {reason}"


from_record_option = click.option(
    "--from-record",
    is_flag=True,
    help="Read them from the monitor's record (PostgreSQL), which outlives a broker that lost its log.",
)


async def _letters(kafka: KafkaSettings, bases: tuple[str, ...], from_record: bool) -> list[Letter]:
    if not from_record:
        return await read_letters(kafka, bases)
    try:
        return await record_letters(kafka, bases)
    except LookupError as exc:
        raise CliError(str(exc)) from None


@main.group(invoke_without_command=True)
@click.option("--topic", "bases", multiple=True, help="Only this topic's letters (e.g. docs.submitted.v1).")
@click.option("--limit", default=20, show_default=True, help="Show the newest N letters of each topic.")
@from_record_option
@bootstrap_option
@click.pass_context
def dlq(
    ctx: click.Context, bases: tuple[str, ...], limit: int, from_record: bool, bootstrap: str | None
) -> None:
    """List dead letters (what a service could not process, and why); `dlq replay` re-sends them."""
    if ctx.invoked_subcommand is None:
        _list_letters(bases, limit, from_record, bootstrap=bootstrap)


@run_async
async def _list_letters(
    bases: tuple[str, ...], limit: int, from_record: bool, *, bootstrap: str | None
) -> None:
    letters = await _letters(_kafka(bootstrap), bases, from_record)
    if not letters:
        click.echo("no dead letters")
        return
    by_topic: dict[str, list[Letter]] = {}
    for letter in letters:
        by_topic.setdefault(letter.original_topic, []).append(letter)
    for topic, found in by_topic.items():
        click.echo(f"{topic}: {plural(len(found), 'dead letter')}")
        for letter in found[-limit:]:
            click.echo(_letter_line(letter))


@dlq.command("replay")
@click.option("--topic", "bases", multiple=True, help="Only this topic's letters (default: every topic).")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; publish and record nothing.")
@from_record_option
@bootstrap_option
@run_async
async def dlq_replay(bases: tuple[str, ...], dry_run: bool, from_record: bool, bootstrap: str | None) -> None:
    """Publish dead letters to their topic again, once the cause is fixed. Each is replayed once from the
    bus; from the record (`--from-record`), each time it is asked, which consumers take as redeliveries."""
    kafka = _kafka(bootstrap)
    if from_record:
        result = await replay_letters(kafka, await _letters(kafka, bases, True), dry_run=dry_run)
    else:
        result = await replay(kafka, bases, dry_run=dry_run)
    verb = "would replay" if dry_run else "replayed"
    for letter in result.published:
        click.echo(f"  {verb} {letter.original_topic}  ({letter.dlq_topic}@{letter.offset})")
    dupes = (
        f" ({result.duplicates} duplicate letters of the same messages skipped)" if result.duplicates else ""
    )
    click.echo(f"{verb} {plural(len(result.published), 'message')}{dupes}")


# --- topics -------------------------------------------------------------------------------------------


@main.group()
def topics() -> None:
    """The ragbus topics on a Kafka cluster (docker compose's topic-init runs `topics create`)."""


@topics.command("list")
def topics_list() -> None:
    """Print every topic the services use (KAFKA_TOPIC_PREFIX applied), dead-letter topics included."""
    click.echo("\n".join(Topics(KafkaSettings().topic_prefix).all_with_dlq))


@topics.command("create")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="Partitions of each new topic (default: KAFKA_PARTITIONS).",
)
@click.option(
    "--dlq-partitions",
    type=click.IntRange(min=1),
    help="Partitions of each new .dlq topic (default: KAFKA_DLQ_PARTITIONS, 1).",
)
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Replicas of each new topic; 3 on a cluster of 3 brokers or more.",
)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Seconds to wait."
)
@bootstrap_option
@run_async
async def topics_create(
    partitions: int | None,
    dlq_partitions: int | None,
    replication_factor: int,
    timeout: float,
    bootstrap: str | None,
) -> None:
    """Create every ragbus topic and its .dlq topic that is missing, and wait until all serve.

    Existing topics are left alone; one with fewer partitions than asked is reported, not grown
    (growing a topic moves keys to other partitions and breaks their order).
    """
    settings = _kafka(bootstrap)
    partitions = partitions or settings.partitions
    dlq_partitions = dlq_partitions or settings.dlq_partitions
    try:
        found = await ensure_topics(
            settings,
            Topics(settings.topic_prefix).all_with_dlq,
            partitions=partitions,
            dlq_partitions=dlq_partitions,
            replication=replication_factor,
            timeout_s=timeout,
            wait_for_broker=True,
        )
    except TopicAdminError as exc:
        raise CliError(str(exc)) from None
    click.echo(
        f"{len(found.missing)} topics created with {partitions} partitions "
        f"({dlq_partitions} for .dlq topics), "
        f"{len(found.existing)} already present (Kafka at {settings.bootstrap})"
    )
    if found.short:
        listed = ", ".join(f"{name} ({count})" for name, count in found.short)
        click.echo(
            f"ragbus: warning: {len(found.short)} topics have fewer partitions than asked "
            f"({partitions}, {dlq_partitions} for .dlq topics), "
            f"left as they are (growing a topic reorders its keys): {listed}",
            err=True,
        )


# --- evaluations -------------------------------------------------------------------------------------


# Options and output the eval commands share.
json_report_option = click.option(
    "--json", "json_path", type=click.Path(path_type=Path), help="Also write the report here (- = stdout)."
)
concurrency_option = click.option(
    "--concurrency", type=click.IntRange(min=1), default=1, show_default=True, help="Requests in flight."
)
stall_timeout_option = click.option(
    "--stall-timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Give up indexing after this many seconds without progress.",
)


def _progress_printer(json_path: Path | None) -> Callable[[str], None]:
    """Progress lines and tables go to stdout, or to stderr when the JSON report takes stdout."""
    to_stderr = json_path is not None and str(json_path) == "-"
    return lambda line: click.echo(line, err=to_stderr)


async def _write_report(json_path: Path | None, report: dict[str, Any]) -> None:
    """The report as JSON, to stdout for `-`, else to the file; nothing without --json."""
    if json_path is None:
        return
    text = json.dumps(report, indent=2)
    if str(json_path) == "-":
        click.echo(text)
    else:
        await asyncio.to_thread(json_path.write_text, text + "\n", encoding="utf-8")


@main.group("eval", cls=EvalGroup)
def eval_group() -> None:
    """Evaluate the stack's parts on labelled data (commands plugged in by the installed services)."""


@eval_group.command("retrieval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", help="Which qrels to judge by (default: test if the folder has it, else train).")
@click.option("--tenant", help="Tenant to index into (default: eval-<folder>-<content hash>).")
@click.option("--reindex", is_flag=True, help="Index the corpus even if the tenant holds it already.")
@click.option("--limit", type=click.IntRange(min=1), help="Ask only the first N judged queries.")
@concurrency_option
@json_report_option
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Per query.")
@stall_timeout_option
@bootstrap_option
@run_async
async def eval_retrieval(
    dataset: Path,
    split: str | None,
    tenant: str | None,
    reindex: bool,
    limit: int | None,
    concurrency: int,
    json_path: Path | None,
    timeout: float,
    stall_timeout: float,
    bootstrap: str | None,
) -> None:
    """Retrieval quality of the running stack on a BEIR folder (corpus.jsonl, queries.jsonl, qrels).

    The corpus is indexed through the stack into a tenant of its own (reused when it already holds the
    same content), every judged query runs through the guard and the orchestrator's retrieval, and
    nDCG@10, Recall@10/100, MRR@10 and latency p50/p95 are printed (and written as JSON with --json).
    """
    from ragbus.client.evaluation import load_beir
    from ragbus.client.retrieval_eval import corpus_digest, eval_tenant, evaluate_retrieval

    split = _default_split(dataset, split)
    data = load_beir(dataset, split)
    if limit is not None:
        queries = dict(list(data.queries.items())[:limit])
        data = replace(data, queries=queries, qrels={q: data.qrels[q] for q in queries})
    if not data.queries:
        raise CliError(f"{dataset}: no judged queries in split {split!r}")
    digest = corpus_digest(data)
    tenant = tenant or eval_tenant(dataset, digest)
    say = _progress_printer(json_path)
    async with RagbusClient(_kafka(bootstrap), tenant=tenant, source="ragbus/eval") as client:
        report = await evaluate_retrieval(
            client, data, dataset=f"{dataset.name} ({split})", digest=digest, reindex=reindex,
            concurrency=concurrency, timeout=timeout, stall_timeout=stall_timeout, say=say,
        )  # fmt: skip
    say(report.table())
    await _write_report(json_path, report.as_json())


def _default_split(dataset: Path, split: str | None) -> str:
    from ragbus.client.evaluation import qrels_path

    if split is not None:
        return split
    try:
        qrels_path(dataset, "test")
        return "test"
    except FileNotFoundError:
        return "train"


@eval_group.command("answers")
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--tiers",
    default="0,1,cascade",
    show_default=True,
    help="Configurations side by side: tier numbers (that tier alone) and 'cascade' (the stack's choice).",
)
@click.option("--split", help="BEIR folder: which qrels (default: test if present, else train).")
@click.option(
    "--tenant",
    help="Tenant to ask (a questions file: required; a BEIR folder: default eval-<folder>-<hash>).",
)
@click.option("--reindex", is_flag=True, help="BEIR folder: index the corpus even if the tenant holds it.")
@click.option("--limit", type=click.IntRange(min=1), help="Ask only the first N questions.")
@concurrency_option
@click.option(
    "--claim-template",
    default=None,
    help="How a labelled claim is asked ({text} is the claim). Default: "
    '"Do the sources support or contradict this claim? {text}".',
)
@json_report_option
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Per question."
)
@stall_timeout_option
@bootstrap_option
@run_async
async def eval_answers(
    dataset: Path,
    tiers: str,
    split: str | None,
    tenant: str | None,
    reindex: bool,
    limit: int | None,
    concurrency: int,
    claim_template: str | None,
    json_path: Path | None,
    timeout: float,
    stall_timeout: float,
    bootstrap: str | None,
) -> None:
    """Answer quality, cost and latency of the running stack on labelled questions, per tier.

    DATASET is a BEIR folder (indexed through the stack as by `eval retrieval`; gold documents from its
    qrels, gold verdicts from a SciFact-style claims file beside them) or a JSONL/CSV file of questions
    (`question`, and any of `answer`, `label`, `doc_ids`) asked against --tenant. Every question is
    asked under each configuration of --tiers; the report puts them side by side: correctness against
    the gold label, citation precision and recall against the gold documents, groundedness (the guard's
    support score), the tiers that answered, cost and latency p50/p95.
    """
    from ragbus.client.answers_eval import (
        CLAIM_TEMPLATE,
        evaluate_answers,
        load_questions,
        parse_configs,
        questions_from_beir,
        table,
    )
    from ragbus.client.evaluation import load_beir
    from ragbus.client.retrieval_eval import corpus_digest, ensure_indexed, eval_tenant

    try:
        configs = parse_configs(tiers)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    template = claim_template or CLAIM_TEMPLATE
    if "{text}" not in template:
        raise CliError("--claim-template must contain {text}")
    say = _progress_printer(json_path)
    data = None
    if await asyncio.to_thread(dataset.is_dir):
        split = _default_split(dataset, split)
        try:
            data = load_beir(dataset, split)
            questions = questions_from_beir(dataset, data, split)
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(str(exc)) from None
        digest = corpus_digest(data)
        tenant = tenant or eval_tenant(dataset, digest)
        name = f"{dataset.name} ({split})"
    else:
        if tenant is None:
            raise CliError("a questions file is asked against the documents of a tenant: pass --tenant")
        try:
            questions = load_questions(dataset)
        except (UnicodeDecodeError, ValueError) as exc:
            raise CliError(f"{dataset}: {exc}") from None
        name = dataset.name
    questions = questions[:limit] if limit is not None else questions
    if not questions:
        raise CliError(f"{dataset}: no questions")

    async with RagbusClient(_kafka(bootstrap), tenant=tenant, source="ragbus/eval") as client:
        if data is not None:
            await ensure_indexed(
                client, data, digest, reindex=reindex, timeout=timeout, stall_timeout=stall_timeout, say=say
            )
        summaries, scored = await evaluate_answers(
            client, questions, configs, concurrency=concurrency, timeout=timeout, claim_template=template,
            say=say,
        )  # fmt: skip
    labelled = sum(q.label is not None or bool(q.answer) for q in questions)
    say(f"{name}: {len(questions)} questions ({labelled} with a gold label or answer), tenant {tenant}")
    say(table(summaries))
    report = {
        "dataset": name,
        "tenant": tenant,
        "questions": len(questions),
        "configs": summaries,
        "requests": [dataclasses.asdict(s) for s in scored],
    }
    await _write_report(json_path, report)


# --- traces -------------------------------------------------------------------------------------------


@main.command()
@click.argument("trace_id", metavar="TRACE_ID|QUERY_ID")
@click.option(
    "--file", "span_file", type=click.Path(path_type=Path), help="Span file (default: RAGBUS_HOME)."
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds to wait for spans still being exported (a trace of the last second).",
)
def trace(trace_id: str, span_file: Path | None, wait: float) -> None:
    """Draw a trace from the local span file as a tree: by trace id (8+ hex digits) or query id."""
    path = span_file or TelemetrySettings().span_file
    try:
        click.echo(render_tree(await_trace(path, trace_id, wait_s=wait)))
    except TraceNotFound as exc:
        raise CliError(str(exc)) from None


if __name__ == "__main__":
    main()


# --- trust ---------------------------------------------------------------------------------------------


def _trust_dir(directory: Path | None) -> Path:
    return directory or TrustSettings().dir or ragbus_home() / "trust"


trust_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="The trust directory (default: RAGBUS_TRUST_DIR, else $RAGBUS_HOME/trust, which `ragbus up` uses).",
)


@main.group()
def trust() -> None:
    """Who may write what on the bus: principals, their keys and grants (docs/trust.md)."""


@trust.command("init")
@trust_dir_option
def trust_init(directory: Path | None) -> None:
    """Make the keys of the five services and the operator that are missing (`ragbus up` does it)."""
    target = _trust_dir(directory)
    made = trust_lib.init(target)
    click.echo(f"{target}: {'made keys for ' + ', '.join(made) if made else 'every key already there'}")


@trust.command("add")
@click.argument("name")
@click.option(
    "--tenant", "tenants", multiple=True, required=True, help="A tenant it may speak for (repeat; * for any)."
)
@click.option(
    "--topic",
    "topic_names",
    multiple=True,
    help="A topic it may write (repeat; default: the four submission topics).",
)
@click.option(
    "--replace", is_flag=True, help="Give an existing principal a new key (the old one stops working)."
)
@trust_dir_option
def trust_add(
    name: str, tenants: tuple[str, ...], topic_names: tuple[str, ...], replace: bool, directory: Path | None
) -> None:
    """Add an application as a principal: a private key for it, its public key and grants in trust.json.

    Running services pick it up without a restart. Give the application the key file and set
    RAGBUS_TRUST_MODE=enforce RAGBUS_TRUST_PRINCIPAL=NAME RAGBUS_TRUST_KEY_FILE=<key> where it runs.
    """
    target = _trust_dir(directory)
    unknown = sorted(set(topic_names) - set(ALL_WITH_DLQ))
    if unknown:
        raise CliError(f"unknown topic {', '.join(unknown)}: one of {', '.join(ALL_WITH_DLQ)}")
    try:
        key = trust_lib.add_principal(
            target, name, topics=topic_names or trust_lib.SUBMISSIONS, tenants=tenants, replace=replace
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"principal {name}: tenants {', '.join(tenants)}; key {key} (keep it secret)")


@trust.command("list")
@trust_dir_option
def trust_list(directory: Path | None) -> None:
    """The principals of the trust file, with what each may write and for which tenants."""
    path = _trust_dir(directory) / trust_lib.TRUST_FILE
    try:
        grants = trust_lib.read_grants(path)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for grant in grants.values():
        click.echo(
            f"{grant.principal:14} tenants {','.join(grant.tenants):12} topics {', '.join(grant.topics)}"
        )


@main.command()
@click.argument("source", type=click.File("rb"), default="-")
@bootstrap_option
@run_async
async def publish(source: Any, bootstrap: str | None) -> None:
    """Publish raw CloudEvents (JSON, one per line; `-` reads stdin) to the topics of their types,
    keyed `tenant:...` and signed as this machine's principal (the operator beside `ragbus up`).

    For producers of your own: what `kcat` does, with the signature a stack that enforces trust asks for.
    """
    events = []
    for n, line in enumerate(source, 1):
        if line.strip():
            try:
                events.append(parse_event(line))
            except ValueError as exc:
                raise CliError(f"line {n} is not a ragbus event: {exc}") from None
    settings = _kafka(bootstrap)
    async with RagbusClient(settings) as client:
        for event in events:
            await client.publish(event)
    click.echo(f"published {plural(len(events), 'event')} to {settings.bootstrap}")
