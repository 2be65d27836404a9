"""Fixtures of the orchestrator's tests: a small corpus in qdrant-client's `:memory:` store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragbus.orchestrator.testing import index_texts
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.ports import VectorStore
from ragbus.vectors.testing import HashingEmbedder

# The Eiffel Tower in two chunks, and an unrelated document; indexed for tenant `acme` only.
CORPUS = {
    "eiffel": [
        "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the engineering "
        "company of Gustave Eiffel. Construction of the tower was completed in 1889 for the World's Fair.",
        "The tower is 330 metres tall. It was the tallest man-made structure in the world for 41 years. "
        "Locals first criticised its design, but it became a global icon of France.",
    ],
    "bread": [
        "Sourdough bread is leavened by wild yeast and lactic acid bacteria. The starter is fed with flour "
        "and water every day. Fermentation gives the bread its sour taste.",
    ],
}


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder(dim=128)


@pytest.fixture
async def store(embedder: HashingEmbedder, unique: str) -> AsyncIterator[QdrantServerStore]:
    s = QdrantServerStore(":memory:", collection=unique)
    await index_texts(s, embedder, "acme", CORPUS, titles={"eiffel": "Eiffel Tower", "bread": "Sourdough"})
    yield s
    await s.aclose()


@pytest.fixture(params=["edge", "memory"])
async def side_store(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> AsyncIterator[VectorStore]:
    """A store of the orchestrator's own (the answer cache's, conversations'), on each adapter that runs
    here: the embedded Qdrant Edge shard and qdrant-client's local mode."""
    store: VectorStore = (
        EdgeVectorStore(tmp_path / "side")
        if request.param == "edge"
        else QdrantServerStore(":memory:", collection=unique)
    )
    yield store
    await store.aclose()
