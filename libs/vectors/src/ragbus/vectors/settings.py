"""Settings of the vector memory: where vectors are kept (`QDRANT_*`) and which model makes them
(`RAGBUS_EMBEDDINGS_*`). Both services that use it (embed, orchestrator) nest these, so one set of
environment variables configures the pair.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragbus.common.settings import ragbus_home

MEMORY = ":memory:"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class VectorStoreSettings(BaseSettings):
    """`QDRANT_URL` set: a Qdrant server (or `:memory:`, qdrant-client's local mode, for tests).
    Unset: the embedded Qdrant Edge shard in `path`, which one process at a time may open.
    """

    model_config = SettingsConfigDict(env_prefix="QDRANT_", extra="ignore")

    url: str | None = Field(default=None, description="Qdrant server URL, or `:memory:`; unset = embedded")
    api_key: SecretStr | None = None
    collection: str = Field(default="ragbus_chunks", min_length=1, max_length=255, pattern=r"^[\w.-]+$")
    path: Path | None = Field(default=None, description="embedded shard directory")
    timeout_s: float = Field(default=10.0, gt=0)
    # Server only: HNSW search breadth (higher = better recall, slower). The embedded shard searches
    # exactly (see adapters/qdrant_edge.py), so it ignores this.
    hnsw_ef: int | None = Field(default=None, ge=1)
    upsert_batch: int = Field(default=256, ge=1, description="points per write call")

    def shard_path(self) -> Path:
        """The embedded shard's directory."""
        return (self.path or ragbus_home() / "qdrant-edge" / self.collection).expanduser()

    def derived(self, name: str) -> VectorStoreSettings:
        """Another store beside this one (e.g. the orchestrator's answer cache): collection
        `<collection>__<name>`, and an embedded shard of its own."""
        update: dict[str, object] = {"collection": f"{self.collection}__{name}"}
        if self.path is not None:
            update["path"] = self.path.with_name(f"{self.path.name}__{name}")
        return self.model_copy(update=update)

    def for_embedder(self, embedder: EmbedderSettings) -> VectorStoreSettings:
        """The store for `embedder`'s vectors: a model other than the default gets a collection (and an
        embedded shard) of its own, `<collection>__<model>`, so vectors of two models never mix (two
        models of one dimension would otherwise share a store and rank nonsense). A collection or path
        set explicitly is used as it is."""
        model = embedder.identity()
        if model is None or {"collection", "path"} & self.model_fields_set:
            return self
        slug = re.sub(r"[^\w.-]+", "-", model).strip("-.")[:60]
        digest = hashlib.sha256(model.encode()).hexdigest()[:8]
        return self.model_copy(update={"collection": f"{self.collection}__{slug}-{digest}"})


class EmbedderSettings(BaseSettings):
    """`minilm`: all-MiniLM-L6-v2 from the installed wheel, on CPU, in process.
    `openai`: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, llama.cpp, TEI).
    """

    model_config = SettingsConfigDict(env_prefix="RAGBUS_EMBEDDINGS_", extra="ignore")

    provider: Literal["minilm", "openai"] = "minilm"
    model: str | None = Field(
        default=None,
        description=f"model name; minilm: recorded only (default {MINILM}), openai: required",
    )
    model_path: Path | None = Field(
        default=None, description="minilm: a sentence-transformers directory instead of the wheel's"
    )
    base_url: str | None = Field(default=None, description="openai: e.g. http://127.0.0.1:8080/v1")
    api_key: SecretStr | None = None
    dimensions: int | None = Field(
        default=None, ge=1, description="openai: ask for (and expect) vectors of this size"
    )
    query_onnx: bool = Field(
        default=True,
        description="minilm: embed questions with the model's int8 ONNX export (10 ms instead of 26)",
    )
    batch_size: int = Field(default=32, ge=1, le=2048)
    # minilm: texts per forward pass. Each job of `batch_size` texts is sorted by length and run this
    # many at a time, so a short chunk is not padded to the longest of 32 (SciFact, 2 cores: ~58 texts/s
    # at 8 against ~43 at 32; bench/embed_batch.py).
    forward_batch: int = Field(default=8, ge=1, le=2048, description="minilm: texts per forward pass")
    # minilm: torch's threads (per worker process, or process-wide in process); 0: the cores shared out
    # among the worker processes (torch's default, one per core, for a single one). Fewer leave cores to
    # the rest of a shared machine, at the model's expense: on 2 cores, a single process with one thread
    # embedded 30 texts/s against 54 with two.
    threads: int = Field(default=0, ge=0, le=256, description="minilm: torch threads (0: cores shared out)")
    # minilm: run torch in a worker process of its own rather than on a thread of the services' process,
    # where it waits for the GIL behind every other piece of Python between its operators (see
    # ragbus.vectors.adapters.minilm; bench/ingest.py measures both).
    process: bool = Field(default=True, description="minilm: run the model in a worker process")
    # minilm, with `process`: worker processes running jobs side by side, each with its own copy of the
    # model; 0: two (one on a single core), the cores shared out as their torch threads when `threads` is
    # 0. One process's torch threads wait for each other at every operator, and its cores idle meanwhile:
    # on 2 cores two processes of one thread embedded 10% more chunks a second (ragbus.vectors.adapters.
    # minilm). Each holds 0.65-0.8 GB of its own under a bulk load (torch's buffers; the model is 90 MB).
    processes: int = Field(default=0, ge=0, le=64, description="minilm: worker processes (0: two)")
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0, description="openai: client-side retries before giving up")

    def identity(self) -> str | None:
        """What makes the vectors what they are: None for the default model (all-MiniLM-L6-v2 from its
        wheel), else the model (and its size, where asked for)."""
        if self.provider == "minilm":
            if self.model_path is None:
                return None
            return self.model or str(self.model_path.expanduser().resolve())
        return f"{self.model}@{self.dimensions}" if self.dimensions else self.model
