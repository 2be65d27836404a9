"""API keys, pure: how a key looks, how it is stored (hashed), and what a verified key grants.

A key is `rbk_<id>_<secret>`: the id (12 hex digits) names the key in lists, logs, metrics and rate
limits and is stored as it is; the secret (32 random bytes, base64url) is shown once, at creation. The
database keeps only the SHA-256 of the whole key. A slow password hash (bcrypt, argon2) protects
guessable secrets; these have 256 random bits, so one SHA-256 is as safe and costs microseconds per
request, and the lookup is by the hash itself (an index hit, no per-row comparison).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable

from ragbus.gateway.ports import SCOPES, NewKey, Scope

PREFIX = "rbk"
_KEY = re.compile(r"^rbk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id, key, hash_key(key))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(key: str) -> bool:
    """Whether a presented key has the shape of one (anything else is refused without a lookup)."""
    return _KEY.match(key) is not None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the way the OpenAI SDK sends its key)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def scopes_of(values: Iterable[str]) -> tuple[Scope, ...]:
    """Scopes as given (each may be a comma-separated list), checked and in one order (`SCOPES`'s).
    ValueError for an unknown scope or none at all: a key that may do nothing is a mistake."""
    given = {v.strip().lower() for value in values for v in value.split(",") if v.strip()}
    unknown = given - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {', '.join(sorted(unknown))}: the scopes are {', '.join(SCOPES)}")
    if not given:
        raise ValueError(f"a key needs at least one scope of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)
