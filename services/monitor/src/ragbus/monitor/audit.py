"""Tamper evidence for the monitor's record: pure functions, no database (docs/audit.md). The chain
lives in PostgreSQL beside the rows it covers (`PostgresEventStore.verify`, `erase`, `purge`); the
in-memory store, which nothing can change behind its back, keeps none.

Every stored event and dead letter gets a link in a hash chain: the digest of its content when it was
stored, and a hash over that digest, its place and the previous link's hash. A chain is one (tenant,
topic, partition), which one consumer writes at a time, so batches and parallel monitors never contend.
Checkpoints sign the chains' heads with an HMAC key; erasures (a redaction on request, a purge by
retention) are records of their own, signed, and chained per tenant. `verify` reads all of it back and
names every row that does not add up:

- **edited**: a row's content no longer matches the digest its link recorded (and no erasure explains it);
- **deleted**: a linked row is gone (and was not purged), or a link is missing (a gap in `seq`);
- **inserted**: a row that is on no chain, or a link that does not follow the one before it;
- **reordered**: a link that follows another link than the one before it (its `prev_hash` names a row
  elsewhere in the chain);
- **rewritten**: a chain whose head at a signed checkpoint is not what the checkpoint says (the chain
  was recomputed from some row on, which needs no key, or truncated);
- **forged**: a checkpoint or erasure whose signature does not verify under the key.

What a chain cannot prove is who appended to it: a row added at a chain's tail by someone holding the
monitor's database credentials and this scheme looks like the monitor's own. Keep those credentials
with the monitor alone (`ragbus audit grant`). A truncated tail is seen once a checkpoint has signed a
head beyond it; links after their chain's last checkpoint (`Report.unsealed`) rest on the chain alone.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

ZERO = bytes(32)
DOMAIN = b"ragbus.audit.v1"
Kind = Literal["event", "dead_letter", "erasure"]
ProblemKind = Literal["edited", "deleted", "inserted", "reordered", "rewritten", "forged", "unsigned"]

# Keys of event data that can hold what a person wrote or what was written about them. An erasure
# drops them wherever they occur; ids, statuses, tiers, tokens, costs and timings stay, so reports and
# the chain still add up after it.
PERSONAL_KEYS = frozenset(
    {
        "question",
        "answer",
        "text",
        "comment",
        "correction",
        "quote",
        "title",
        "user_id",
        "metadata",
        "messages",
        "history",
        "content",
        "uri",
        "filename",  # an uploaded file's name (its bytes are `content`)
        "minhash",
    }
)


@functools.lru_cache(maxsize=65_536)
def _lp(value: str) -> bytes:
    # Cached: chain, kind and tenant repeat on every link of a chain.
    raw = value.encode()
    return len(raw).to_bytes(4, "big") + raw


def link_hash(
    prev_hash: bytes, content_digest: bytes, seq: int, chain: str, kind: str, ref: UUID, tenant: str
) -> bytes:
    """A link's hash. Fixed-width and length-prefixed fields, so no two links encode alike; the
    migration's `audit_link_hash` computes the same bytes in SQL (a test holds the two together)."""
    return hashlib.sha256(
        b"".join(
            (
                DOMAIN,
                prev_hash,
                content_digest,
                seq.to_bytes(8, "big", signed=True),
                _lp(chain),
                _lp(kind),
                ref.bytes,
                _lp(tenant),
            )
        )
    ).digest()


def event_chain(tenant: str, topic: str, partition: int) -> str:
    return f"{tenant}|{topic}|{partition}"


def erasure_chain(tenant: str) -> str:
    return f"erasures|{tenant}"


@dataclass(frozen=True, slots=True)
class Entry:
    """A row to chain: what it is, where it sits, and its content digest."""

    kind: Kind
    ref: UUID
    tenant: str
    chain: str
    position: int  # its order in the chain: the Kafka offset (the erasure chain: a counter)
    content_digest: bytes


@dataclass(frozen=True, slots=True)
class Link:
    """A row of `audit_log`."""

    chain: str
    seq: int
    kind: Kind
    ref: UUID
    tenant: str
    content_digest: bytes
    prev_hash: bytes
    hash: bytes


def extend(heads: Mapping[str, tuple[int, bytes]], entries: Iterable[Entry]) -> list[Link]:
    """Links for `entries`, appended to chains whose current heads (seq, hash) are `heads` (a chain
    not there starts at seq 1). Within a chain, entries go in `position` order."""
    state = dict(heads)
    links = []
    for e in sorted(entries, key=lambda e: (e.chain, e.position, str(e.ref))):
        seq, prev = state.get(e.chain, (0, ZERO))
        seq += 1
        h = link_hash(prev, e.content_digest, seq, e.chain, e.kind, e.ref, e.tenant)
        links.append(Link(e.chain, seq, e.kind, e.ref, e.tenant, e.content_digest, prev, h))
        state[e.chain] = (seq, h)
    return links


def heads_of(links: Iterable[Link]) -> dict[str, tuple[int, bytes]]:
    """The last link of each chain among `links`."""
    heads: dict[str, tuple[int, bytes]] = {}
    for link in links:
        if link.seq > heads.get(link.chain, (0, b""))[0]:
            heads[link.chain] = (link.seq, link.hash)
    return heads


# --- signatures ------------------------------------------------------------------------------------


def key_id(key: bytes) -> str:
    """Names a key without revealing it, so a verifier can tell which key signed (rotation)."""
    return hashlib.sha256(b"ragbus.audit.key-id" + key).hexdigest()[:16]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A row of `audit_checkpoints`."""

    id: UUID
    signed_at: datetime
    key_id: str
    heads: dict[str, tuple[int, str]]  # chain -> (seq, hash hex)
    mac: bytes


def checkpoint_mac(key: bytes, id: UUID, signed_at: datetime, heads: Mapping[str, tuple[int, str]]) -> bytes:
    body = {"id": str(id), "at": signed_at.isoformat(), "heads": {c: [s, h] for c, (s, h) in heads.items()}}
    return hmac.new(key, b"checkpoint" + _canonical(body), hashlib.sha256).digest()


def sign_checkpoint(
    key: bytes, id: UUID, signed_at: datetime, heads: Mapping[str, tuple[int, bytes]]
) -> Checkpoint:
    hexed = {c: (s, h.hex()) for c, (s, h) in heads.items()}
    return Checkpoint(id, signed_at, key_id(key), hexed, checkpoint_mac(key, id, signed_at, hexed))


@dataclass(frozen=True, slots=True)
class Erasure:
    """A row of `erasures`: a lawful change to a row, with the digests before and after."""

    id: UUID
    kind: Literal["event", "dead_letter"]
    ref: UUID
    tenant: str
    action: Literal["redact", "purge"]
    reason: str
    subject_digest: bytes | None
    original_digest: bytes
    erased_digest: bytes | None
    erased_at: datetime
    key_id: str | None = None
    mac: bytes | None = None

    def body(self) -> bytes:
        return _canonical(
            {
                "id": str(self.id),
                "kind": self.kind,
                "ref": str(self.ref),
                "tenant": self.tenant,
                "action": self.action,
                "reason": self.reason,
                "subject": self.subject_digest.hex() if self.subject_digest else None,
                "original": self.original_digest.hex(),
                "erased": self.erased_digest.hex() if self.erased_digest else None,
                "at": self.erased_at.isoformat(),
            }
        )

    def digest(self) -> bytes:
        """The erasure's own content digest, for its link in the tenant's erasure chain."""
        return hashlib.sha256(self.body()).digest()

    def signed(self, key: bytes | None) -> Erasure:
        if key is None:
            return self
        mac = hmac.new(key, b"erasure" + self.body(), hashlib.sha256).digest()
        return Erasure(**{**_fields(self), "key_id": key_id(key), "mac": mac})


def _fields(e: Erasure) -> dict[str, Any]:
    return {name: getattr(e, name) for name in Erasure.__slots__}


def subject_digest(tenant: str, user_id: str) -> bytes:
    """Who an erasure was for, kept without keeping who: the digest of the tenant's user id."""
    return hashlib.sha256(_lp(tenant) + _lp(user_id)).digest()


def redact(value: Any) -> Any:
    """Event data with every personal field dropped (at any depth), marked erased."""

    def walk(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: walk(x) for k, x in v.items() if k not in PERSONAL_KEYS}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    out = walk(value)
    if isinstance(out, dict):
        out["erased"] = True
    return out


# --- verification ----------------------------------------------------------------------------------


# A link as a row (`Verifier.feed_rows`): a Link's fields, then the current content digest of its row.
ROW_FIELDS = ("chain", "seq", "kind", "ref", "tenant", "content_digest", "prev_hash", "hash", "current")


@dataclass(frozen=True, slots=True)
class ChainRow:
    """A link as stored, and the content digest of the row it points at as that row is now (None when
    the row is gone)."""

    link: Link
    current_digest: bytes | None


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    chain: str | None
    seq: int | None
    ref: UUID | None
    detail: str

    def __str__(self) -> str:
        where = f"chain {self.chain} seq {self.seq}" if self.chain is not None else "record"
        return f"{self.kind}: {where}: {self.detail}"


@dataclass
class Report:
    signed: bool = False  # signatures were checked (a key was given)
    rows: int = 0
    chains: int = 0
    checkpoints: int = 0
    erasures: int = 0
    unsealed: int = 0  # links after their chain's last checkpoint
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Walk:
    """One chain, link by link: streamed, so a chain of millions of rows costs a hash per row."""

    def __init__(
        self, chain: str, erasures: Mapping[tuple[str, UUID], Sequence[Erasure]], out: Report
    ) -> None:
        self.chain, self.erasures, self.out = chain, erasures, out
        self.prev_seq, self.prev_hash = 0, ZERO
        self.hashes: list[tuple[bytes, int]] = []  # (hash, seq): tells a reordering from an insertion
        self.unlinked: list[Link] = []

    def feed(self, row: ChainRow) -> None:
        link, chain = row.link, self.chain
        if link.seq != self.prev_seq + 1:
            gap = (
                f"{self.prev_seq + 1}"
                if link.seq == self.prev_seq + 2
                else f"{self.prev_seq + 1}..{link.seq - 1}"
            )
            self.out.problems.append(
                Problem("deleted", chain, link.seq, None, f"link(s) {gap} missing before it")
            )
        expected = link_hash(
            link.prev_hash, link.content_digest, link.seq, chain, link.kind, link.ref, link.tenant
        )
        if expected != link.hash:
            self.out.problems.append(
                Problem(
                    "edited", chain, link.seq, link.ref, f"the link of {link.kind} {link.ref} was altered"
                )
            )
        elif link.prev_hash != self.prev_hash and link.seq == self.prev_seq + 1:
            self.unlinked.append(link)
        # The common case first, cheaply: a row as it was chained, no erasure on record for it.
        if (
            row.current_digest != link.content_digest
            or link.kind == "erasure"
            or (self.erasures and (link.kind, link.ref) in self.erasures)
        ):
            _check_content(row, self.erasures.get((link.kind, link.ref), ()), chain, self.out)
        self.hashes.append((link.hash, link.seq))
        self.prev_seq, self.prev_hash = link.seq, link.hash

    def close(self) -> int:
        seqs = dict(self.hashes) if self.unlinked else {}
        for link in self.unlinked:
            origin = seqs.get(link.prev_hash)
            if origin is not None:
                self.out.problems.append(
                    Problem("reordered", self.chain, link.seq, link.ref, f"it was written after seq {origin}")
                )
            else:
                self.out.problems.append(
                    Problem(
                        "inserted", self.chain, link.seq, link.ref, "it does not follow the link before it"
                    )
                )
        return self.prev_seq


def _check_content(row: ChainRow, erased: Sequence[Erasure], chain: str, out: Report) -> None:
    link = row.link
    if link.kind == "erasure":
        if row.current_digest is None:
            out.problems.append(
                Problem("deleted", chain, link.seq, link.ref, f"erasure record {link.ref} is gone")
            )
        elif row.current_digest != link.content_digest:
            out.problems.append(
                Problem("edited", chain, link.seq, link.ref, f"erasure record {link.ref} was changed")
            )
        return
    # The row's lawful history: its content as chained, then each erasure in turn.
    expected = link.content_digest
    for e in erased:
        if e.original_digest != expected:
            out.problems.append(
                Problem(
                    "edited",
                    chain,
                    link.seq,
                    link.ref,
                    f"{link.kind} {link.ref} was changed before its erasure",
                )
            )
        expected = e.erased_digest if e.action == "redact" and e.erased_digest else b""
    if row.current_digest is None:
        if expected != b"":  # a purge leaves no row, and that is its point
            out.problems.append(
                Problem("deleted", chain, link.seq, link.ref, f"{link.kind} {link.ref} is gone")
            )
    elif row.current_digest != expected:
        what = "was changed after its erasure" if erased else "was edited"
        out.problems.append(Problem("edited", chain, link.seq, link.ref, f"{link.kind} {link.ref} {what}"))


class Verifier:
    """Checks the record: feed it every link (by chain, then seq), then `finish` with the rows on no
    chain. Streaming, so the record need not fit in memory. `verify` does it for a list."""

    def __init__(
        self,
        *,
        checkpoints: Iterable[Checkpoint] = (),
        erasures: Iterable[Erasure] = (),
        key: bytes | None = None,
        tenant: str | None = None,
    ) -> None:
        self.report = Report(signed=key is not None)
        self.key, self.tenant = key, tenant
        self.by_ref: dict[tuple[str, UUID], list[Erasure]] = {}
        self.by_id: dict[UUID, Erasure] = {}
        for e in sorted(erasures, key=lambda e: (e.erased_at, str(e.id))):
            self.by_ref.setdefault((e.kind, e.ref), []).append(e)
            self.by_id[e.id] = e
            self._check_erasure(e)
        self.checkpoints = [
            cp for cp in checkpoints if tenant is None or any(_tenant_of(c) == tenant for c in cp.heads)
        ]
        self.wanted: dict[str, set[int]] = {}
        for cp in self.checkpoints:
            for c, (seq, _) in cp.heads.items():
                self.wanted.setdefault(c, set()).add(seq)
        self.heads: dict[str, dict[int, bytes]] = {}  # chain -> seq -> hash, for seqs a checkpoint names
        self.last: dict[str, int] = {}
        self.walks: dict[int, _Walk] = {}  # the chain each stream is on

    def _check_erasure(self, e: Erasure) -> None:
        self.report.erasures += 1
        if self.key is not None and (e.mac is None or e.signed(self.key).mac != e.mac):
            signer = f"key {e.key_id}" if e.key_id and e.key_id != key_id(self.key) else "this key"
            why = "is unsigned" if e.mac is None else f"does not verify under {signer}"
            self.report.problems.append(
                Problem("forged", None, None, e.id, f"erasure {e.id} of {e.kind} {e.ref} {why}")
            )

    def feed(self, row: ChainRow, stream: int = 0) -> None:
        """One link. Links of one chain come in `seq` order and on one `stream`; streams (readers of
        disjoint sets of chains, in parallel) may interleave."""
        link = row.link
        if link.kind == "erasure":  # its digest is computed here, from the erasure record itself
            erasure = self.by_id.get(link.ref)
            row = ChainRow(link, erasure.digest() if erasure else None)
        self.report.rows += 1
        walk = self.walks.get(stream)
        if walk is None or link.chain != walk.chain:
            if walk is not None:
                self.last[walk.chain] = walk.close()
            walk = self.walks[stream] = _Walk(link.chain, self.by_ref, self.report)
            self.report.chains += 1
        walk.feed(row)
        if link.seq in self.wanted.get(link.chain, ()):
            self.heads.setdefault(link.chain, {})[link.seq] = link.hash

    def feed_rows(self, rows: Iterable[Sequence[Any]], stream: int = 0) -> None:
        """Links as plain rows, `ROW_FIELDS` in that order, as a database cursor yields them: what `feed`
        does, with no objects made for a link that adds up. The bulk of a record is such links, so this
        is what sets `verify`'s pace (bench/monitor.py); anything else takes `feed`'s path."""
        sha256, lp, report = hashlib.sha256, _lp, self.report
        erased, wanted_by_chain = self.by_ref, self.wanted
        walk = self.walks.get(stream)
        chain_now, wanted = (walk.chain, wanted_by_chain.get(walk.chain, ())) if walk else (None, ())
        for row in rows:
            chain, seq, kind, ref, tenant, content_digest, prev_hash, hash_, current = row
            if (
                walk is not None
                and chain == chain_now
                and current == content_digest
                and seq == walk.prev_seq + 1
                and prev_hash == walk.prev_hash
                and kind != "erasure"
                and seq not in wanted
                and (not erased or (kind, ref) not in erased)
                and sha256(
                    b"".join(
                        (
                            DOMAIN,
                            prev_hash,
                            content_digest,
                            seq.to_bytes(8, "big", signed=True),
                            lp(chain),
                            lp(kind),
                            ref.bytes,
                            lp(tenant),
                        )
                    )
                ).digest()
                == hash_
            ):
                report.rows += 1
                walk.hashes.append((hash_, seq))
                walk.prev_seq, walk.prev_hash = seq, hash_
                continue
            link = Link(chain, seq, kind, ref, tenant, content_digest, prev_hash, hash_)
            self.feed(ChainRow(link, current), stream)
            walk = self.walks[stream]
            chain_now, wanted = walk.chain, wanted_by_chain.get(walk.chain, ())

    def finish(self, unchained: Iterable[tuple[str, UUID]] = ()) -> Report:
        for walk in self.walks.values():
            self.last[walk.chain] = walk.close()
        self.walks = {}
        sealed: dict[str, int] = {}
        for cp in self.checkpoints:
            self.report.checkpoints += 1
            if self.key is not None and (
                cp.key_id != key_id(self.key)
                or checkpoint_mac(self.key, cp.id, cp.signed_at, cp.heads) != cp.mac
            ):
                signer = "another key" if cp.key_id != key_id(self.key) else "this key, and it was altered"
                self.report.problems.append(
                    Problem(
                        "forged",
                        None,
                        None,
                        cp.id,
                        f"checkpoint {cp.id} of {cp.signed_at:%Y-%m-%d %H:%M:%S} "
                        f"does not verify: signed by {signer}",
                    )
                )
                continue
            for c, (seq, hexhash) in cp.heads.items():
                if self.tenant is not None and _tenant_of(c) != self.tenant:
                    continue
                found = self.heads.get(c, {}).get(seq)
                if found is None:
                    why = f"it ends before seq {seq}, which checkpoint {cp.id} signed: truncated"
                    self.report.problems.append(Problem("rewritten", c, seq, None, why))
                elif found.hex() != hexhash:
                    why = f"the chain up to here is not the one checkpoint {cp.id} signed"
                    self.report.problems.append(Problem("rewritten", c, seq, None, why))
                sealed[c] = max(sealed.get(c, 0), seq)
        self.report.unsealed = sum(n - sealed.get(c, 0) for c, n in self.last.items())
        for kind, ref in unchained:
            self.report.problems.append(Problem("inserted", None, None, ref, f"{kind} {ref} is on no chain"))
        return self.report


def verify(
    rows: Iterable[ChainRow],
    *,
    unchained: Iterable[tuple[str, UUID]] = (),
    checkpoints: Iterable[Checkpoint] = (),
    erasures: Iterable[Erasure] = (),
    key: bytes | None = None,
    tenant: str | None = None,
) -> Report:
    """Check chains (rows ordered by chain, then seq), the rows on no chain, the checkpoints' heads and
    signatures, and the erasures' signatures; `tenant` limits the check to that tenant's chains."""
    verifier = Verifier(checkpoints=checkpoints, erasures=erasures, key=key, tenant=tenant)
    verifier.feed_rows(as_row(row) for row in rows)
    return verifier.finish(unchained)


def as_row(row: ChainRow) -> tuple[Any, ...]:
    """A ChainRow as `feed_rows` takes it (`ROW_FIELDS`)."""
    x = row.link
    return (
        x.chain,
        x.seq,
        x.kind,
        x.ref,
        x.tenant,
        x.content_digest,
        x.prev_hash,
        x.hash,
        row.current_digest,
    )


def _tenant_of(chain: str) -> str:
    head, _, rest = chain.partition("|")
    return rest if head == "erasures" else head
