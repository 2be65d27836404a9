"""Replacing a document as readers see it: a new version split over parts becomes searchable only when
its last part is in, at once, and the old version goes then; never both, never neither. Run against
both vector stores (qdrant-client's :memory: and the embedded Qdrant Edge shard)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsChunked
from ragbus.embed import usecases
from ragbus.embed.usecases import EmbedDeps
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.ports import SearchFilter, VectorStore
from ragbus.vectors.testing import HashingEmbedder

from .test_domain import chunk

EMBEDDER = HashingEmbedder(dim=32)


@pytest.fixture(params=["edge", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s: VectorStore
    if request.param == "edge":
        s = EdgeVectorStore(tmp_path / "shard")
    else:
        s = QdrantServerStore(":memory:", collection=f"versions{uuid.uuid4().hex[:8]}")
    yield s
    await s.aclose()


def parts(version: str, texts: list[str], per_part: int) -> list[Envelope[DocsChunked]]:
    chunks = [chunk("acme", "manual", i, t) for i, t in enumerate(texts)]
    groups = [chunks[i : i + per_part] for i in range(0, len(chunks), per_part)]
    return [
        Envelope.new(
            DocsChunked(
                doc_id="manual",
                version=version,
                chunks=group,
                part=n,
                parts=len(groups),
                total_chunks=len(chunks),
            ),
            source="test",
            tenant="acme",
        )
        for n, group in enumerate(groups)
    ]


async def versions_seen(store: VectorStore) -> set[str]:
    vector = EMBEDDER.vector("manual pump valve")
    return {h.version for h in await store.search("acme", vector, 20)}


async def test_a_new_version_replaces_the_old_at_once_when_its_last_part_is_in(store: VectorStore) -> None:
    deps = EmbedDeps(embedder=EMBEDDER, store=store, bm25=None)
    old = [f"manual pump valve old section {i}" for i in range(4)]
    new = [f"manual pump valve new section {i}" for i in range(6)]
    for event in parts("v1", old, per_part=2):
        await usecases.index_part(deps, event)
    assert await versions_seen(store) == {"v1"}

    first, second, third = parts("v2", new, per_part=2)
    results = [await usecases.index_part(deps, first)]
    assert await versions_seen(store) == {"v1"}  # a third of v2 is in: readers still see v1, whole
    results.append(await usecases.index_part(deps, second))
    assert await versions_seen(store) == {"v1"}
    results.append(await usecases.index_part(deps, third))
    assert await versions_seen(store) == {"v2"}  # v2 complete: published, and v1 removed
    assert [r.removed for r in results] == [0, 0, 4]
    assert await store.count("acme", "manual") == 6

    # A redelivered part changes nothing a reader sees.
    again = await usecases.index_part(deps, second)
    assert (again.upserted, again.unchanged, again.removed) == (0, 2, 0)
    assert await versions_seen(store) == {"v2"}
    assert len(await store.search("acme", EMBEDDER.vector("manual pump valve"), 20)) == 6


async def test_new_readers_hold_for_every_part_once_the_first_part_is_handled(store: VectorStore) -> None:
    deps = EmbedDeps(embedder=EMBEDDER, store=store, bm25=None)
    texts = [f"manual pump valve section {i}" for i in range(6)]

    def regrouped(groups: list[str]) -> list[Envelope[DocsChunked]]:
        return [
            e.model_copy(update={"data": e.data.model_copy(update={"groups": groups})})
            for e in parts("v1", texts, 2)
        ]

    async def readable_by(group: str) -> int:
        hits = await store.search(
            "acme", EMBEDDER.vector("manual pump valve"), 20, SearchFilter(groups=(group,))
        )
        assert {h.version for h in hits} <= {"v1"}
        return len(hits)

    for event in regrouped(["hr"]):
        await usecases.index_part(deps, event)
    assert (await readable_by("hr"), await readable_by("legal")) == (6, 0)
    calls = len(EMBEDDER.calls)

    first, second, third = regrouped(["legal"])
    results = [await usecases.index_part(deps, first)]
    # One part of three handled: every chunk of the document has changed readers, none is hidden.
    assert (await readable_by("hr"), await readable_by("legal")) == (0, 6)
    results += [await usecases.index_part(deps, second), await usecases.index_part(deps, third)]
    assert (await readable_by("hr"), await readable_by("legal")) == (0, 6)
    assert [(r.upserted, r.updated, r.unchanged, r.removed) for r in results] == [(0, 2, 0, 0)] * 3
    assert len(EMBEDDER.calls) == calls


async def test_a_document_in_one_part_is_published_without_counting_the_store(store: VectorStore) -> None:
    counted: list[tuple[object, ...]] = []
    count = store.count

    async def counting(*args: object, **kwargs: object) -> int:
        counted.append(args)
        return await count(*args, **kwargs)  # type: ignore[arg-type]

    store.count = counting  # type: ignore[method-assign]
    deps = EmbedDeps(embedder=EMBEDDER, store=store, bm25=None)
    for version in ("v1", "v2"):
        (whole,) = parts(version, [f"manual pump valve {version} section {i}" for i in range(3)], per_part=3)
        result = await usecases.index_part(deps, whole)
        assert await versions_seen(store) == {version}  # published at once, the older version gone
    assert result.removed == 3
    assert counted == []
    # A document in several parts still asks the store whether its version is whole.
    for event in parts("v3", [f"manual pump valve v3 section {i}" for i in range(4)], per_part=2):
        await usecases.index_part(deps, event)
    assert len(counted) == 2
    assert await versions_seen(store) == {"v3"}


async def test_an_unchanged_resend_of_a_live_version_is_not_published_again(store: VectorStore) -> None:
    published: list[tuple[str, str, str]] = []
    publish = store.publish

    async def recording(tenant: str, doc_id: str, version: str) -> None:
        published.append((tenant, doc_id, version))
        await publish(tenant, doc_id, version)

    store.publish = recording  # type: ignore[method-assign]
    deps = EmbedDeps(embedder=EMBEDDER, store=store, bm25=None)
    (whole,) = parts("v1", [f"manual pump valve section {i}" for i in range(3)], per_part=3)
    await usecases.index_part(deps, whole)
    assert published == [("acme", "manual", "v1")]

    again = await usecases.index_part(deps, whole.model_copy(update={"id": uuid.uuid4()}))

    assert (again.upserted, again.unchanged, again.removed) == (0, 3, 0)
    assert published == [("acme", "manual", "v1")]  # nothing restamped: its points were live already
    assert await versions_seen(store) == {"v1"}


async def index_dying_in(
    store: VectorStore, method: str, deps: EmbedDeps, event: Envelope[DocsChunked]
) -> None:
    """Index the part with the service dying in the store's `method` (a crash between two steps)."""

    async def crash(*args: object) -> None:
        raise RuntimeError(f"the service died in {method}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, method, crash)
        with pytest.raises(RuntimeError, match="died"):
            await usecases.index_part(deps, event)


async def test_a_resend_publishes_a_version_a_crash_left_pending(store: VectorStore) -> None:
    deps = EmbedDeps(embedder=EMBEDDER, store=store, bm25=None)
    (whole,) = parts("v1", [f"manual pump valve section {i}" for i in range(3)], per_part=3)
    await index_dying_in(store, "publish", deps, whole)
    assert await versions_seen(store) == set()  # written, pending: nobody reads it yet

    again = await usecases.index_part(deps, whole)

    assert (again.upserted, again.unchanged) == (0, 3)  # the points are stored as they are...
    assert await versions_seen(store) == {"v1"}  # ...and now searchable


async def test_a_resend_of_an_older_version_a_crash_left_beside_a_newer_one_reads_whole(
    store: VectorStore,
) -> None:
    """v1 live, v2 published but the crash came before v1's points went: both live, readers see v2 (the
    newer stamp). The user then sends v1 again: it is stored as it is and live, so it is not published
    again, but v2 still goes, so readers see v1 alone."""
    deps = EmbedDeps(embedder=EMBEDDER, store=store, bm25=None)
    (v1,) = parts("v1", [f"manual pump valve old section {i}" for i in range(3)], per_part=3)
    (v2,) = parts("v2", [f"manual pump valve new section {i}" for i in range(3)], per_part=3)
    await usecases.index_part(deps, v1)
    await index_dying_in(store, "delete_stale", deps, v2)
    assert await store.count("acme", "manual") == 6

    again = await usecases.index_part(deps, v1.model_copy(update={"id": uuid.uuid4()}))

    assert (again.unchanged, again.removed) == (3, 3)
    assert await versions_seen(store) == {"v1"}
    assert await store.count("acme", "manual") == 3
