"""`ragbus audit`: the compliance record. Plugged into the `ragbus` CLI (`ragbus.cli` entry points).

    ragbus audit verify [--tenant T]      check the hash chains, checkpoints and erasures; name what is wrong
    ragbus audit erase --tenant T [--user U]
    ragbus audit purge [--dry-run]        apply the retention policy (MONITOR_RETENTION)
    ragbus audit grant --writer ROLE      a database role that may insert and read, never update or delete

Each reads MONITOR_DATABASE_URL and MONITOR_DB_SCHEMA (the stack of this RAGBUS_HOME when unset), and
MONITOR_AUDIT_KEY for signatures (`ragbus up` keeps one in $RAGBUS_HOME/audit.key).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
import click

from ragbus.common.errors import DependencyUnavailable
from ragbus.monitor import retention, usecases
from ragbus.monitor.adapters.migrator import quote_ident
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.commands import cli_settings
from ragbus.monitor.settings import MonitorSettings

T = TypeVar("T")


def audit_key(settings: MonitorSettings) -> bytes | None:
    try:
        return settings.audit_signing_key
    except OSError as exc:
        raise click.ClickException(f"the audit key cannot be read: {exc}") from None


def _with_store(settings: MonitorSettings, work: Callable[[PostgresEventStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = await PostgresEventStore.open(settings)
        try:
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except DependencyUnavailable as exc:
        raise click.ClickException(f"the monitor's record cannot be read ({exc})") from None


@click.group("audit")
def audit() -> None:
    """The monitor's compliance record: verify it, erase from it, purge it, and its database roles."""


@audit.command("verify")
@click.option("--tenant", help="Only this tenant's chains (default: all).")
@click.option("--limit", default=50, show_default=True, help="Problems to list (all are counted).")
def verify(tenant: str | None, limit: int) -> None:
    """Check every link of the hash chains, the signed checkpoints and the erasures; exit 1 and name
    each edited, deleted, inserted or reordered row if anything does not add up."""
    settings = cli_settings()
    key = audit_key(settings)
    started = time.perf_counter()
    report = _with_store(settings, lambda store: store.verify(tenant, key))
    took = time.perf_counter() - started
    rate = f", {report.rows / took:,.0f} rows/s" if took > 0 and report.rows else ""
    click.echo(
        f"checked {report.rows:,} rows in {report.chains:,} chains, {report.checkpoints:,} checkpoints and "
        f"{report.erasures:,} erasures in {took:.2f} s{rate}"
    )
    if not report.signed:
        click.echo(
            "no MONITOR_AUDIT_KEY: signatures not checked (a chain recomputed from some row on goes unseen)"
        )
    elif report.unsealed:
        click.echo(
            f"{report.unsealed:,} rows written since their chain's last checkpoint rest on the chain alone"
        )
    if report.ok:
        click.echo("OK: nothing edited, deleted, inserted or reordered")
        return
    for problem in report.problems[:limit]:
        click.echo(f"  {problem}")
    if len(report.problems) > limit:
        click.echo(f"  ... and {len(report.problems) - limit} more")
    raise click.ClickException(f"{len(report.problems)} problem(s) in the audit record")


@audit.command("erase")
@click.option("--tenant", required=True, help="The tenant whose data is erased.")
@click.option(
    "--user", "user_id", help="Only this user's requests (every event of each); default: the whole tenant."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(tenant: str, user_id: str | None, yes: bool) -> None:
    """Erase personal data (questions, answers, texts, comments, titles, user ids; dead letters' bodies)
    from the record, keeping ids, statuses, tiers, tokens and costs. Each erased row keeps its place in
    the chain through a signed erasure record, so `verify` stays green. Running it twice is harmless."""
    who = f"user {user_id!r} of tenant {tenant!r}" if user_id else f"the whole tenant {tenant!r}"
    if not yes:
        click.confirm(f"Erase the personal data of {who} from the record? This cannot be undone", abort=True)
    settings = cli_settings()
    key = audit_key(settings)
    erased = _with_store(settings, lambda store: store.erase(tenant, user_id=user_id, key=key))
    events = sum(1 for e in erased if e.kind == "event")
    click.echo(f"erased {events} event(s) and {len(erased) - events} dead letter(s) of {who}")


@audit.command("purge")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
def purge(dry_run: bool) -> None:
    """Delete what the retention policy (MONITOR_RETENTION) no longer keeps; each deletion is recorded as
    an erasure, so `verify` stays green. The monitor runs it every MONITOR_PURGE_INTERVAL_S; run it
    yourself on a schedule (cron, a Kubernetes CronJob) where the monitor's role may not delete."""
    settings = cli_settings()
    key = audit_key(settings)
    try:
        rules = retention.parse(settings.retention)
    except ValueError as exc:
        raise click.ClickException(f"MONITOR_RETENTION: {exc}") from None
    if not rules:
        click.echo("no retention policy (MONITOR_RETENTION): everything is kept")
        return

    def work(store: PostgresEventStore) -> Awaitable[list[tuple[retention.Cutoff, int]]]:
        return usecases.apply_retention(store, rules, datetime.now(UTC), key=key, dry_run=dry_run)

    total = 0
    for cutoff, n in _with_store(settings, work):
        total += n
        if n:
            what = cutoff.event_type.removeprefix("io.ragbus.") if cutoff.event_type else "all events"
            click.echo(f"  {cutoff.tenant}: {what} before {cutoff.before:%Y-%m-%d %H:%M}: {n}")
    click.echo(f"{'would delete' if dry_run else 'deleted'} {total} row(s)")


@audit.command("grant")
@click.option("--writer", required=True, help="The role the monitor connects as (created if missing).")
@click.option("--password", envvar="RAGBUS_WRITER_PASSWORD", help="Its password, when it is created.")
def grant(writer: str, password: str | None) -> None:
    """Give a role what the monitor needs and nothing more: read and insert in the monitor's schema,
    never update, delete or truncate. Run the monitor as it with MONITOR_MIGRATE_ON_STARTUP=false (the
    migrations need the owner). Erasure and purge stay with the owner."""
    settings = cli_settings()

    async def run() -> None:
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            await grant_writer(conn, settings.db_schema, writer, password)
        finally:
            await conn.close()

    asyncio.run(run())
    click.echo(f"role {writer} may read and insert in schema {settings.db_schema}, never update or delete")


async def grant_writer(conn: asyncpg.Connection, schema: str, role: str, password: str | None = None) -> None:
    q, r = quote_ident(schema), quote_ident(role)
    async with conn.transaction():
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        if not exists:
            # CREATE ROLE takes no parameters; the password is a literal, quoted by the server.
            literal = await conn.fetchval("SELECT quote_literal($1)", password) if password else None
            await conn.execute(f"CREATE ROLE {r} LOGIN" + (f" PASSWORD {literal}" if literal else ""))
        await conn.execute(f"GRANT USAGE ON SCHEMA {q} TO {r}")
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {q} FROM {r}")
        await conn.execute(f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {q} TO {r}")
        await conn.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {q} TO {r}")


# The record read back (audit_views.py): `ragbus audit list`, `ragbus audit show REQUEST_ID`.
from ragbus.monitor.audit_views import list_requests, show  # noqa: E402 - the group exists first

audit.add_command(list_requests)
audit.add_command(show)
