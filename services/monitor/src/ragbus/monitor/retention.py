"""Retention: how long the record keeps what, by tenant and event type (MONITOR_RETENTION). Pure.

Rules map a scope to a duration: `*` (everyone), `acme` (a tenant), `*/answers.delta` (an event type
for everyone), `acme/answers.completed` (both). The most specific rule that matches wins, in that order
from least to most specific; a pair no rule matches is kept forever. A tenant's dead letters follow its
tenant rule (or `*`). Purging is `ragbus audit purge`; each deletion is an erasure record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hdwy])\s*$")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1), "y": timedelta(days=365)}
ANY = "*"


@dataclass(frozen=True, slots=True)
class Rule:
    tenant: str  # or ANY
    event_type: str | None  # the short name (`answers.completed`), or None for every type
    keep: timedelta


@dataclass(frozen=True, slots=True)
class Cutoff:
    """Delete the tenant's rows of `event_type` (its dead letters when None) from before `before`."""

    tenant: str
    event_type: str | None  # the full type, as stored
    before: datetime


def short_type(event_type: str) -> str:
    """`io.ragbus.answers.completed.v1` -> `answers.completed`."""
    return re.sub(r"\.v\d+$", "", event_type.removeprefix("io.ragbus."))


def parse(rules: Mapping[str, str]) -> list[Rule]:
    out = []
    for scope, span in rules.items():
        match = _SPAN.match(span)
        if match is None:
            raise ValueError(f"retention for {scope!r}: {span!r} is not a duration like 30d, 12w, 1y or 48h")
        tenant, _, event_type = scope.partition("/")
        if not tenant:
            raise ValueError(f"retention scope {scope!r}: name a tenant or `*` before the `/`")
        out.append(Rule(tenant, event_type or None, float(match.group(1)) * _UNIT[match.group(2)]))
    return out


def rule_for(rules: Iterable[Rule], tenant: str, event_type: str | None) -> Rule | None:
    """The most specific rule for a tenant and a short event type (None: the tenant's dead letters)."""

    def rank(rule: Rule) -> int:
        return (rule.tenant != ANY) * 2 + (rule.event_type is not None)

    matching = [
        r for r in rules if r.tenant in (ANY, tenant) and (r.event_type is None or r.event_type == event_type)
    ]
    return max(matching, key=rank, default=None)


def cutoffs(rules: Iterable[Rule], present: Iterable[tuple[str, str | None]], now: datetime) -> list[Cutoff]:
    """What to purge, given the (tenant, full event type) pairs on record (type None: dead letters)."""
    rules = list(rules)
    out = []
    for tenant, event_type in sorted(present, key=lambda p: (p[0], p[1] or "")):
        rule = rule_for(rules, tenant, short_type(event_type) if event_type else None)
        if rule is not None:
            out.append(Cutoff(tenant, event_type, now - rule.keep))
    return out
