"""What the record tells an operator about requests: pure functions over `request_summary` rows and
events, no database (the commands in `audit_views.py` and `report_cli.py` print them).

- `report`: cost, tokens, latency p50/p95, block and escalation rates per tenant and per tier.
- `story`: one request in order, as `ragbus audit show` tells it (text and JSON from one structure).
- `trace_link`: the Jaeger page of a trace, when the settings say where Jaeger is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ragbus.monitor.ports import EventRecord, RequestSummary

FINISHED = frozenset({"answered", "blocked", "failed"})
TOTAL = "all"
# Jaeger all-in-one's OTLP ports, and the port of its UI (the docker-compose stack publishes it as
# RAGBUS_JAEGER_UI_PORT).
JAEGER_OTLP_PORTS = frozenset({4317, 4318})
JAEGER_UI_PORT = 16686


def percentile(values: Iterable[float], q: float) -> float | None:
    """The `q` quantile (0..1) with linear interpolation between the closest ranks: what PostgreSQL's
    `percentile_cont` gives. None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True)
class Figures:
    """One line of a report.

    Per tenant: `count` requests; tokens and cost of all their attempts; latency from submission to
    final answer; `block_rate` blocked / finished (answered, blocked or failed); `escalation_rate` the
    requests that went past their first tier / the requests that tried one.
    Per tier (a tier and its model): `count` attempts; their tokens, cost and latency; `block_rate` of the
    finished requests this tier answered; `escalation_rate` the attempts the cascade went past / attempts.
    """

    group: str
    count: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    p50_ms: float | None
    p95_ms: float | None
    block_rate: float | None
    escalation_rate: float | None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Report:
    tenants: list[Figures]  # by tenant name, then the total (`all`) when there is more than one tenant
    tiers: list[Figures]  # by tier, then model name

    def as_json(self) -> dict[str, Any]:
        return {"tenants": [asdict(f) for f in self.tenants], "tiers": [asdict(f) for f in self.tiers]}


def _requests(group: str, rows: Sequence[RequestSummary]) -> Figures:
    latencies = [r.latency_ms for r in rows if r.latency_ms is not None]
    finished = [r for r in rows if r.status in FINISHED]
    tried = [r for r in rows if r.attempts]
    return Figures(
        group=group,
        count=len(rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cost_usd=sum(r.cost_usd for r in rows),
        p50_ms=percentile(latencies, 0.5),
        p95_ms=percentile(latencies, 0.95),
        block_rate=_rate(sum(r.status == "blocked" for r in finished), len(finished)),
        escalation_rate=_rate(sum(len(r.attempts) > 1 for r in tried), len(tried)),
    )


def _tier_key(attempt: Mapping[str, Any]) -> tuple[int, str]:
    return int(attempt.get("tier") or 0), str(attempt.get("name") or "?")


def report(rows: Iterable[RequestSummary]) -> Report:
    """The figures of these requests per tenant and per tier (see `Figures`)."""
    rows = list(rows)
    by_tenant: dict[str, list[RequestSummary]] = {}
    for r in rows:
        by_tenant.setdefault(r.tenant, []).append(r)
    tenants = [_requests(t, by_tenant[t]) for t in sorted(by_tenant)]
    if len(tenants) > 1:
        tenants.append(_requests(TOTAL, rows))

    # Every attempt, with whether the cascade went on past it; and the finished requests by the tier
    # (and model) that gave their answer.
    attempts: dict[tuple[int, str], list[tuple[Mapping[str, Any], bool]]] = {}
    answered: dict[tuple[int, str], list[RequestSummary]] = {}
    for r in rows:
        tried = [a for a in r.attempts if isinstance(a, Mapping)]
        for i, a in enumerate(tried):
            attempts.setdefault(_tier_key(a), []).append((a, i < len(tried) - 1))
        if r.tier is not None and r.model is not None and r.status in FINISHED:
            answered.setdefault((r.tier, r.model), []).append(r)
    tiers = []
    for key in sorted(attempts):
        made = attempts[key]
        by_tier = answered.get(key, [])
        latencies = [float(a["latency_ms"]) for a, _ in made if a.get("latency_ms") is not None]
        tiers.append(
            Figures(
                group=f"{key[0]} {key[1]}",
                count=len(made),
                prompt_tokens=sum(int(a.get("prompt_tokens") or 0) for a, _ in made),
                completion_tokens=sum(int(a.get("completion_tokens") or 0) for a, _ in made),
                cost_usd=sum(float(a.get("cost_usd") or 0.0) for a, _ in made),
                p50_ms=percentile(latencies, 0.5),
                p95_ms=percentile(latencies, 0.95),
                block_rate=_rate(sum(r.status == "blocked" for r in by_tier), len(by_tier)),
                escalation_rate=_rate(sum(escalated for _, escalated in made), len(made)),
            )
        )
    return Report(tenants=tenants, tiers=tiers)


# --- a request's story -------------------------------------------------------------------------------


def trace_link(trace_id: str | None, env: Mapping[str, str]) -> str | None:
    """The Jaeger page of a trace: under `RAGBUS_JAEGER_URL` when set, else on the host that spans are
    exported to when that is Jaeger's OTLP port (4317/4318; the UI on RAGBUS_JAEGER_UI_PORT, 16686 by
    default). None when traces go elsewhere or to the local span file (`ragbus trace ID` draws those)."""
    if not trace_id:
        return None
    if base := env.get("RAGBUS_JAEGER_URL", "").strip():
        return f"{base.rstrip('/')}/trace/{trace_id}"
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("RAGBUS_TELEMETRY_OTLP_ENDPOINT") or ""
    try:
        parts = urlsplit(endpoint.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port not in JAEGER_OTLP_PORTS:
        return None
    ui_port = env.get("RAGBUS_JAEGER_UI_PORT", "").strip() or str(JAEGER_UI_PORT)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"http://{host}:{ui_port}/trace/{trace_id}"


def _offset_ms(at: datetime, start: datetime) -> float:
    return round((at - start).total_seconds() * 1000, 3)


def verdict_text(verdict: Mapping[str, Any]) -> str:
    """`injection pass 0.02`, `pii FAIL (EMAIL)`."""
    text = f"{verdict.get('check')} {'pass' if verdict.get('passed') else 'FAIL'}"
    if verdict.get("score") is not None:
        text += f" {float(verdict['score']):.2f}"
    if verdict.get("reason"):
        text += f" ({verdict['reason']})"
    return text


def _detail(e: EventRecord) -> str:
    """What one event says, in a line."""
    d = e.data
    kind = e.type.removeprefix("io.ragbus.").rsplit(".", 1)[0]
    verdicts = ", ".join(verdict_text(v) for v in d.get("verdicts") or [] if isinstance(v, Mapping))
    if kind == "queries.submitted":
        return f"user {d.get('user_id') or '-'}"
    if kind in ("queries.accepted", "queries.escalated"):
        return f"accepted: {verdicts}" if verdicts else "accepted"
    if kind == "queries.rejected":
        return f"rejected: {d.get('reason')}" + (f"; {verdicts}" if verdicts else "")
    if kind == "answers.drafted":
        cascade = d.get("cascade") or {}
        return (
            f"tier {cascade.get('tier')}, {len(d.get('retrieved') or [])} retrieved, "
            f"{len(d.get('citations') or [])} cited"
        )
    if kind == "answers.delta":
        return f"piece {d.get('seq')} (tier {d.get('tier')})" + (" reset" if d.get("reset") else "")
    if kind == "answers.completed":
        said = str(d.get("status"))
        if d.get("reason"):
            said += f": {d['reason']}"
        return said + (f"; {verdicts}" if verdicts else "")
    if kind == "feedback.submitted":
        return str(d.get("rating")) + (f' "{d["comment"]}"' if d.get("comment") else "")
    if kind == "feedback.recorded":
        return "question on record" if d.get("known") else "no such question on record"
    return ""


def story(summary: RequestSummary, events: Sequence[EventRecord], link: str | None = None) -> dict[str, Any]:
    """One request as `ragbus audit show` tells it: the summary, then every event with its offset from
    the submission, the stage timings, the tiers tried, the sources with their versions, the feedback.
    JSON-ready (times as ISO 8601, offsets in milliseconds)."""
    start = summary.submitted_at
    stages = []
    for s in summary.stages:
        try:
            began, ended = datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"])
        except (KeyError, TypeError, ValueError):
            continue
        stages.append(
            {
                "stage": s.get("stage"),
                "service": s.get("service"),
                "offset_ms": _offset_ms(began, start),
                "ms": _offset_ms(ended, began),
            }
        )
    request = {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in asdict(summary).items()
        if k not in ("stages", "attempts", "sources", "verdicts", "input_verdicts")
    }
    return {
        "request": request | {"trace_url": link},
        "events": [
            {
                "offset_ms": _offset_ms(e.event_time, start),
                "time": e.event_time.isoformat(),
                "type": e.type,
                "source": e.source,
                "event_id": str(e.event_id),
                "trace_id": e.trace_id,
                "detail": _detail(e),
            }
            for e in events
        ],
        "stages": stages,
        "input_verdicts": summary.input_verdicts,
        "output_verdicts": summary.verdicts,
        "tiers": summary.attempts,
        "sources": summary.sources,
        "feedback": [
            {
                "offset_ms": _offset_ms(e.event_time, start),
                "rating": e.data.get("rating"),
                "comment": e.data.get("comment"),
                "user_id": e.data.get("user_id"),
            }
            for e in events
            if e.type.startswith("io.ragbus.feedback.submitted.")
        ],
    }
