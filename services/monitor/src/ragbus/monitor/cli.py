"""`ragbus journal`: the monitor's record as the journal of what users submitted; plugged into the
`ragbus` CLI (`ragbus.cli` entry points), and called by `ragbus up` after it starts a broker that has
lost its log (`ragbus.journal` entry points). And `ragbus export`, the record's well-rated answers as a
dataset (ragbus.monitor.export).

    ragbus journal                  submissions since 24 h ago with no outcome on record
    ragbus journal redrive          publish them again (`--dry-run`: only say which)
    ragbus journal --since 7d

Re-driving is safe while the first copies are still on the bus: the event goes out as it was, and
every consumer takes it for a redelivery (docs/errors.md, "Local durability").
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from aiokafka import AIOKafkaProducer

from ragbus.common import topics
from ragbus.common.admin import ensure_topics
from ragbus.common.envelope import Envelope
from ragbus.common.errors import DependencyUnavailable
from ragbus.common.kafka import client_options
from ragbus.common.letters import Letter
from ragbus.common.settings import KafkaSettings, client_trust_settings
from ragbus.common.topics import Topics
from ragbus.common.trust import OPERATOR, publish_headers, signer_for
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.commands import cli_settings, parse_window
from ragbus.monitor.export import FORMATS, Format, MinRating, Selection, export_dataset, export_summary
from ragbus.monitor.ports import DeadLetterRecord, EventRecord, EventStore
from ragbus.monitor.settings import MonitorSettings
from ragbus.monitor.usecases import Redriven, redrive

DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_LIMIT = 100_000


class _Publisher:
    """Publishes resubmissions as the operator (signed when trust is on), to their own topics."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.topics = Topics(kafka.topic_prefix)
        self.signer = signer_for(client_trust_settings(), OPERATOR)
        self.producer = AIOKafkaProducer(**client_options(kafka), max_request_size=kafka.max_request_size)

    async def __call__(self, event: Envelope[Any]) -> None:
        topic = self.topics(type(event.data).topic)
        value = event.to_bytes()
        headers = publish_headers(self.signer, topic, event.key, value)
        await self.producer.send_and_wait(topic, value, key=event.key, headers=headers)


@asynccontextmanager
async def _record(settings: MonitorSettings) -> AsyncIterator[PostgresEventStore]:
    store = await PostgresEventStore.open(settings)
    try:
        yield store
    finally:
        await store.aclose()


async def run_journal(
    store: EventStore, kafka: KafkaSettings, *, window: timedelta, limit: int, publish: bool
) -> Redriven:
    """What the journal owes since `window` ago; with `publish`, published again (topics made first)."""
    since = datetime.now(UTC) - window
    if not publish:
        return await redrive(store, _noop, since=since, limit=limit, dry_run=True)
    publisher = _Publisher(kafka)
    await ensure_topics(kafka, publisher.topics.all_with_dlq)  # a fresh broker: partitions as configured
    await publisher.producer.start()
    try:
        return await redrive(store, publisher, since=since, limit=limit)
    finally:
        await publisher.producer.stop()


async def _noop(_: Envelope[Any]) -> None:
    return None


def summary(found: Redriven, verb: str) -> str:
    if not found.published:
        text = "nothing unfinished on record"
    else:
        counts = ", ".join(f"{name} {n}" for name, n in found.counts().items())
        n = len(found.published)
        text = f"{verb} {n} submission{'s' if n != 1 else ''} with no outcome ({counts})"
    if found.unreadable:
        text += f"; {len(found.unreadable)} on record no longer parse and were left alone"
    return text


def _line(record: EventRecord) -> str:
    what = record.type.removeprefix("io.ragbus.")
    return (
        f"  {record.event_time:%Y-%m-%d %H:%M:%S}  {record.tenant}  {what}  {record.subject or '-'}  "
        f"(correlation {record.correlation_id})"
    )


def letter_of(record: DeadLetterRecord) -> Letter:
    """A dead letter on record as `ragbus dlq` shows and replays it: the bytes, key and headers as the
    `.dlq` topic held them (the original producer's signature among them)."""
    key = record.kafka_key.encode() if record.kafka_key is not None else None
    headers = [(k, v.encode()) for k, v in record.headers.items()]
    return Letter.of(record.dlq_topic, record.kafka_partition, record.kafka_offset, key, record.body, headers)


async def letters_on_record(dlq_topics: Sequence[str]) -> list[Letter]:
    """`ragbus dlq --from-record` (the `ragbus.letters` entry point): the dead letters of these `.dlq`
    topics on the monitor's record (MONITOR_DATABASE_URL, MONITOR_DB_SCHEMA), by topic, oldest first."""
    async with _record(cli_settings()) as store:
        return [letter_of(r) for topic in dlq_topics for r in await store.dead_letters(topic)]


async def redrive_after_broker_loss(database_url: str, schema: str, kafka: KafkaSettings) -> str:
    """For `ragbus up` when it started the local broker afresh: everything submitted in the last 24 h
    that has no outcome on record was on the lost log; publish it again and say what."""
    settings = MonitorSettings(database_url=database_url, db_schema=schema, migrate_on_startup=True)
    t = Topics(kafka.topic_prefix)
    async with _record(settings) as store:
        found = await run_journal(store, kafka, window=DEFAULT_WINDOW, limit=DEFAULT_LIMIT, publish=True)
        # The dead letters went with the log: they stay readable from the record.
        letters = sum([len(await store.dead_letters(t.dlq(base))) for base in topics.ALL])
    said = summary(found, "re-drove")
    if letters:
        said += f"; {letters} dead letter{'s' if letters != 1 else ''} on record: `ragbus dlq --from-record`"
    return said


def _run(window: timedelta, limit: int, publish: bool) -> Redriven:
    async def run() -> Redriven:
        async with _record(cli_settings()) as store:
            return await run_journal(store, KafkaSettings(), window=window, limit=limit, publish=publish)

    try:
        return asyncio.run(run())
    except DependencyUnavailable as exc:
        raise click.ClickException(f"the monitor's record cannot be read ({exc})") from None


since_option = click.option(
    "--since",
    "window",
    default="24h",
    show_default=True,
    callback=lambda _ctx, _param, value: parse_window(value),
    help="How far back to look (30m, 24h, 7d).",
)
limit_option = click.option("--limit", default=DEFAULT_LIMIT, show_default=True, type=click.IntRange(min=1))


@click.group("journal", invoke_without_command=True)
@since_option
@limit_option
@click.pass_context
def journal(ctx: click.Context, window: timedelta, limit: int) -> None:
    """Submissions on the monitor's record with no outcome yet (`journal redrive` publishes them again)."""
    if ctx.invoked_subcommand is not None:
        return
    found = _run(window, limit, publish=False)
    for record in found.published:
        click.echo(_line(record))
    click.echo(summary(found, "found"))


@journal.command("redrive")
@since_option
@limit_option
@click.option("--dry-run", is_flag=True, help="Only list what would be published.")
def journal_redrive(window: timedelta, limit: int, dry_run: bool) -> None:
    """Publish again every submission with no outcome on record (after a broker lost its log)."""
    found = _run(window, limit, publish=not dry_run)
    for record in found.published:
        click.echo(_line(record))
    click.echo(summary(found, "would re-drive" if dry_run else "re-drove"))


# --- export ---------------------------------------------------------------------------------------------


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="The dataset's shape.")
@click.option(
    "--since",
    "window",
    default="30d",
    show_default=True,
    callback=lambda _ctx, _param, value: parse_window(value),
    help="Requests submitted since (30m, 24h, 7d).",
)
@click.option("--tenant", help="Only this tenant's requests (default: every tenant's).")
@click.option(
    "--min-rating",
    type=click.Choice(["up", "corrected"]),
    default="up",
    show_default=True,
    help="up: thumbs up or a correction; corrected: only answers a user corrected.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="JSONL file (default: stdout).")
def export(
    fmt: Format, window: timedelta, tenant: str | None, min_rating: MinRating, out: Path | None
) -> None:
    """Well-rated answers on the monitor's record as a JSONL dataset: `openai-chat` to fine-tune a model,
    `eval` to feed `ragbus eval answers`. Only answered requests rated up or corrected (a correction
    replaces the answer); erased data and downvoted answers without a correction are left out."""
    since = datetime.now(UTC) - window

    async def run() -> tuple[Selection, list[str]]:
        async with _record(cli_settings()) as store:
            return await export_dataset(store, since, tenant, min_rating, fmt)

    try:
        selection, lines = asyncio.run(run())
    except DependencyUnavailable as exc:
        raise click.ClickException(f"the monitor's record cannot be read ({exc})") from None
    body = "".join(line + "\n" for line in lines)
    if out is None:
        sys.stdout.write(body)
    else:
        out.write_text(body, encoding="utf-8")
    click.echo(export_summary(selection, str(out) if out else "stdout"), err=True)
