"""Fixtures of the vector memory tests: every VectorStore adapter that can run here, one store per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.ports import VectorStore

# "server" runs against a real Qdrant when QDRANT_URL names one (CI with Docker, a dev machine).
STORE_KINDS = ["edge", "memory", "server"]

StoreFactory = Callable[[], VectorStore]


@pytest.fixture(params=STORE_KINDS)
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str, qdrant_url: str | None
) -> AsyncIterator[StoreFactory]:
    """Opens stores on this test's own location (same location each call); closes them afterwards."""
    kind: str = request.param
    url = qdrant_url
    if kind == "server" and not url:
        pytest.skip("set QDRANT_URL to run the contract against a Qdrant server")
    opened: list[VectorStore] = []

    def factory() -> VectorStore:
        store: VectorStore
        if kind == "edge":
            store = EdgeVectorStore(tmp_path / "shard", upsert_batch=3)
        elif kind == "memory":
            store = QdrantServerStore(":memory:", collection=unique, upsert_batch=3)
        else:
            assert url is not None
            store = QdrantServerStore(
                url, collection=unique, upsert_batch=3, api_key=os.environ.get("QDRANT_API_KEY")
            )
        opened.append(store)
        return store

    factory.kind = kind  # type: ignore[attr-defined]
    yield factory
    if kind == "server" and opened:
        from qdrant_client import AsyncQdrantClient

        client = AsyncQdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"))
        await client.delete_collection(unique)
        await client.close()
    for store in opened:
        await store.aclose()


@pytest.fixture
def store(open_store: StoreFactory) -> VectorStore:
    return open_store()
