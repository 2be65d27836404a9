"""Per-tenant request rates: token buckets, decisions remembered for redeliveries, policies that set them."""

from __future__ import annotations

import pytest

from ragbus.common.quotas import TokenBuckets
from ragbus.guard.policy import Policies, RateLimit
from ragbus.guard.quotas import Quotas, RateLimiter

LIMIT = RateLimit(per_minute=6, burst=2)  # a token every 10 s


def test_a_burst_then_one_token_every_interval() -> None:
    limiter = RateLimiter()
    assert limiter.take("e1", "acme", LIMIT, now=0.0) is None
    assert limiter.take("e2", "acme", LIMIT, now=0.0) is None
    assert limiter.take("e3", "acme", LIMIT, now=0.0) == pytest.approx(10.0)
    assert limiter.take("e4", "acme", LIMIT, now=4.0) == pytest.approx(6.0)  # refused ones take nothing
    assert limiter.take("e5", "acme", LIMIT, now=10.0) is None
    assert limiter.take("e6", "acme", LIMIT, now=100.0) is None  # refilled, up to the burst only
    assert limiter.take("e7", "acme", LIMIT, now=100.0) is None
    assert limiter.take("e8", "acme", LIMIT, now=100.0) is not None


def test_tenants_have_buckets_of_their_own() -> None:
    limiter = RateLimiter()
    for i in range(2):
        limiter.take(f"a{i}", "acme", LIMIT, now=0.0)
    assert limiter.take("a9", "acme", LIMIT, now=0.0) is not None
    assert limiter.take("b1", "beta", LIMIT, now=0.0) is None


def test_a_redelivered_request_gets_the_same_decision_and_takes_no_token() -> None:
    limiter = RateLimiter(TokenBuckets(remember=3))
    assert limiter.take("e1", "acme", LIMIT, now=0.0) is None
    assert limiter.take("e1", "acme", LIMIT, now=0.0) is None  # the same event again
    assert limiter.take("e2", "acme", LIMIT, now=0.0) is None  # the second token is still there
    refused = limiter.take("e3", "acme", LIMIT, now=0.0)
    assert limiter.take("e3", "acme", LIMIT, now=50.0) == refused  # refused it stays
    for i in range(5):  # only the last `remember` decisions are kept
        limiter.take(f"x{i}", "other", LIMIT, now=0.0)
    assert "e1" not in limiter.buckets._decided


def test_rates_come_from_the_tenants_policies() -> None:
    policies = Policies.parse({"acme": {"rate": {"per_minute": 6, "burst": 1}}})
    assert policies.for_tenant("acme").rate == RateLimit(per_minute=6, burst=1)
    assert policies.default.rate is None  # no limit unless a policy sets one
    clock = iter([0.0, 0.0, 0.0]).__next__
    quotas = Quotas(policies, clock=clock)
    assert quotas.over("e1", "acme") is None
    over = quotas.over("e2", "acme")
    assert over is not None
    assert over[0] == RateLimit(per_minute=6, burst=1)
    assert over[1] == pytest.approx(10.0)
    assert quotas.over("e3", "anyone") is None
    with pytest.raises(ValueError, match="per_minute"):
        Policies.parse({"acme": {"rate": {"per_minute": 0}}})
