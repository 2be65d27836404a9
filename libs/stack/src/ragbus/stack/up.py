"""`ragbus up`, `ragbus down`, `ragbus status`: the whole stack on one machine, no Docker.

`up` checks (or starts) PostgreSQL, starts the Tansu broker and the local chat model server (reusing
running ones), then hosts every installed service in one process (`python -m ragbus.stack.serve all`)
and waits until every service says its dependencies answer. With `detach` that process runs in the
background (pid and log under RAGBUS_HOME) and `down` stops everything `up` started.

The local broker keeps its log in memory. When `up` starts it afresh (not one already running), whatever
was on its last log is gone: once the services are up, `up` asks the monitor's record for what users
submitted in the last 24 h that has no outcome, publishes it again and says so (`ragbus journal`).

With KAFKA_BOOTSTRAP set, `up` starts no broker and checks first that one answers there. A failed `up`
stops what it started itself (services, model server, broker), never what was running before it.
Everything a stack owns is named by its RAGBUS_HOME and ports (RAGBUS_BROKER_PORT, RAGBUS_MODEL_PORT,
RAGBUS_HEALTH_PORT, RAGBUS_GATEWAY_PORT), and its monitor and gateway write to schemas of their own
(`StackSettings.monitor_schema`, `.gateway_schema`), so a second stack runs beside the first and
`status` / `down` of one never touch the other.

The gateway (the OpenAI-compatible HTTP API and the web app) is one of the hosted services; its port is
the stack's RAGBUS_GATEWAY_PORT (8090), on 127.0.0.1, and `up` and `status` print its URL.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from ragbus.client.plugins import plugged_in
from ragbus.common import trust
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics
from ragbus.stack.broker import (
    backlog,
    broker_handle,
    broker_process,
    local_kafka_overrides,
    local_kafka_settings,
    ping_kafka,
)
from ragbus.stack.model import model_handle, model_process
from ragbus.stack.postgres import ensure_postgres, postgres_status, redact, stop_postgres
from ragbus.stack.process import (
    HOST,
    LocalInfraError,
    ManagedProcess,
    NotReady,
    ProcessSpec,
    Running,
    port_in_use,
    run_argv,
)
from ragbus.stack.settings import StackSettings


def _line(name: str, state: str, detail: str = "", *, ok: bool = True) -> None:
    click.echo(f"  {name:<13}" + click.style(f"{state:<9}", fg="green" if ok else "red") + detail)


def _started(running: Running) -> str:
    how = "(already running)" if running.reused else f"({running.ready_after_s:.1f} s)"
    return f"{running.address}  pid {running.pid}  {how}"


async def _health(port: int, timeout_s: float = 5.0) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        try:
            reply = await http.get(f"http://{HOST}:{port}/healthz")
        except httpx.HTTPError as exc:
            raise NotReady(f"no health endpoint on port {port}: {exc or type(exc).__name__}") from None
    body: dict[str, Any] = reply.json()
    if reply.status_code != 200:
        down = {
            f"{s}.{d}": v
            for s, deps in body.get("services", {}).items()
            for d, v in deps.items()
            if v != "ok"
        }
        raise NotReady(f"not healthy yet: {down}")
    return body


def services_process(
    port: int, env: dict[str, str] | None = None, *, home: Path | None = None
) -> ManagedProcess:
    """Every installed service in one process, with its /healthz on `port`."""

    async def probe(address: str) -> None:
        await _health(port)

    spec = ProcessSpec(
        "services",
        run_argv("ragbus.stack.serve", ["all", "--health-port", str(port)]),
        f"http://{HOST}:{port}/healthz",
        probe,
        port=port,
        env=env or {},
        ready_timeout_s=180.0,  # MiniLM loads and every service's consumer group joins
        stop_grace_s=20.0,
        stop_hint="ragbus down",
        port_hint="RAGBUS_HEALTH_PORT",
    )
    return ManagedProcess(spec, home=home)


@dataclass(frozen=True, slots=True)
class Plan:
    detach: bool
    model: bool
    port: int | None  # of the local broker; None: the settings' (RAGBUS_BROKER_PORT)


async def _postgres(settings: StackSettings) -> None:
    pg = await ensure_postgres(settings.database_url, home=settings.home)
    _line("postgres", "ok", f"{redact(pg.url)}  schema {settings.monitor_schema}  {pg.detail}".rstrip())


async def _external_broker(settings: StackSettings, bootstrap: str) -> None:
    """Check that the broker KAFKA_BOOTSTRAP names answers, before anything is started for it."""
    try:
        await ping_kafka(bootstrap, kafka=KafkaSettings())
    except NotReady as exc:
        raise LocalInfraError(
            f"no Kafka broker answers at KAFKA_BOOTSTRAP={bootstrap} ({exc}); start it, or unset "
            f"KAFKA_BOOTSTRAP and `ragbus up` starts its own on port {settings.broker.port}"
        ) from None


async def _broker(
    settings: StackSettings, port: int | None, started: list[ManagedProcess]
) -> tuple[str, bool]:
    """The bootstrap address the services use (an external broker's, or the local one's), and whether
    it is a local broker started just now, with an empty log."""
    if settings.kafka_bootstrap:
        _line("broker", "external", settings.kafka_bootstrap)
        return settings.kafka_bootstrap, False
    proc = broker_process(settings.broker, port=port, home=settings.home)
    if (await proc.status()).state == "stopped":
        await _stop_services_of_lost_log(settings)
    broker = await proc.start(detach=True)
    if not broker.reused:
        started.append(proc)
    _line("broker", "ready", _started(broker))
    return broker.address, not broker.reused


async def _stop_services_of_lost_log(settings: StackSettings) -> None:
    """Services still running from before the broker died are stopped before a new broker starts (and
    started again after it). Their consumers hold positions in the lost log: left running they would
    commit them to the new broker's groups, so their successors would skip the new log's first records,
    and Tansu answers a fetch past a partition's end with no records (not Kafka's OFFSET_OUT_OF_RANGE),
    so they would wait there, missing every new record until the new log grew past them."""
    services = services_process(settings.up_health_port, home=settings.home)
    if (await services.status()).state == "stopped":
        return
    # A short grace: with the broker gone there is nothing to commit or leave, and a graceful stop would
    # spend its whole grace retrying the dead broker.
    stopped = await services.stop(grace_s=3.0)
    _line("services", "stopped", f"pid {stopped.pid} was consuming the lost log; they start again below")


async def _redrive(settings: StackSettings, bootstrap: str) -> None:
    """After a fresh local broker: publish again what users submitted that has no outcome on record."""
    hook = plugged_in("ragbus.journal").get("redrive")
    if hook is None:
        _line("journal", "off", "ragbus-monitor is not installed: unfinished work is not re-driven")
        return
    try:
        said = await hook.load()(
            settings.database_url, settings.monitor_schema, local_kafka_settings(bootstrap)
        )
    except Exception as exc:  # noqa: BLE001 - the stack is up; say what failed and how to retry
        _line("journal", "failed", f"{type(exc).__name__}: {exc}; retry: `ragbus journal redrive`", ok=False)
        return
    _line("journal", "ok", said)


async def _model(settings: StackSettings, wanted: bool, started: list[ManagedProcess]) -> dict[str, str]:
    """The orchestrator's chat settings: none, an external model's, or the local server's."""
    if not wanted:
        _line("model", "off", "extractive answers only (--no-model)")
        return {"ORCHESTRATOR_CHAT": "false"}
    if settings.chat_base_url:
        _line("model", "external", settings.chat_base_url)
        return {}
    proc = model_process(settings.model, home=settings.home)
    model = await proc.start(detach=True)
    if not model.reused:
        started.append(proc)
    _line("model", "ready", _started(model))
    return {"ORCHESTRATOR_CHAT_BASE_URL": model.address}


def _kafka_env(bootstrap: str) -> dict[str, str]:
    # Tansu joins groups slowly with Kafka's 10 s session timeout, and answers a waiting fetch only when
    # it times out, so the fetch wait bounds the latency of every hop (ARCHITECTURE.md). A KAFKA_*
    # variable the user set reaches the services as it is.
    local = {f"KAFKA_{name.upper()}": str(value) for name, value in local_kafka_overrides().items()}
    return {"KAFKA_BOOTSTRAP": bootstrap, **local}


def services_env(settings: StackSettings, cwd: Path) -> dict[str, str]:
    """What `up` tells the services beyond Kafka: this stack's home, database and schema, and the
    files ingest may read (the directory `up` was started from, unless INGEST_ALLOWED_ROOTS says
    otherwise; never the home, which ingest denies by default)."""
    env = {
        "RAGBUS_HOME": str(settings.home),
        "MONITOR_DATABASE_URL": settings.database_url,
        "MONITOR_DB_SCHEMA": settings.monitor_schema,
        # The gateway: this stack's port and keys, and the monitor's record it reads requests from.
        "GATEWAY_PORT": str(settings.gateway_port),
        "GATEWAY_DATABASE_URL": settings.database_url,
        "GATEWAY_DB_SCHEMA": settings.gateway_schema,
        "GATEWAY_MONITOR_SCHEMA": settings.monitor_schema,
    }
    if not os.environ.get("MONITOR_AUDIT_KEY") and not os.environ.get("MONITOR_AUDIT_KEY_FILE"):
        # The monitor signs its audit checkpoints and erasures with a key of this stack's own.
        env["MONITOR_AUDIT_KEY_FILE"] = str(audit_key_file(settings))
    if not os.environ.get("INGEST_ALLOWED_ROOTS"):
        env["INGEST_ALLOWED_ROOTS"] = str(cwd)
    if not os.environ.get("RAGBUS_TRUST_MODE"):
        # Every record signed, and checked against $RAGBUS_HOME/trust (ragbus.common.trust); the CLI
        # on this machine signs as the operator. RAGBUS_TRUST_MODE=off opens the bus to any producer.
        env["RAGBUS_TRUST_MODE"] = "enforce"
        env["RAGBUS_TRUST_DIR"] = str(trust_dir(settings))
    return env


def audit_key_file(settings: StackSettings) -> Path:
    """$RAGBUS_HOME/audit.key: made once (32 random bytes, hex, owner-only), kept across restarts; the
    record's signatures are only as good as this file's secrecy."""
    path = settings.home / "audit.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path


def trust_dir(settings: StackSettings) -> Path:
    return Path(os.environ.get("RAGBUS_TRUST_DIR") or settings.home / "trust")


def _trust(env: dict[str, str]) -> None:
    mode = env.get("RAGBUS_TRUST_MODE") or os.environ.get("RAGBUS_TRUST_MODE", "")
    if mode != "enforce":
        _line("trust", "off", "any producer may write any topic for any tenant (RAGBUS_TRUST_MODE)")
        return
    if "RAGBUS_TRUST_DIR" not in env:  # the user's own trust directory: theirs to manage
        _line("trust", "on", f"records signed and checked ({os.environ.get('RAGBUS_TRUST_DIR')})")
        return
    directory = Path(env["RAGBUS_TRUST_DIR"])
    made = trust.init(directory)
    what = f"keys made for {', '.join(made)}" if made else "keys kept"
    _line("trust", "on", f"records signed and checked, {directory} ({what}); apps: `ragbus trust add`")


def _print_files(settings: StackSettings, env: dict[str, str]) -> None:
    roots = env.get("INGEST_ALLOWED_ROOTS") or os.environ.get("INGEST_ALLOWED_ROOTS", "")
    _line("files", "readable", f"under {roots} (INGEST_ALLOWED_ROOTS), never under {settings.home}")


async def _stop_started(started: list[ManagedProcess]) -> None:
    """After a failed `up`: stop what it started, newest first (what ran before it keeps running)."""
    for proc in reversed(started):
        stopped = await proc.stop(grace_s=5.0)
        if stopped.pid is not None:
            _line(proc.name, "stopped", f"pid {stopped.pid}, started by this failed `ragbus up`", ok=False)


async def up(plan: Plan, settings: StackSettings) -> None:
    t0 = time.monotonic()
    click.echo(f"ragbus up (RAGBUS_HOME={settings.home})")
    if settings.kafka_bootstrap:
        await _external_broker(settings, settings.kafka_bootstrap)  # before anything starts for it
    started: list[ManagedProcess] = []
    try:
        await _postgres(settings)
        bootstrap, fresh = await _broker(settings, plan.port, started)
        env = _kafka_env(bootstrap)
        env.update(services_env(settings, Path.cwd()))
        _print_files(settings, env)
        _trust(env)
        env.update(await _model(settings, plan.model, started))
        services = services_process(settings.up_health_port, env, home=settings.home)
        await _check_gateway_port(settings, services)
        if plan.detach:
            running = await services.start(detach=True)
        else:
            # In the foreground the services log to this terminal until Ctrl-C; broker and model stay
            # up for the next run (`ragbus down` stops them).
            click.echo("  services      starting in the foreground (Ctrl-C stops them)")
            running = await services.start(detach=False, log_to_terminal=True)
    except BaseException:  # an error, or Ctrl-C while starting
        await _stop_started(started)
        raise
    if not plan.detach:
        await _foreground(services, settings, fresh, bootstrap)
        return
    await _print_services(settings)
    if fresh:
        await _redrive(settings, bootstrap)
    click.echo(
        f"stack is up in {time.monotonic() - t0:.1f} s (services pid {running.pid}, log {running.log_file}); "
        f"`ragbus down` stops it"
    )


async def _foreground(services: ManagedProcess, settings: StackSettings, fresh: bool, bootstrap: str) -> None:
    try:
        await _print_services(settings)
        if fresh:
            await _redrive(settings, bootstrap)
        await services.wait()
    finally:
        await services.stop()


async def _print_services(settings: StackSettings) -> None:
    body = await _health(settings.up_health_port)
    # The runner reports its services in pipeline order (ragbus.stack.services).
    for name, deps in body["services"].items():
        _line(name, "ready", "  ".join(f"{d} {v}" for d, v in deps.items()))
    if "gateway" in body["services"]:
        url = settings.gateway_url
        _line("web", "ready", f"{url}/  (the web app; API {url}/v1, docs {url}/docs; `ragbus keys create`)")


async def _check_gateway_port(settings: StackSettings, services: ManagedProcess) -> None:
    """Before the services start (not when running ones are reused): the gateway's port must be free,
    said in one line rather than as a service that failed to start, with the variable that moves it."""
    if (await services.status()).state != "stopped" or not port_in_use(settings.gateway_port):
        return
    raise LocalInfraError(
        f"gateway: port {settings.gateway_port} on {HOST} is already in use by another process; stop it "
        "or choose another port (RAGBUS_GATEWAY_PORT)"
    )


def _infra(settings: StackSettings) -> list[ManagedProcess]:
    """The model server and the broker, as their pid files know them (no binary or model needed)."""
    return [
        model_handle(settings.model, port=settings.model.port, home=settings.home),
        broker_handle(settings.broker.port, home=settings.home),
    ]


async def down(settings: StackSettings) -> None:
    click.echo("ragbus down")
    model, broker = _infra(settings)
    for proc in (services_process(settings.up_health_port, home=settings.home), model):
        click.echo(f"  {(await proc.stop()).line()}")
    await _warn_of_backlog(broker)  # the services are stopped: what they left is final
    click.echo(f"  {(await broker.stop()).line()}")
    click.echo(f"  {await stop_postgres(settings.database_url, home=settings.home)}")


async def _warn_of_backlog(broker: ManagedProcess) -> None:
    """Say what the in-memory broker still holds that no service has processed: it goes with the broker,
    and the next `up` re-drives the submissions among it from the monitor's record."""
    found = await broker.status()
    if found.state != "running" or found.address is None:
        return
    try:
        queued = await backlog(found.address, Topics(KafkaSettings().topic_prefix))
    except Exception as exc:  # noqa: BLE001 - a warning must not keep the stack from stopping
        click.echo(f"  broker: could not check for queued events ({type(exc).__name__}: {exc})")
        return
    if not queued:
        return
    total = sum(b.events for b in queued)
    shown = ", ".join(b.text() for b in queued[:4]) + (
        f" and {len(queued) - 4} more" if len(queued) > 4 else ""
    )
    click.echo(
        f"  broker: {total} queued event{'' if total == 1 else 's'} no service has processed go with the "
        f"broker (it keeps them in memory only): {shown}; the next `ragbus up` re-drives the submissions "
        "among them from the monitor's record (`ragbus journal`)"
    )


async def status(settings: StackSettings) -> None:
    click.echo("ragbus status")
    pg = await postgres_status(settings.database_url, home=settings.home)
    _line(
        "postgres", "ok" if pg.up else "down", f"{redact(pg.url)}  schema {settings.monitor_schema}", ok=pg.up
    )
    services = services_process(settings.up_health_port, home=settings.home)
    for proc in (*reversed(_infra(settings)), services):
        click.echo(f"  {(await proc.status()).line()}")
    if services.running_pid() is None:
        return
    try:
        await _print_services(settings)
    except NotReady as exc:
        _line("services", "unhealthy", str(exc), ok=False)
