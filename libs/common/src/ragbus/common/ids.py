"""Identifiers: time-ordered event ids, and deterministic ids where the same input must give the same record.

Event ids are UUIDv7 (RFC 9562): sortable by creation time, which keeps the monitor's primary key index
append-mostly. An event derived from another event gets a *deterministic* UUIDv7: the timestamp of its
cause and bits hashed from (cause id, kind, and for the first event of a flow its content digest). A
redelivered or re-published input therefore produces the very same output event ids, and every consumer
downstream (the monitor's `ON CONFLICT DO NOTHING`, the client waiting for an answer) sees a duplicate,
not a new fact; an id a producer reused for *different* content gets replies of its own instead of the
first event's ids.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid

# Namespace for the uuid5 ids of records (points, chunks); never change it, stored ids depend on it.
RAGBUS_NAMESPACE = uuid.UUID("6f1d2c52-0e4b-4c55-9d7a-2b0b1f0c9a11")


def _uuid7_from(ms: int, rand: bytes) -> uuid.UUID:
    """Lay out a UUIDv7: 48-bit unix ms, version 7, 12 bits + variant + 62 bits taken from `rand`."""
    r = int.from_bytes(rand[:10], "big")  # 80 bits, of which 74 are used
    rand_a = (r >> 62) & 0xFFF
    rand_b = r & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def uuid7() -> uuid.UUID:
    """A new random, time-ordered UUIDv7."""
    return _uuid7_from(time.time_ns() // 1_000_000, os.urandom(10))


def uuid7_time_ms(value: uuid.UUID) -> int | None:
    """The unix ms timestamp inside a UUIDv7, or None for other versions."""
    return value.int >> 80 if value.version == 7 else None


def derived_id(cause: uuid.UUID, kind: str, content: bytes = b"") -> uuid.UUID:
    """Deterministic UUIDv7 for the event of `kind` caused by event `cause` whose content digest is
    `content` (same inputs, same id)."""
    ms = uuid7_time_ms(cause)
    if ms is None:
        # A producer outside ragbus used another UUID version. "Now" would give a redelivery of its
        # event new ids (two replies, doubled audit rows): the epoch keeps the id a function of the
        # cause alone, at the price of sorting before the ids ragbus makes.
        ms = 0
    digest = hashlib.sha256(cause.bytes + b"\x00" + kind.encode() + b"\x00" + content).digest()
    return _uuid7_from(ms, digest)


def record_id(*parts: str) -> uuid.UUID:
    """Deterministic uuid5 for a stored record, e.g. record_id(tenant, doc_id, str(index), content_hash)."""
    return uuid.uuid5(RAGBUS_NAMESPACE, "\x1f".join(parts))


def content_hash(text: str) -> str:
    """Stable hex digest of a text (sha256), used for chunk and document versions."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
