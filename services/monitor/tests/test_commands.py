"""What the monitor's commands share: moments for --since/--until, and plain tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import click
import pytest

from ragbus.monitor.commands import parse_moment, table, usd


def test_a_moment_is_a_span_back_or_a_date_in_utc_unless_it_says() -> None:
    before = datetime.now(UTC)
    assert before - timedelta(days=7, seconds=1) < parse_moment("7d") <= datetime.now(UTC) - timedelta(days=7)
    assert parse_moment("2026-05-04") == datetime(2026, 5, 4, tzinfo=UTC)
    assert parse_moment("2026-05-04T09:30") == datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    cet = timezone(timedelta(hours=1))
    assert parse_moment("2026-05-04T09:30+01:00") == datetime(2026, 5, 4, 9, 30, tzinfo=cet)
    with pytest.raises(click.BadParameter, match="neither a time span like 7d nor a date"):
        parse_moment("last week")


def test_a_table_pads_its_columns_and_aligns_numbers_right() -> None:
    assert table(["name", "n"], [["a", "1"], ["long", "100"]], right=frozenset({1})) == (
        "name    n\na       1\nlong  100"
    )
    assert (usd(0), usd(0.00041), usd(1.5)) == ("$0", "$0.00041", "$1.5")
