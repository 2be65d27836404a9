"""What the monitor's commands share (`ragbus journal`, `ragbus audit`, `ragbus report`): the record of
this machine's stack, time spans and moments, and plain tables. No Kafka here."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import click

from ragbus.common.errors import DependencyUnavailable
from ragbus.common.settings import monitor_schema_for, ragbus_home
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.ports import EventStore
from ragbus.monitor.settings import MonitorSettings

T = TypeVar("T")
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


AUDIT_KEY_FILE = "audit.key"  # in RAGBUS_HOME: the stack's audit signing key (`ragbus up` makes it)


def cli_settings() -> MonitorSettings:
    """The monitor's settings for a command on this machine: MONITOR_* as set, and when the schema is
    not, that of the stack of this RAGBUS_HOME (`ragbus up` names it so; `ragbus` for ~/.ragbus)."""
    settings = MonitorSettings()
    update: dict[str, object] = {}
    if "MONITOR_DB_SCHEMA" not in os.environ:
        update["db_schema"] = monitor_schema_for(ragbus_home())
    if settings.audit_key is None and settings.audit_key_file is None:
        # The key `ragbus up` made for the stack of this RAGBUS_HOME, so `ragbus audit verify` checks
        # its signatures with no setup.
        home_key = ragbus_home() / AUDIT_KEY_FILE
        if home_key.exists():
            update["audit_key_file"] = home_key
    return settings.model_copy(update=update) if update else settings


def parse_window(text: str) -> timedelta:
    """`90m`, `24h`, `7d`, `30s`: how far back the journal looks."""
    match = _SPAN.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a time span like 30m, 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_moment(text: str) -> datetime:
    """A span back from now (`7d`, `90m`) or a date and time (`2026-05-04`, `2026-05-04T09:00`, UTC
    unless it says otherwise)."""
    try:
        return datetime.now(UTC) - parse_window(text)
    except click.BadParameter:
        pass
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a time span like 7d nor a date like 2026-05-04"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def moment(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """A click callback: `parse_moment` of an option given, else None."""
    return parse_moment(value) if value is not None else None


def read_record(work: Callable[[EventStore], Awaitable[T]]) -> T:
    """Run `work` against the monitor's record on this machine (cli_settings); a record that cannot be
    read is the CLI's one-line error."""

    async def run() -> T:
        store = await PostgresEventStore.open(cli_settings())
        try:
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except DependencyUnavailable as exc:
        raise click.ClickException(f"the monitor's record cannot be read ({exc})") from None


def usd(amount: float) -> str:
    return f"${amount:.6f}".rstrip("0").rstrip(".") if amount else "$0"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> str:
    """Columns as wide as their widest cell; those in `right` aligned right (numbers)."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])
