"""API keys (shape, hashing, the bearer header), the key cache and the token bucket, with fake clocks."""

from __future__ import annotations

import hashlib

import pytest

from ragbus.gateway.keys import bearer_token, hash_key, looks_like_key, new_key
from ragbus.gateway.ports import ApiKey
from ragbus.gateway.ratelimit import RateLimiter
from ragbus.gateway.usecases import KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_key_names_its_id_and_is_stored_as_its_sha256_only() -> None:
    new = new_key()
    assert new.key.startswith(f"rbk_{new.key_id}_")
    assert looks_like_key(new.key)
    assert new.key_hash == hashlib.sha256(new.key.encode()).hexdigest() == hash_key(new.key)
    assert new.key not in new.key_hash
    assert new_key().key != new.key


@pytest.mark.parametrize("token", ["", "sk-abc", "rbk_xyz_abc", new_key().key + "x", new_key().key[:-1]])
def test_anything_not_shaped_like_a_key_is_refused_without_a_lookup(token: str) -> None:
    assert not looks_like_key(token)


def test_the_bearer_token_is_read_from_the_authorization_header() -> None:
    assert bearer_token("Bearer rbk_1") == "rbk_1"
    assert bearer_token("bearer   rbk_1 ") == "rbk_1"
    assert bearer_token("Basic dXNlcg==") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_a_key_gets_its_burst_at_once_then_its_rate_and_is_told_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.take("k", rate=2, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k", rate=2, burst=3) == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.take("k", rate=2, burst=3) == pytest.approx(0.25)  # half a token so far
    clock.now += 0.25
    assert limiter.take("k", rate=2, burst=3) == 0.0
    assert limiter.take("other", rate=2, burst=3) == 0.0  # each key has its own bucket
    clock.now += 60
    assert [limiter.take("k", rate=2, burst=3) for _ in range(4)][-1] > 0  # refilled to the burst, no more


def test_idle_full_buckets_are_dropped_when_the_limiter_is_at_its_size() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, max_keys=2)
    limiter.take("a", 1, 2)
    limiter.take("b", 1, 2)
    clock.now += 10
    limiter.take("c", 1, 2)
    assert set(limiter._buckets) == {"c"}


def test_a_cached_key_expires_after_its_ttl() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=10, clock=clock)
    key = ApiKey("abc", "acme")
    cache.put("h", key)
    assert cache.get("h") == key
    clock.now += 10
    assert cache.get("h") is None
    KeyCache(ttl_s=0).put("h", key)  # 0: nothing is cached
    assert KeyCache(ttl_s=0).get("h") is None
