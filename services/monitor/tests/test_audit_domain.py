"""The audit chain's rules without a database: linking, verification of every kind of tampering,
signatures, redaction, and retention rules."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from ragbus.monitor import audit, retention
from ragbus.monitor.audit import ChainRow, Entry, Link

KEY = b"k" * 32
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def entries(n: int, chain: str = "acme|queries.submitted|0", tenant: str = "acme") -> list[Entry]:
    return [
        Entry("event", uuid.UUID(int=i + 1), tenant, chain, 100 + i, digest(f"row {i}")) for i in range(n)
    ]


def rows(links: list[Link], current: dict[uuid.UUID, bytes | None] | None = None) -> list[ChainRow]:
    """The chain as `verify` reads it: each link with its row's content now (unchanged by default)."""
    current = current or {}
    return [ChainRow(x, current.get(x.ref, x.content_digest)) for x in links]


def kinds(report: audit.Report) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in report.problems]


def test_links_follow_each_other_and_continue_from_the_heads() -> None:
    first = audit.extend({}, entries(3))
    assert [x.seq for x in first] == [1, 2, 3]
    assert first[0].prev_hash == audit.ZERO
    assert [x.prev_hash for x in first[1:]] == [x.hash for x in first[:2]]
    more = audit.extend(audit.heads_of(first), [dataclasses.replace(entries(4)[3])])
    assert (more[0].seq, more[0].prev_hash) == (4, first[-1].hash)
    # The same rows give the same chain, whatever order they come in (the partition's order wins).
    assert audit.extend({}, list(reversed(entries(3)))) == first


def test_a_link_hash_covers_every_field() -> None:
    one = uuid.UUID(int=1)
    h = audit.link_hash(audit.ZERO, digest("x"), 1, "chain", "event", one, "acme")
    assert audit.link_hash(audit.ZERO, digest("y"), 1, "chain", "event", one, "acme") != h
    assert audit.link_hash(digest("p"), digest("x"), 1, "chain", "event", one, "acme") != h
    assert audit.link_hash(audit.ZERO, digest("x"), 2, "chain", "event", one, "acme") != h
    assert audit.link_hash(audit.ZERO, digest("x"), 1, "chain", "event", one, "acmf") != h
    # Length prefixes: moving a character from one field to the next changes the hash.
    assert audit.link_hash(audit.ZERO, digest("x"), 1, "chai", "nevent", one, "acme") != h


def test_an_untouched_chain_verifies() -> None:
    links = audit.extend({}, entries(5) + entries(3, chain="acme|answers.completed|1"))
    report = audit.verify(rows(links))
    assert report.ok
    assert (report.rows, report.chains) == (8, 2)


def test_an_edited_row_is_named() -> None:
    links = audit.extend({}, entries(5))
    report = audit.verify(rows(links, {links[2].ref: digest("changed")}))
    assert kinds(report) == [("edited", 3)]
    assert str(links[2].ref) in str(report.problems[0])


def test_a_deleted_row_and_a_deleted_link_are_named() -> None:
    links = audit.extend({}, entries(5))
    gone_row = audit.verify(rows(links, {links[1].ref: None}))
    assert kinds(gone_row) == [("deleted", 2)]
    gone_link = audit.verify(rows(links[:2] + links[3:]))
    assert [p.kind for p in gone_link.problems] == ["deleted"]
    assert gone_link.problems[0].seq == 4
    assert "3 missing" in gone_link.problems[0].detail


def test_reordered_links_are_named_with_where_they_were_written() -> None:
    links = audit.extend({}, entries(5))
    # Swap rows 2 and 4 by renumbering them, and rehash them so each link is self-consistent.
    a, b = links[1], links[3]

    def moved(x: Link, seq: int) -> Link:
        h = audit.link_hash(x.prev_hash, x.content_digest, seq, x.chain, x.kind, x.ref, x.tenant)
        return dataclasses.replace(x, seq=seq, hash=h)

    swapped = [links[0], moved(b, 2), links[2], moved(a, 4), links[4]]
    report = audit.verify(rows(swapped))
    assert ("reordered", 2) in kinds(report)
    assert all(p.kind in {"reordered", "inserted"} for p in report.problems)


def test_a_row_on_no_chain_is_inserted() -> None:
    links = audit.extend({}, entries(2))
    ghost = uuid.UUID(int=99)
    report = audit.verify(rows(links), unchained=[("event", ghost)])
    assert kinds(report) == [("inserted", None)]
    assert str(ghost) in str(report.problems[0])


def test_a_link_inserted_mid_chain_breaks_what_follows() -> None:
    links = audit.extend({}, entries(4))
    # Insert a new link at seq 3 and renumber the rest without the key or the original hashes.
    extra = Entry("event", uuid.UUID(int=50), "acme", links[0].chain, 0, digest("forged"))
    forged = audit.extend(audit.heads_of(links[:2]), [extra])
    shifted = [dataclasses.replace(x, seq=x.seq + 1) for x in links[2:]]  # hashes now cover the wrong seq
    report = audit.verify(rows(links[:2] + forged + shifted))
    assert report.problems
    assert {p.seq for p in report.problems} >= {4}


def test_a_chain_recomputed_from_some_row_on_is_caught_by_its_checkpoint() -> None:
    links = audit.extend({}, entries(5))
    cp = audit.sign_checkpoint(KEY, uuid.uuid4(), NOW, audit.heads_of(links))
    assert audit.verify(rows(links), checkpoints=[cp], key=KEY).ok
    # Row 3 edited and the chain rebuilt from there: every link is consistent again...
    changed = [dataclasses.replace(e) for e in entries(5)]
    changed[2] = dataclasses.replace(changed[2], content_digest=digest("changed"))
    rebuilt = audit.extend({}, changed)
    assert audit.verify(rows(rebuilt)).ok
    # ...but not the head the checkpoint signed.
    report = audit.verify(rows(rebuilt), checkpoints=[cp], key=KEY)
    assert kinds(report) == [("rewritten", 5)]
    # A truncated tail too.
    assert kinds(audit.verify(rows(links[:3]), checkpoints=[cp], key=KEY)) == [("rewritten", 5)]


def test_a_forged_checkpoint_is_named_and_no_key_checks_no_signature() -> None:
    links = audit.extend({}, entries(3))
    cp = audit.sign_checkpoint(b"other key", uuid.uuid4(), NOW, audit.heads_of(links))
    assert kinds(audit.verify(rows(links), checkpoints=[cp], key=KEY)) == [("forged", None)]
    altered = dataclasses.replace(cp, key_id=audit.key_id(KEY))
    assert kinds(audit.verify(rows(links), checkpoints=[altered], key=KEY)) == [("forged", None)]
    unsigned = audit.verify(rows(links), checkpoints=[cp])
    assert unsigned.ok
    assert not unsigned.signed


def test_unsealed_rows_are_counted() -> None:
    links = audit.extend({}, entries(5))
    cp = audit.sign_checkpoint(KEY, uuid.uuid4(), NOW, audit.heads_of(links[:3]))
    report = audit.verify(rows(links), checkpoints=[cp], key=KEY)
    assert report.ok
    assert report.unsealed == 2


def _erasure(
    link: Link, after: bytes | None, action: Literal["redact", "purge"] = "redact", key: bytes | None = KEY
) -> audit.Erasure:
    return audit.Erasure(
        uuid.uuid4(),
        "event",
        link.ref,
        "acme",
        action,
        "test",
        None,
        link.content_digest,
        after,
        NOW,
    ).signed(key)


def test_an_erasure_explains_a_redacted_or_purged_row_and_is_itself_chained() -> None:
    links = audit.extend({}, entries(4))
    redacted, purged = _erasure(links[1], digest("redacted")), _erasure(links[2], None, "purge")
    chain = audit.erasure_chain("acme")
    erasure_links = audit.extend(
        {}, [Entry("erasure", e.id, "acme", chain, i, e.digest()) for i, e in enumerate([redacted, purged])]
    )
    now = {links[1].ref: digest("redacted"), links[2].ref: None}
    report = audit.verify(rows(links, now) + rows(erasure_links), erasures=[redacted, purged], key=KEY)
    assert report.ok
    assert report.erasures == 2
    # Without the erasure records, the same rows are an edit and a deletion.
    assert kinds(audit.verify(rows(links, now), key=KEY)) == [("edited", 2), ("deleted", 3)]
    # A redacted row changed again afterwards is an edit.
    later = {**now, links[1].ref: digest("changed after")}
    assert ("edited", 2) in kinds(audit.verify(rows(links, later), erasures=[redacted, purged], key=KEY))


def test_an_erasure_without_a_valid_signature_is_forged() -> None:
    links = audit.extend({}, entries(2))
    fake = _erasure(links[0], digest("gone"), key=b"not the key")
    report = audit.verify(rows(links, {links[0].ref: digest("gone")}), erasures=[fake], key=KEY)
    assert kinds(report) == [("forged", None)]
    unsigned = _erasure(links[0], digest("gone"), key=None)
    assert "unsigned" in str(audit.verify(rows(links), erasures=[unsigned], key=KEY).problems[0])


def test_verify_for_one_tenant_checks_its_chains_and_checkpoints_only() -> None:
    acme = audit.extend({}, entries(2))
    beta = audit.extend({}, entries(2, chain="beta|queries.submitted|0", tenant="beta"))
    cp = audit.sign_checkpoint(KEY, uuid.uuid4(), NOW, audit.heads_of(acme + beta))
    report = audit.verify(rows(acme), checkpoints=[cp], key=KEY, tenant="acme")
    assert report.ok
    assert report.checkpoints == 1


def test_redaction_drops_personal_fields_at_any_depth_and_keeps_the_accounts() -> None:
    data = {
        "query_id": "q-1",
        "question": "my name is Ada",
        "user_id": "u-7",
        "answer": "hello Ada",
        "citations": [{"n": 1, "doc_id": "d", "title": "Ada's notes", "quote": "Ada"}],
        "cascade": {"tier": 1, "attempts": [{"tier": 1, "cost_usd": 0.01, "prompt_tokens": 9}]},
        "status": "answered",
    }
    assert audit.redact(data) == {
        "query_id": "q-1",
        "citations": [{"n": 1, "doc_id": "d"}],
        "cascade": {"tier": 1, "attempts": [{"tier": 1, "cost_usd": 0.01, "prompt_tokens": 9}]},
        "status": "answered",
        "erased": True,
    }
    assert audit.subject_digest("acme", "u-7") != audit.subject_digest("beta", "u-7")


# --- retention -------------------------------------------------------------------------------------


def test_retention_rules_the_most_specific_wins() -> None:
    rules = retention.parse(
        {"*": "365d", "acme": "90d", "*/answers.delta": "7d", "acme/answers.completed": "30d"}
    )

    def keep(tenant: str, short: str | None) -> timedelta | None:
        rule = retention.rule_for(rules, tenant, short)
        return rule.keep if rule else None

    assert keep("acme", "answers.completed") == timedelta(days=30)
    assert keep("acme", "answers.delta") == timedelta(days=90)  # the tenant's rule beats `*/type`
    assert keep("beta", "answers.delta") == timedelta(days=7)
    assert keep("beta", "queries.submitted") == timedelta(days=365)
    assert keep("acme", None) == timedelta(days=90)  # dead letters: the tenant rule
    assert retention.rule_for(retention.parse({"acme": "1y"}), "beta", "x") is None


def test_retention_cutoffs_per_tenant_and_type() -> None:
    rules = retention.parse({"acme": "30d", "*/answers.delta": "12h"})
    present = [
        ("acme", "io.ragbus.queries.submitted.v1"),
        ("beta", "io.ragbus.answers.delta.v1"),
        ("beta", "io.ragbus.queries.submitted.v1"),
        ("acme", None),
    ]
    assert retention.cutoffs(rules, present, NOW) == [
        retention.Cutoff("acme", None, NOW - timedelta(days=30)),
        retention.Cutoff("acme", "io.ragbus.queries.submitted.v1", NOW - timedelta(days=30)),
        retention.Cutoff("beta", "io.ragbus.answers.delta.v1", NOW - timedelta(hours=12)),
    ]


@pytest.mark.parametrize("bad", [{"acme": "30 days"}, {"acme": "-1d"}, {"/x": "1d"}])
def test_retention_refuses_what_it_cannot_read(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="retention"):
        retention.parse(bad)


def test_streams_of_disjoint_chains_may_interleave() -> None:
    a = audit.extend({}, entries(4))
    b = audit.extend({}, entries(4, chain="acme|answers.completed|1"))
    verifier = audit.Verifier()
    for x, y in zip(rows(a), rows(b), strict=True):  # two readers, one chain each, rows alternating
        verifier.feed(x, 0)
        verifier.feed(y, 1)
    report = verifier.finish()
    assert report.ok
    assert (report.rows, report.chains) == (8, 2)
    broken = audit.Verifier()
    for x, y in zip(rows(a), rows(b, {b[2].ref: digest("changed")}), strict=True):
        broken.feed(x, 0)
        broken.feed(y, 1)
    assert kinds(broken.finish()) == [("edited", 3)]


def test_chains_are_shared_out_evenly_among_readers_as_runs_in_the_order_given() -> None:
    from ragbus.monitor.adapters.postgres import _share_out

    # Runs of neighbours (each reader walks one stretch of the primary key), cut near the middle, in
    # the database's order (a collation's, here one where case comes second), never re-sorted.
    given = [("acme|a", 50), ("Acme|b", 30), ("beta|c", 25), ("Zeta|d", 5)]
    assert _share_out(given, 2) == [["acme|a"], ["Acme|b", "beta|c", "Zeta|d"]]
    chains = [(f"t|topic|{i:02}", 100 + 7 * i) for i in range(40)]
    groups = _share_out(chains, 3)
    assert [c for g in groups for c in g] == [c for c, _ in chains]
    loads = [sum(n for c, n in chains if c in g) for g in groups]
    assert max(loads) - min(loads) <= 2 * max(n for _, n in chains)
    assert _share_out([("a", 1)], 4) == [["a"]]
    assert _share_out([], 2) == [[]]


def _tamper(links: list[Link], rng: random.Random) -> tuple[list[Link], dict[uuid.UUID, bytes | None]]:
    """One random kind of tampering, somewhere: what an attacker with write access could do."""
    links = list(links)
    current: dict[uuid.UUID, bytes | None] = {}
    i = rng.randrange(len(links))
    match rng.choice(["edit row", "delete row", "delete link", "swap", "insert", "edit link", "none"]):
        case "edit row":
            current[links[i].ref] = digest("changed")
        case "delete row":
            current[links[i].ref] = None
        case "delete link":
            del links[i]
        case "swap" if i + 1 < len(links) and links[i].chain == links[i + 1].chain:
            links[i], links[i + 1] = links[i + 1], links[i]
        case "insert":
            x = links[i]
            links.insert(i, dataclasses.replace(x, ref=uuid.uuid4(), hash=digest("forged")))
        case "edit link":
            links[i] = dataclasses.replace(links[i], tenant="other")
    return links, current


def test_the_fast_path_finds_exactly_what_the_slow_path_finds() -> None:
    """`feed_rows` checks the common link inline and hands the rest to `feed`: on any tampering the
    two must name the same problems, in the same order."""
    rng = random.Random(11)
    base = (
        audit.extend({}, entries(30))
        + audit.extend({}, entries(20, chain="acme|answers.completed|1"))
        + audit.extend({}, entries(10, chain="beta|answers.completed|0", tenant="beta"))
    )
    found = 0
    for _ in range(300):
        links, current = _tamper(base, rng)
        slow = audit.Verifier()
        for row in rows(links, current):
            slow.feed(row)
        fast = audit.verify(rows(links, current))
        assert fast.problems == slow.finish().problems
        assert (fast.rows, fast.chains, fast.unsealed) == (len(links), 3, slow.report.unsealed)
        found += not fast.ok
    assert found > 200  # the tampering mostly leaves a trace ("none" and no-op swaps do not)
