"""`ragbus audit list` and `ragbus audit show`: the requests on the monitor's record, read-only.
Added to the `audit` group at the end of `audit_cli.py`.

    ragbus audit list [--tenant T] [--user U] [--since 7d] [--until 1d] [--status S] [--model M]
    ragbus audit show REQUEST_ID [--tenant T] [--json]      one request's story, in order
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import click

from ragbus.monitor.commands import moment, read_record, table, usd
from ragbus.monitor.ports import EventStore, RequestQuery, RequestSummary
from ragbus.monitor.reports import story, trace_link, verdict_text

DEFAULT_LIMIT = 50


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def _cut(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def list_table(rows: Sequence[RequestSummary]) -> str:
    """The compact table of `ragbus audit list`; the question as redacted when the guard redacted it."""
    headers = [
        "submitted (UTC)",
        "tenant",
        "request",
        "user",
        "status",
        "tier",
        "model",
        "tokens",
        "cost",
        "ms",
        "question",
    ]
    cells = [
        [
            f"{r.submitted_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            r.tenant,
            r.query_id or r.correlation_id,
            r.user_id or "-",
            r.status,
            "-" if r.tier is None else str(r.tier),
            r.model or ("cache" if r.cached_from else "-"),
            str(r.prompt_tokens + r.completion_tokens),
            usd(r.cost_usd),
            "-" if r.latency_ms is None else f"{r.latency_ms:.0f}",
            _cut(r.question_redacted if r.question_redacted is not None else r.question, 48),
        ]
        for r in rows
    ]
    return table(headers, cells, right=frozenset({5, 7, 8, 9}))


@click.command("list")
@click.option("--tenant", help="Only this tenant's requests.")
@click.option("--user", "user_id", help="Only this user's requests (the question's user_id).")
@click.option("--since", callback=moment, help="Submitted at or after: a span back (7d, 24h) or a date.")
@click.option("--until", callback=moment, help="Submitted before: a span back (1d) or a date.")
@click.option("--status", type=click.Choice(["answered", "blocked", "failed", "pending"]))
@click.option("--model", help="Answered by this model (`extractive` or the chat model's name).")
@click.option("--limit", default=DEFAULT_LIMIT, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per request and line.")
def list_requests(
    tenant: str | None,
    user_id: str | None,
    since: datetime | None,
    until: datetime | None,
    status: str | None,
    model: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The requests on record, newest first: who asked, what became of it, which model, what it cost."""
    query = RequestQuery(
        tenant=tenant,
        user_id=user_id,
        since=since,
        until=until,
        status=status,
        model=model,
        limit=limit,
        sources=as_json,
    )
    rows = read_record(lambda store: store.find_requests(query))
    if as_json:
        for r in rows:
            click.echo(_json(asdict(r)))
        return
    if not rows:
        click.echo("no requests on record match")
        return
    click.echo(list_table(rows))
    more = " (--limit for more)" if len(rows) == limit else ""
    click.echo(f"{len(rows)} request{'s' if len(rows) != 1 else ''}{more}")


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    ms = float(value)
    return f"{ms:.0f} ms" if ms >= 10 or ms == 0 else f"{ms:.1f} ms"


def render_story(told: Mapping[str, Any]) -> str:
    """The text of `ragbus audit show`, from `reports.story`."""
    r = told["request"]
    out = [
        f"request {r['query_id'] or r['correlation_id']}  tenant {r['tenant']}  correlation "
        f"{r['correlation_id']}  user {r['user_id'] or '-'}",
        f"submitted {r['submitted_at']}",
        f"trace {r['trace_id'] or '-'}"
        + (
            f"  {r['trace_url']}"
            if r["trace_url"]
            else f"  (`ragbus trace {r['trace_id']}`)"
            if r["trace_id"]
            else ""
        ),
    ]
    status = f"{r['status']}" + (f" ({r['status_reason']})" if r["status_reason"] else "")
    if r["tier"] is not None:
        status += f" at tier {r['tier']}"
        what = [
            x for x in (r["model"], f"prompt {r['prompt_version']}" if r["prompt_version"] else None) if x
        ]
        if r["cached_from"]:
            what.append(f"from the cache of {r['cached_from']}")
        status += f" ({', '.join(what)})" if what else ""
    if r["latency_ms"] is not None:
        status += f" in {_ms(r['latency_ms'])}"
    status += f"; {r['prompt_tokens']}+{r['completion_tokens']} tokens, {usd(r['cost_usd'])}"
    out.append(f"status {status}")
    # None after `ragbus audit erase`: the text is gone, its digest is what the chain keeps.
    asked = r["question"] if r["question"] is not None else "(erased)"
    out += ["", "question", f"  {asked}"]
    if r["question_redacted"] is not None and r["question_redacted"] != r["question"]:
        out += ["  as passed on (redacted):", f"  {r['question_redacted']}"]

    out += ["", "events"]
    deltas = [e for e in told["events"] if e["type"].startswith("io.ragbus.answers.delta.")]
    for e in told["events"]:
        if e in deltas:
            continue  # a streamed answer's pieces: counted below, not one line each
        kind = e["type"].removeprefix("io.ragbus.").rsplit(".", 1)[0]
        out.append(f"  {'+' + _ms(e['offset_ms']):>11}  {kind:<20} {e['source']:<22} {e['detail']}".rstrip())
    if deltas:
        first, last = _ms(deltas[0]["offset_ms"]), _ms(deltas[-1]["offset_ms"])
        out.append(f"  ({len(deltas)} streamed pieces, +{first} to +{last})")

    if told["stages"]:
        out += ["", "stages"]
        out += [
            f"  {s['stage']:<14} {s['service']:<14} {'+' + _ms(s['offset_ms']):>10}  {_ms(s['ms']):>10}"
            for s in told["stages"]
        ]
    if told["input_verdicts"] or told["output_verdicts"]:
        out += ["", "verdicts"]
        for side in ("input", "output"):
            if told[f"{side}_verdicts"]:
                out.append(f"  {side:<7}" + ", ".join(verdict_text(v) for v in told[f"{side}_verdicts"]))
    if told["tiers"]:
        out += ["", "tiers tried"]
        for a in told["tiers"]:
            verdict = (
                "accepted" if a.get("accepted") else "escalated" if a is not told["tiers"][-1] else "refused"
            )
            line = (
                f"  {a.get('tier')} {a.get('name', '?'):<16} {verdict:<9} {_ms(a.get('latency_ms')):>9}  "
                f"{a.get('prompt_tokens', 0)}+{a.get('completion_tokens', 0)} tokens  "
                f"{usd(a.get('cost_usd') or 0)}"
            )
            if a.get("prompt"):
                line += f"  prompt {a['prompt']}"
            line += f"  {a.get('reason', '')}"
            if a.get("error"):
                line += f" [error: {a['error']}]"
            out.append(line.rstrip())
    if told["sources"]:
        out += ["", "sources"]
        for x in told["sources"]:
            cited = f"[{x['cited']}]" if x["cited"] is not None else "   "
            score = f"{x['score']:.2f}" if isinstance(x.get("score"), int | float) else "-"
            version = x["version"] or "version unknown"
            out.append(
                f"  {x['rank']:>2}. {cited} {x['doc_id']} @ {version}  score {score}"
                + (f'  "{x["title"]}"' if x.get("title") else "")
            )
    none = "(erased)" if r["question"] is None and r["status"] != "pending" else "(none yet)"
    out += ["", "answer", f"  {r['answer']}" if r["answer"] is not None else f"  {none}"]
    if told["feedback"]:
        out += ["", "feedback"]
        for f in told["feedback"]:
            comment = f' "{f["comment"]}"' if f["comment"] else ""
            out.append(f"  +{_ms(f['offset_ms'])}  {f['rating']}{comment}  (user {f['user_id'] or '-'})")
    return "\n".join(out)


@click.command("show")
@click.argument("request_id")
@click.option("--tenant", help="The request's tenant, when the id is on record for several.")
@click.option("--json", "as_json", is_flag=True, help="The story as one JSON object.")
def show(request_id: str, tenant: str | None, as_json: bool) -> None:
    """One request's story, in order: every event with its time offset, stage timings, guard verdicts,
    the tiers tried with their cost, the sources with their document versions, the answer, feedback and
    the trace. REQUEST_ID is the query id or the correlation id."""

    async def find(store: EventStore) -> tuple[list[RequestSummary], list[Any]]:
        found = await store.find_requests(
            RequestQuery(tenant=tenant, request_id=request_id, limit=20, sources=True)
        )
        if len(found) != 1:
            return found, []
        return found, await store.events(found[0].tenant, found[0].correlation_id)

    found, events = read_record(find)
    if not found:
        where = f" for tenant {tenant}" if tenant else ""
        raise click.ClickException(f"no request {request_id!r} on record{where}")
    if len(found) > 1:
        names = ", ".join(f"{s.correlation_id} of {s.tenant}" for s in found)
        hint = (
            "its correlation id" if len({s.tenant for s in found}) == 1 else "--tenant, or its correlation id"
        )
        raise click.ClickException(f"{request_id!r} names several requests ({names}): say which with {hint}")
    told = story(found[0], events, trace_link(found[0].trace_id, os.environ))
    click.echo(_json(told) if as_json else render_story(told))
