"""The environment picks the adapters: what an operator sets is what the services get."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragbus.vectors.adapters.minilm import MiniLMEmbedder
from ragbus.vectors.adapters.openai_embeddings import OpenAIEmbedder
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.factory import open_embedder, open_vector_store
from ragbus.vectors.settings import EmbedderSettings, VectorStoreSettings


async def test_without_a_url_the_store_is_embedded_under_ragbus_home(ragbus_home: Path) -> None:
    store = open_vector_store(VectorStoreSettings())
    assert isinstance(store, EdgeVectorStore)
    assert store.path == ragbus_home / "qdrant-edge" / "ragbus_chunks"
    await store.ensure(4)
    assert (ragbus_home / "qdrant-edge" / "ragbus_chunks").is_dir()
    await store.aclose()


async def test_qdrant_variables_choose_the_server_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_URL", ":memory:")
    monkeypatch.setenv("QDRANT_COLLECTION", "docs_v2")
    monkeypatch.setenv("QDRANT_HNSW_EF", "128")
    store = open_vector_store()
    assert isinstance(store, QdrantServerStore)
    assert (store.collection, store.hnsw_ef, store.local) == ("docs_v2", 128, True)
    await store.aclose()


async def test_an_explicit_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "here"))
    store = open_vector_store()
    assert isinstance(store, EdgeVectorStore)
    assert store.path == tmp_path / "here"
    await store.aclose()


def test_minilm_is_the_default_embedder() -> None:
    e = open_embedder(EmbedderSettings())
    assert isinstance(e, MiniLMEmbedder)
    assert (e.name, e.dim) == ("sentence-transformers/all-MiniLM-L6-v2", 384)
    assert e.process  # the services run torch in a worker process, off their GIL


def test_minilm_can_run_in_the_services_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGBUS_EMBEDDINGS_PROCESS", "false")
    e = open_embedder(EmbedderSettings())
    assert isinstance(e, MiniLMEmbedder)
    assert not e.process


async def test_embeddings_variables_choose_an_openai_compatible_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAGBUS_EMBEDDINGS_PROVIDER", "openai")
    monkeypatch.setenv("RAGBUS_EMBEDDINGS_MODEL", "text-embedding-3-small")
    monkeypatch.setenv("RAGBUS_EMBEDDINGS_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("RAGBUS_EMBEDDINGS_API_KEY", "sk-secret")
    settings = EmbedderSettings()
    assert "sk-secret" not in repr(settings)
    e = open_embedder(settings)
    assert isinstance(e, OpenAIEmbedder)
    assert (e.name, e.dim) == ("text-embedding-3-small", 1536)
    await e.aclose()


def test_openai_needs_a_model_name() -> None:
    with pytest.raises(ValueError, match="RAGBUS_EMBEDDINGS_MODEL"):
        open_embedder(EmbedderSettings(provider="openai"))


def test_another_embedding_model_gets_a_collection_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    default = VectorStoreSettings()
    assert default.for_embedder(EmbedderSettings()) is default  # the default model: ragbus_chunks
    openai = EmbedderSettings(provider="openai", model="text-embedding-3-small", dimensions=384)
    own = default.for_embedder(openai)
    assert own.collection.startswith("ragbus_chunks__text-embedding-3-small-384-")
    assert own.shard_path().name == own.collection
    assert (
        own.for_embedder(openai).collection
        != default.for_embedder(
            EmbedderSettings(provider="openai", model="text-embedding-3-large", dimensions=384)
        ).collection
    )
    # A collection (or path) the operator names is used as it is.
    monkeypatch.setenv("QDRANT_COLLECTION", "pinned")
    assert VectorStoreSettings().for_embedder(openai).collection == "pinned"
