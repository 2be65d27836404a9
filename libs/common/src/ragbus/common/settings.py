"""Settings base classes (pydantic-settings).

Shared infrastructure settings read their own environment, the same for every service:
`KAFKA_*` for the bus, `OTEL_*` / `RAGBUS_TELEMETRY_*` for traces, `RAGBUS_LOG_*` for logs, and
`RAGBUS_RETRY_*` for the retry policy. Each service adds its own settings under its own prefix
(`INGEST_`, `EMBED_`, `ORCHESTRATOR_`, `GUARD_`, `MONITOR_`). Secrets are `SecretStr`, never logged.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragbus.common.trust import OPERATOR, TRUST_FILE, TrustSettings

# The one default database: the PostgreSQL of a `python-svc`-style machine (trust auth on loopback).
# The monitor, `ragbus up`, the tests and the benchmarks all fall back to it; DATABASE_URL overrides it.
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def database_url() -> str:
    """DATABASE_URL, else the default (the monitor's own MONITOR_DATABASE_URL is read by its settings)."""
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def local_bootstrap() -> str:
    """The local broker of `ragbus up` (127.0.0.1, `RAGBUS_BROKER_PORT`, else 9092): where clients and
    services connect when KAFKA_BOOTSTRAP names no other, so a stack on another port needs no more."""
    return f"127.0.0.1:{os.environ.get('RAGBUS_BROKER_PORT', '').strip() or 9092}"


def ragbus_home() -> Path:
    """Where the embedded stack keeps its state (span file, vector store, pid files)."""
    return Path(os.environ.get("RAGBUS_HOME", Path.home() / ".ragbus")).expanduser()


DEFAULT_MONITOR_SCHEMA = "ragbus"  # the monitor's own default (MonitorSettings.db_schema)


def monitor_schema_for(home: Path) -> str:
    """The monitor's schema for the stack of `home`: `ragbus` for the default ~/.ragbus, so the usual
    single stack keeps its record where it always was; for any other home a name of its own, stable
    across restarts (derived from the home's path), so two stacks sharing one PostgreSQL never write
    into one audit log: `ragbus_<home's name>_<8 hex digits of its path's hash>`."""
    home = home.expanduser().resolve()
    if home == (Path.home() / ".ragbus").resolve():
        return DEFAULT_MONITOR_SCHEMA
    name = re.sub(r"[^a-z0-9]+", "_", home.name.lower()).strip("_")[:24]
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:8]
    return "_".join(part for part in ("ragbus", name, digest) if part)


def gateway_schema_for(home: Path) -> str:
    """The gateway's schema (its API keys, its documents' states) for the stack of `home`: the
    monitor's with `_gateway` after it (`ragbus_gateway` for ~/.ragbus), so `ragbus keys create` beside
    a second stack writes to that stack's keys."""
    return f"{monitor_schema_for(home)}_gateway"


def client_trust_settings() -> TrustSettings:
    """A client's trust settings: RAGBUS_TRUST_* as set; when unset and `ragbus up` made keys in this
    RAGBUS_HOME, its operator's (so the CLI beside a stack signs what it submits with no setup)."""
    settings = TrustSettings()
    if settings.enforced or "RAGBUS_TRUST_MODE" in os.environ:
        return settings
    directory = settings.dir or ragbus_home() / "trust"
    key = settings.key_file or directory / f"{settings.principal or OPERATOR}.key"
    if key.exists() and (directory / TRUST_FILE).exists():
        return settings.model_copy(update={"mode": "enforce", "dir": directory})
    return settings


class KafkaSettings(BaseSettings):
    """The bus. Defaults suit Apache Kafka; the embedded stack (Tansu) shortens the group timeouts."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap: str = Field(
        default_factory=local_bootstrap,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP_SERVERS", "bootstrap"),
    )
    topic_prefix: str = Field(default="", description="namespace for every topic and consumer group")
    # Partitions of the topics ragbus creates itself (local broker, `ragbus topics create`, tests): how
    # many instances of a service can share a topic, and how a tenant's bulk load (keyed to
    # DOC_KEY_SHARDS partitions) leaves the others free: another tenant shares one of its partitions
    # with odds of about DOC_KEY_SHARDS / partitions (a quota bounds what it then waits behind). The
    # local broker's cost grows with them: Tansu spends ~0.1 ms of CPU per partition in every fetch.
    partitions: int = Field(default=8, ge=1)
    # Partitions of the `.dlq` topics ragbus creates: dead letters are rare, kept for an operator
    # (`ragbus dlq`) and the monitor, never worked on by a scaled-out group, and one partition keeps
    # them in the order they failed. Every partition a consumer reads costs each of its fetches:
    # the monitor and every client read the `.dlq` topics, so at 8 they were 24 of a `ragbus ingest`
    # client's 40 partitions and half of the monitor's 208 (bench/idle.py: an idle ingest + embed with
    # that client used 0.036 cores against 0.042 at 8, medians of 2).
    dlq_partitions: int = Field(default=1, ge=1)
    # Kafka refuses session timeouts under group.min.session.timeout.ms (6 s by default); Tansu joins
    # slowly with 10 s, so `ragbus up` and the tests use 2000 / 500.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    # How often a concurrent consumer (`Service.subscriber(concurrent=True)`) commits while it works:
    # what finishes meanwhile goes in one request (a stop or a rebalance commits at once; a crash
    # re-reads at most this much work, which the idempotent handlers absorb). 0 commits after every
    # record. Kafka's own auto-commit interval is 5 s. bench/ingest.py (600 abstracts, 2 runs each): the
    # services, ingest worker and broker spent 10.4 ms of CPU a chunk against 11.2 with 0.
    commit_interval_ms: int = Field(default=500, ge=0)
    # Tansu does not answer a waiting fetch early: this bounds the latency of every hop there.
    # On Kafka it only changes how often an idle consumer polls.
    fetch_max_wait_ms: int = 25
    # The document topics' consumers (`bulk` subscriptions: docs.submitted, docs.deleted, docs.chunked)
    # and a documents-only client's replies: documents are throughput, not latency. Kafka's own default.
    # On Tansu, consumers fetching every 25 ms cost it and the services about a third of a core
    # (bench/ingest.py, 600 abstracts: 64.8 s at 25 ms, 41.6 s at 100); an idle ingest + embed with a
    # `ragbus ingest` client used 0.096 cores at 100 ms, 0.041 at 500, and a one-document ingest took a
    # median 124 ms at 100, 242 ms at 500. The whole SciFact corpus (bench/ingest.py, median of 2 runs
    # at 100, of 3 at 500): the broker's CPU a chunk 7.8 ms, 1.7; the services' 9.5, 4.6. A waiting
    # consumer polls once per wait, and Tansu's fetch costs more as its log grows. On Kafka it only sets
    # how often an idle consumer polls.
    bulk_fetch_max_wait_ms: int = 500
    metadata_max_age_ms: int = 300_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 40_000
    max_request_size: int = 1_048_576
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    def group_id(self, service: str) -> str:
        return f"{self.topic_prefix}ragbus-{service}"


class TelemetrySettings(BaseSettings):
    """Traces: OTLP when an endpoint is set, else spans appended to a local JSON-lines file."""

    model_config = SettingsConfigDict(env_prefix="RAGBUS_TELEMETRY_", extra="ignore")

    enabled: bool = True
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "RAGBUS_TELEMETRY_OTLP_ENDPOINT"),
    )
    span_file: Path = Field(default_factory=lambda: ragbus_home() / "spans.jsonl")
    # The span file is rotated past this size: the last full file is kept beside it as `spans.jsonl.1`,
    # so the spans on disk stay under twice this, and the newest traces are always there.
    span_file_max_mb: float = Field(default=64.0, gt=0)


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGBUS_LOG_", extra="ignore")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["console", "json"] = "console"


class RetrySettings(BaseSettings):
    """How the shared middleware retries (see ragbus.common.errors)."""

    model_config = SettingsConfigDict(env_prefix="RAGBUS_RETRY_", extra="ignore")

    initial_backoff_s: float = 0.2
    max_backoff_s: float = 30.0
    # Unclassified errors (likely bugs) are dead-lettered after this many attempts.
    max_attempts_unknown: int = 3


class ServiceSettings(BaseSettings):
    """Base of each service's settings; subclasses set `env_prefix` and add their own fields."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    trust: TrustSettings = Field(default_factory=TrustSettings)
    # Messages a concurrent subscription (`Service.subscriber(..., concurrent=True)`: the orchestrator's
    # questions, the ingest's and embed's documents) works on at once, from one consumer, in order per
    # key (a conversation, a document): a slow message (a model call) holds up its own key only
    # (ragbus.common.keyed). Read with the service's prefix (ORCHESTRATOR_WORKERS).
    workers: int = Field(default=1, ge=1, le=64)
    # Of those, at most this many from one partition (default: all): a tenant's bulk load is keyed to a
    # few partitions (events.DOC_KEY_SHARDS), so a cap leaves slots free for other tenants' messages.
    partition_workers: int | None = Field(default=None, ge=1, le=64)

    def with_kafka(self, **changes: Any) -> Any:
        """A copy with some Kafka settings changed (tests and the runner use it)."""
        return self.model_copy(update={"kafka": self.kafka.model_copy(update=changes)})
