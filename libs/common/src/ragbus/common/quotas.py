"""Token buckets per tenant: what the guard's request rates and ingest's byte quotas count with.

A tenant's bucket holds up to `burst` units and refills at `per_s` units a second; a request that
costs `amount` units goes on if the bucket holds them (they are taken), else it is told how long until
it would. Pure: the clock is handed in.

A decision is remembered by the request's key (its event id), so a redelivered request gets the same
decision and takes nothing a second time. The buckets live in each instance of a service: with N
instances in a consumer group, a tenant whose requests spread over their partitions gets up to N times
its allowance.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    remember: int = 10_000  # decisions kept for redeliveries
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tenant -> (units, at)
    _decided: OrderedDict[str, float | None] = field(default_factory=OrderedDict)

    def take(
        self, key: str, tenant: str, *, per_s: float, burst: float, now: float, amount: float = 1.0
    ) -> float | None:
        """None if the request `key` may go on (`amount` taken from the tenant's bucket), else the
        seconds until the bucket would hold `amount`. A request larger than `burst` can never fit and
        is told so with an infinite wait."""
        if key in self._decided:
            return self._decided[key]
        units, at = self._buckets.get(tenant, (burst, now))
        units = min(burst, units + max(now - at, 0.0) * per_s)
        wait: float | None = None
        if amount > burst:
            wait = float("inf")
        elif units >= amount:
            units -= amount
        else:
            wait = (amount - units) / per_s
        self._buckets[tenant] = (units, now)
        self._decided[key] = wait
        while len(self._decided) > self.remember:
            self._decided.popitem(last=False)
        return wait
