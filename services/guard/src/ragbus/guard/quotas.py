"""Per-tenant request rates: a token bucket per tenant, as the tenant's policy sets it (`rate`).

    GUARD_POLICIES='{"acme": {"rate": {"per_minute": 60, "burst": 10}}}'

A tenant may ask `burst` questions at once and `per_minute` a minute after that; a question over its rate
is rejected with when to try again, before any classifier runs. Pure: the clock is handed in.

The buckets live in each guard instance (ragbus.common.quotas): with N instances in the consumer group,
a tenant whose questions spread over their partitions gets up to N times its rate. A decision is
remembered by event id, so a question delivered again gets the same decision and takes no second token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ragbus.common.quotas import TokenBuckets
from ragbus.guard.policy import Policies, RateLimit


@dataclass
class RateLimiter:
    """Questions per tenant: a bucket of `burst` questions refilled at `per_minute` (ragbus.common.quotas)."""

    buckets: TokenBuckets = field(default_factory=TokenBuckets)

    def take(self, key: str, tenant: str, limit: RateLimit, now: float) -> float | None:
        """None if the request identified by `key` may go on (a token taken), else the seconds until
        the tenant's next token."""
        return self.buckets.take(
            key, tenant, per_s=limit.per_minute / 60.0, burst=float(limit.burst), now=now
        )


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
