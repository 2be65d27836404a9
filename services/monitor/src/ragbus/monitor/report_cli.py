"""`ragbus report`: what the requests cost and how they went, per tenant and per tier, from the monitor's
record (`ragbus.cli` entry point).

    ragbus report [--since 7d] [--until 1d] [--tenant T] [--charts DIR] [--json]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from matplotlib.figure import Figure

from ragbus.monitor.commands import moment, read_record, table, usd
from ragbus.monitor.ports import RequestQuery
from ragbus.monitor.reports import TOTAL, Figures, Report, report

DEFAULT_SINCE = timedelta(days=7)
CHARTS = ("cost_by_tenant.png", "tokens_by_tenant.png", "latency_by_tier.png", "rates.png")


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _num(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.0f}"


def figures_table(title: str, counted: str, rows: Sequence[Figures]) -> str:
    headers = [title, counted, "tokens", "cost", "p50 ms", "p95 ms", "blocked", "escalated"]
    cells = [
        [
            f.group,
            str(f.count),
            str(f.tokens),
            usd(f.cost_usd),
            _num(f.p50_ms),
            _num(f.p95_ms),
            _pct(f.block_rate),
            _pct(f.escalation_rate),
        ]
        for f in rows
    ]
    return table(headers, cells, right=frozenset(range(1, 8)))


def render_report(r: Report, since: datetime, until: datetime | None) -> str:
    end = f"{until.astimezone(UTC):%Y-%m-%d %H:%M}" if until else "now"
    head = f"requests submitted from {since.astimezone(UTC):%Y-%m-%d %H:%M} to {end} (UTC)"
    if not r.tenants:
        return f"{head}: none on record"
    return "\n\n".join(
        [
            head,
            figures_table("tenant", "requests", r.tenants),
            figures_table("tier model", "attempts", r.tiers) if r.tiers else "no tier was tried",
        ]
    )


def _bars(fig: Figure, title: str, labels: list[str], series: dict[str, list[float]], unit: str) -> None:
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(labels))], values, width, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels)
    ax.set_title(title)
    ax.set_ylabel(unit)
    if len(series) > 1:
        ax.legend()


def write_charts(r: Report, directory: Path) -> list[Path]:
    """PNG charts of a report (matplotlib's Agg renderer through Figure: no display, no global state)."""
    directory.mkdir(parents=True, exist_ok=True)
    tenants = [f for f in r.tenants if f.group != TOTAL]
    names = [f.group for f in tenants]
    charts: dict[str, tuple[str, list[str], dict[str, list[float]], str]] = {
        "cost_by_tenant.png": ("Cost per tenant", names, {"cost": [f.cost_usd for f in tenants]}, "USD"),
        "tokens_by_tenant.png": (
            "Tokens per tenant",
            names,
            {
                "prompt": [f.prompt_tokens for f in tenants],
                "completion": [f.completion_tokens for f in tenants],
            },
            "tokens",
        ),
        "latency_by_tier.png": (
            "Latency per tier (attempts)",
            [f.group for f in r.tiers],
            {"p50": [f.p50_ms or 0 for f in r.tiers], "p95": [f.p95_ms or 0 for f in r.tiers]},
            "ms",
        ),
    }
    written = []
    for name, (title, labels, series, unit) in charts.items():
        fig = Figure(figsize=(max(4, 1.2 * len(labels) + 2), 3.5), layout="constrained")
        _bars(fig, title, labels, series, unit)
        fig.savefig(directory / name, format="png", dpi=100)
        written.append(directory / name)
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    for i, (title, rows) in enumerate((("per tenant", tenants), ("per tier", r.tiers)), start=1):
        ax = fig.add_subplot(1, 2, i)
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [100 * (f.block_rate or 0) for f in rows], 0.4, label="blocked")
        ax.bar([x + 0.2 for x in xs], [100 * (f.escalation_rate or 0) for f in rows], 0.4, label="escalated")
        ax.set_xticks(list(xs), [f.group for f in rows])
        ax.set_title(f"Block and escalation rates {title}")
        ax.set_ylabel("%")
        ax.set_ylim(0, 125)  # room for the legend above 100%
        ax.legend(loc="upper center", ncols=2)
    fig.savefig(directory / "rates.png", format="png", dpi=100)
    written.append(directory / "rates.png")
    return written


@click.command("report")
@click.option("--since", callback=moment, help="Submitted at or after: a span back or a date.  [default: 7d]")
@click.option("--until", callback=moment, help="Submitted before: a span back or a date.  [default: now]")
@click.option("--tenant", help="Only this tenant.")
@click.option(
    "--charts",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Also write PNG charts here ({', '.join(CHARTS)}).",
)
@click.option("--json", "as_json", is_flag=True, help="The figures as one JSON object.")
def report_command(
    since: datetime | None, until: datetime | None, tenant: str | None, charts: Path | None, as_json: bool
) -> None:
    """Cost, tokens, latency p50/p95, block and escalation rates per tenant and per tier.

    Per tenant: requests, latency from question to final answer, blocked among finished requests,
    escalated = requests that went past their first tier. Per tier (tier and model): attempts, their own
    latency and cost, blocked among the requests it answered, escalated = attempts the cascade went past.
    """
    since = since or datetime.now(UTC) - DEFAULT_SINCE
    query = RequestQuery(tenant=tenant, since=since, until=until)
    figures = report(read_record(lambda store: store.find_requests(query)))
    if as_json:
        click.echo(json.dumps(figures.as_json()))
    else:
        click.echo(render_report(figures, since, until))
    if charts is not None:
        written = write_charts(figures, charts)
        click.echo(f"\ncharts in {charts}: {', '.join(p.name for p in written)}", err=as_json)
