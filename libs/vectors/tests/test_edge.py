"""What only the embedded store does: persistence in its directory, one open shard per process."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.errors import DimensionMismatch, VectorStoreUnavailable

from .test_store_contract import DIM, doc, unit


async def test_points_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    async with EdgeVectorStore(path) as store:
        await store.ensure(DIM)
        await store.upsert(doc("acme", "d1", 3, version="v2"))
    async with EdgeVectorStore(path) as again:
        assert await again.count("acme", "d1") == 3
        hits = await again.search("acme", unit(1), 1)
        assert hits[0].version == "v2"
        # The reopened shard remembers its dimension.
        with pytest.raises(DimensionMismatch):
            await again.ensure(DIM + 1)
        await again.ensure(DIM)


async def test_the_last_close_releases_the_directory_for_a_new_open(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    first, second = EdgeVectorStore(path), EdgeVectorStore(path)
    await first.ensure(DIM)
    await first.upsert(doc("acme", "d1", 2))
    await first.aclose()
    await first.aclose()  # idempotent
    assert await second.count() == 2  # still open through the second reference
    await second.aclose()
    # Reopening at once works: the new open waits for the old shard to finish closing.
    third = EdgeVectorStore(path)
    assert await third.count() == 2
    await third.aclose()


async def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "shard")
    await store.aclose()
    with pytest.raises(Exception, match="closed"):
        await store.count()


async def test_concurrent_callers_are_served_in_turn(tmp_path: Path) -> None:
    async with EdgeVectorStore(tmp_path / "shard") as store, EdgeVectorStore(tmp_path / "shard") as other:
        await store.ensure(DIM)
        writes = [store.upsert(doc("acme", f"d{i}", 5)) for i in range(10)]
        reads = [other.search("acme", unit(1), 3) for _ in range(10)]
        await asyncio.gather(*writes, *reads)
        assert await other.count("acme") == 50


async def test_a_directory_held_by_another_process_is_reported_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    async with EdgeVectorStore(path) as store:
        await store.ensure(DIM)
    holder = textwrap.dedent(
        f"""
        import sys, qdrant_edge
        shard = qdrant_edge.EdgeShard.load({str(path)!r})
        print("open", flush=True)
        sys.stdin.readline()
        shard.close()
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", holder, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"open"
        store = EdgeVectorStore(path)
        with pytest.raises(VectorStoreUnavailable, match="another process"):
            await store.count()
        with pytest.raises(VectorStoreUnavailable):
            await store.ping()
    finally:
        proc.stdin.write(b"\n")
        await proc.stdin.drain()
        await asyncio.wait_for(proc.wait(), 30)
    # Once the other process lets go, the same store opens (the error was retryable, not fatal).
    assert await store.count() == 0
    await store.aclose()


async def test_a_shard_made_before_hybrid_search_still_serves_the_dense_leg(tmp_path: Path) -> None:
    import qdrant_edge as qe

    from ragbus.vectors.sparse import Bm25Encoder

    # The layout of earlier versions: one unnamed dense vector, no sparse vectors.
    path = tmp_path / "old"
    path.mkdir()
    config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine))
    qe.EdgeShard.create(str(path), config).close()
    async with EdgeVectorStore(path) as store:
        await store.ensure(DIM)
        await store.upsert(doc("acme", "d1", 2))
        assert len(await store.search("acme", unit(1), 5)) == 2
        legs = await store.search_hybrid("acme", unit(1), Bm25Encoder.query("d1 chunk"), 5)
        assert len(legs.dense) == 2
        assert legs.sparse == []
