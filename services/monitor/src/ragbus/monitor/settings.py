"""Monitor settings (env prefix `MONITOR_`); Kafka, telemetry, logs and retry come from ServiceSettings."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from ragbus.common.settings import DEFAULT_DATABASE_URL, ServiceSettings


class MonitorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore")

    # Holds credentials (user:password@host), hence SecretStr: it never shows in logs or reprs.
    # `DATABASE_URL` is accepted too, the name docker compose files and PaaS platforms use.
    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        validation_alias=AliasChoices("MONITOR_DATABASE_URL", "DATABASE_URL", "database_url"),
    )
    # Every table, index and view lives in this schema (tests use one schema each). A plain identifier,
    # because it is spliced into SQL (quoted) where PostgreSQL takes no parameters.
    db_schema: str = Field(default="ragbus", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=4, ge=1)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # A statement that runs longer is cancelled and retried (a stuck lock, a server under strain).
    command_timeout_s: float = Field(default=30.0, gt=0)
    # Apply the packaged migrations at startup (under an advisory lock, so replicas may start together).
    # Turn it off where a deployment step runs them with a more privileged role.
    migrate_on_startup: bool = True
    # Records are consumed in batches and written in one transaction each. A batch is whatever the
    # consumer has fetched, up to this many; it waits at most `batch_timeout_ms` for the first record,
    # never to fill a batch, so a quiet stream is recorded as fast as with one record at a time.
    batch_max_records: int = Field(default=500, ge=1)
    batch_timeout_ms: int = Field(default=100, ge=1)
    # The monitor is off the request path, so it polls the broker less often than the services a user
    # waits on (`KAFKA_FETCH_MAX_WAIT_MS`): it reads every topic, and on Tansu, which answers an idle
    # fetch only when the wait is over, each poll costs both sides CPU. Rows land at most this late.
    fetch_max_wait_ms: int = Field(default=250, ge=1)
    # Tamper evidence (docs/audit.md): every stored row is linked into a hash chain, and the chains'
    # heads are signed with this key every `audit_checkpoint_s`. Without a key the chains are still
    # written and checked, but nothing is signed, so a chain recomputed from some row on goes unseen.
    # `audit_chain` off is for the benchmark's baseline only: `ragbus audit verify` then finds rows on
    # no chain.
    audit_chain: bool = True
    audit_key: SecretStr | None = None
    # Or a file holding it (`ragbus up` keeps one in $RAGBUS_HOME/audit.key); MONITOR_AUDIT_KEY wins.
    audit_key_file: Path | None = None
    audit_checkpoint_s: float = Field(default=10.0, gt=0)
    # Tenants whose events are stored with personal data redacted (`*`: every tenant): emails, phones,
    # cards, IBANs, SSNs, IPs, dates of birth, addresses and cued names in questions, answers, texts,
    # comments and quotes become `[REDACTED:<KIND>]` before the row is written, so the record never holds
    # them (ragbus.shields.pii; the events on the bus are unchanged).
    redact_pii: list[str] = Field(default_factory=list)
    # Retention (`ragbus audit purge`): how long events are kept, by tenant and by event type, e.g.
    # {"*": "365d", "acme": "90d", "acme/answers.completed": "30d", "*/answers.delta": "7d"}; the most
    # specific rule wins. Empty: kept forever.
    retention: dict[str, str] = Field(default_factory=dict)
    # The monitor applies the retention policy itself this often (0: never; then run `ragbus audit purge`
    # from cron). It needs a role that may delete: a writer-only role (`ragbus audit grant`) cannot,
    # and each run logs why. Replicas may all run it: a row is purged, and its erasure recorded, once.
    purge_interval_s: float = Field(default=3600.0, ge=0)

    @property
    def audit_signing_key(self) -> bytes | None:
        """The key checkpoints and erasures are signed with, if any."""
        if self.audit_key is not None:
            return self.audit_key.get_secret_value().encode()
        if self.audit_key_file is not None:
            return self.audit_key_file.read_bytes().strip() or None
        return None

    @model_validator(mode="after")
    def _no_empty_key(self) -> MonitorSettings:
        # `MONITOR_AUDIT_KEY=` (compose's default) means no key, not the empty one.
        if self.audit_key is not None and not self.audit_key.get_secret_value():
            self.audit_key = None
        return self

    @model_validator(mode="after")
    def _pool_sizes(self) -> MonitorSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self
