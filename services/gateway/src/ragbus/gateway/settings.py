"""Gateway settings (env prefix `GATEWAY_`); Kafka, telemetry, logs, retry and trust come from
ServiceSettings."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from ragbus.common.settings import (
    DEFAULT_DATABASE_URL,
    ServiceSettings,
    gateway_schema_for,
    monitor_schema_for,
    ragbus_home,
)

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    # Loopback unless told otherwise: exposing the API is a deployment's decision (compose sets 0.0.0.0).
    host: str = "127.0.0.1"
    # Not 8080: the local chat model server of `ragbus up` listens there.
    port: int = Field(default=8090, ge=0, le=65535)
    # The "models" /v1/models lists and /v1/chat/completions accepts: names for the one stack (the
    # cascade picks the real model per question).
    models: list[str] = Field(default_factory=lambda: ["ragbus"])
    # How long a request waits for its answer (a cascade on the local model can take tens of seconds).
    answer_timeout_s: float = Field(default=120.0, gt=0)
    # Request bodies larger than this are refused with 413 before they are read whole.
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # Per API key: requests per minute on average, and at once (a key's own `rate_per_minute` wins).
    rate_per_minute: int = Field(default=120, ge=1)
    rate_burst: int = Field(default=20, ge=1)
    # A verified key is remembered this long, so a request costs no database round trip; a revoked key
    # stops working within this time. 0: look every key up every time.
    key_cache_s: float = Field(default=10.0, ge=0)
    # Origins allowed to call the API from a browser (CORS); empty: no CORS headers at all.
    cors_origins: list[str] = Field(default_factory=list)
    # The source of the events it publishes (CloudEvents `source`).
    source: str = "ragbus/gateway"

    # The API keys' database (PostgreSQL). `DATABASE_URL` is accepted too, as for the monitor.
    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        validation_alias=AliasChoices("GATEWAY_DATABASE_URL", "DATABASE_URL", "database_url"),
    )
    # The gateway's own schema (its tables and its migrations' record), apart from the monitor's: the
    # one of this RAGBUS_HOME's stack (`ragbus_gateway` for ~/.ragbus), so `ragbus keys` finds it.
    db_schema: str = Field(default_factory=lambda: gateway_schema_for(ragbus_home()), pattern=_IDENT)
    # The monitor's schema in the same database, read (never written) for `GET /v1/requests`: a
    # request's story is the monitor's record. MONITOR_DB_SCHEMA is accepted too, as `ragbus up` and the
    # monitor's own commands name it; unset, the one of this RAGBUS_HOME's stack (`ragbus`).
    monitor_schema: str = Field(
        default_factory=lambda: monitor_schema_for(ragbus_home()),
        pattern=_IDENT,
        validation_alias=AliasChoices("GATEWAY_MONITOR_SCHEMA", "MONITOR_DB_SCHEMA", "monitor_schema"),
    )
    # Jaeger's query service, where `GET /v1/requests/{id}/trace` reads a request's spans when they go
    # over OTLP (`{url}/api/traces/{trace_id}`), e.g. `http://jaeger:16686`. Unset: derived from
    # OTEL_EXPORTER_OTLP_ENDPOINT when that is Jaeger's own OTLP receiver (port 4317 or 4318: the same
    # host, port 16686, as Jaeger all-in-one serves both); `off`: no Jaeger. Without an OTLP endpoint
    # the spans are in the local span file, and the gateway reads them there.
    jaeger_url: str | None = None
    # Where the web app's "Open in Jaeger" link points a browser (`{url}/trace/{trace_id}`): Jaeger's UI
    # as users reach it (compose: the published port), which is not always the address the gateway
    # uses. Unset: the query service's.
    jaeger_ui_url: str | None = None
    migrate_on_startup: bool = True
    pool_max_size: int = Field(default=4, ge=1)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    command_timeout_s: float = Field(default=10.0, gt=0)

    def jaeger(self) -> tuple[str, str] | None:
        """Jaeger's query URL and UI URL, as set or derived (above); None: no Jaeger to read."""
        if self.jaeger_url is not None:
            url = self.jaeger_url.strip()
            if url.lower() in ("", "off", "none"):
                return None
        else:
            url = jaeger_beside(self.telemetry.otlp_endpoint) or ""
            if not url:
                return None
        return url.rstrip("/"), (self.jaeger_ui_url or url).rstrip("/")


# Jaeger all-in-one's OTLP receivers (gRPC, HTTP): an endpoint on one of them is Jaeger itself.
_JAEGER_OTLP_PORTS = frozenset({4317, 4318})


def jaeger_beside(otlp_endpoint: str | None) -> str | None:
    """The query service of the Jaeger an OTLP endpoint names, when it names Jaeger's own receiver
    (`http://jaeger:4318` -> `http://jaeger:16686`). Another port is a collector (which may send the
    spans anywhere, or nowhere a query can reach): None, and GATEWAY_JAEGER_URL says where to look."""
    if not otlp_endpoint:
        return None
    parts = urlsplit(otlp_endpoint if "://" in otlp_endpoint else f"http://{otlp_endpoint}")
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port not in _JAEGER_OTLP_PORTS:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    scheme = "https" if parts.scheme == "https" else "http"
    return f"{scheme}://{host}:16686"
