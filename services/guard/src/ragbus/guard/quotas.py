"""Per-tenant request rates: a token bucket per tenant, as the tenant's policy sets it (`rate`).

    GUARD_POLICIES='{"acme": {"rate": {"per_minute": 60, "burst": 10}}}'

A tenant may ask `burst` questions at once and `per_minute` a minute after that; a question over its rate
is rejected with when to try again, before any classifier runs. Pure: the clock is handed in.

The buckets live in each guard instance. With N instances in the consumer group, a tenant whose
questions spread over their partitions gets up to N times its rate. A decision is remembered by event
id, so a question delivered again gets the same decision and does not take a second token.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ragbus.guard.policy import Policies, RateLimit


@dataclass
class RateLimiter:
    remember: int = 10_000  # decisions kept for redeliveries
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tenant -> (tokens, at)
    _decided: OrderedDict[str, float | None] = field(default_factory=OrderedDict)

    def take(self, key: str, tenant: str, limit: RateLimit, now: float) -> float | None:
        """None if the request identified by `key` may go on (a token taken), else the seconds until
        the tenant's next token."""
        if key in self._decided:
            return self._decided[key]
        tokens, at = self._buckets.get(tenant, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + max(now - at, 0.0) * limit.per_minute / 60.0)
        wait: float | None = None
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) * 60.0 / limit.per_minute
        self._buckets[tenant] = (tokens, now)
        self._decided[key] = wait
        while len(self._decided) > self.remember:
            self._decided.popitem(last=False)
        return wait


@dataclass
class Quotas:
    policies: Policies
    limiter: RateLimiter = field(default_factory=RateLimiter)
    clock: Callable[[], float] = time.monotonic

    def over(self, key: str, tenant: str) -> tuple[RateLimit, float] | None:
        """The tenant's rate and the seconds to wait, if this request is over it; None otherwise."""
        limit = self.policies.for_tenant(tenant).rate
        if limit is None:
            return None
        wait = self.limiter.take(key, tenant, limit, self.clock())
        return None if wait is None else (limit, wait)
