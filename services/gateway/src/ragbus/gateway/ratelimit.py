"""Per-key rate limits: a token bucket per API key, in this process.

Each key may make `rate` requests per second on average and `burst` at once. The buckets live in the
gateway's memory, which is right for one replica; several replicas behind a balancer each allow the
full rate (a shared limit needs a shared store, e.g. PostgreSQL or Redis, not built). Idle buckets are
dropped once full again, so memory follows the keys in use, not every key ever seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    def take(self, key: str, rate: float, burst: float) -> float:
        """Take one token from `key`'s bucket: 0.0 if allowed, else the seconds until one is there."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._sweep(now, rate, burst)
            bucket = self._buckets[key] = _Bucket(burst, now)
        else:
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate

    def _sweep(self, now: float, rate: float, burst: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * rate >= burst]
        for k in full:
            del self._buckets[k]
