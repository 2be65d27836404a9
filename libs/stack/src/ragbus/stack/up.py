"""`ragbus up`, `ragbus down`, `ragbus status`: the whole stack on one machine, no Docker.

`up` checks (or starts) PostgreSQL, starts the Tansu broker and the local chat model server (reusing
running ones), then hosts every installed service in one process (`python -m ragbus.stack.serve all`)
and waits until every service says its dependencies answer. With `detach` that process runs in the
background (pid and log under RAGBUS_HOME) and `down` stops everything `up` started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from ragbus.stack.broker import broker_handle, broker_process, local_kafka_overrides
from ragbus.stack.model import model_handle, model_process
from ragbus.stack.postgres import ensure_postgres, postgres_status, redact, stop_postgres
from ragbus.stack.process import HOST, ManagedProcess, NotReady, ProcessSpec, Running, run_argv
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
    )
    return ManagedProcess(spec, home=home)


@dataclass(frozen=True, slots=True)
class Plan:
    detach: bool
    model: bool
    port: int | None  # of the local broker; None: the settings' (RAGBUS_BROKER_PORT)


async def _postgres(settings: StackSettings) -> None:
    pg = await ensure_postgres(settings.database_url, home=settings.home)
    _line("postgres", "ok", f"{redact(pg.url)}  {pg.detail}".rstrip())


async def _broker(settings: StackSettings, port: int | None) -> str:
    """The bootstrap address the services use: an external broker's, or the local one's."""
    if settings.kafka_bootstrap:
        _line("broker", "external", settings.kafka_bootstrap)
        return settings.kafka_bootstrap
    broker = await broker_process(settings.broker, port=port, home=settings.home).start(detach=True)
    _line("broker", "ready", _started(broker))
    return broker.address


async def _model(settings: StackSettings, wanted: bool) -> dict[str, str]:
    """The orchestrator's chat settings: none, an external model's, or the local server's."""
    if not wanted:
        _line("model", "off", "extractive answers only (--no-model)")
        return {"ORCHESTRATOR_CHAT": "false"}
    if settings.chat_base_url:
        _line("model", "external", settings.chat_base_url)
        return {}
    model = await model_process(settings.model, home=settings.home).start(detach=True)
    _line("model", "ready", _started(model))
    return {"ORCHESTRATOR_CHAT_BASE_URL": model.address}


def _kafka_env(bootstrap: str) -> dict[str, str]:
    # Tansu joins groups slowly with Kafka's 10 s session timeout, and answers a waiting fetch only when
    # it times out, so the fetch wait bounds the latency of every hop (ARCHITECTURE.md). A KAFKA_*
    # variable the user set reaches the services as it is.
    local = {f"KAFKA_{name.upper()}": str(value) for name, value in local_kafka_overrides().items()}
    return {"KAFKA_BOOTSTRAP": bootstrap, **local}


async def up(plan: Plan, settings: StackSettings) -> None:
    t0 = time.monotonic()
    click.echo(f"ragbus up (RAGBUS_HOME={settings.home})")
    await _postgres(settings)
    env = _kafka_env(await _broker(settings, plan.port))
    env["MONITOR_DATABASE_URL"] = settings.database_url
    env.update(await _model(settings, plan.model))
    services = services_process(settings.up_health_port, env, home=settings.home)
    if not plan.detach:
        await _foreground(services, settings.up_health_port)
        return
    running = await services.start(detach=True)
    await _print_services(settings.up_health_port)
    click.echo(
        f"stack is up in {time.monotonic() - t0:.1f} s (services pid {running.pid}, log {running.log_file}); "
        f"`ragbus down` stops it"
    )


async def _foreground(services: ManagedProcess, health_port: int) -> None:
    # In the foreground the services log to this terminal until Ctrl-C; broker and model stay up for
    # the next run (`ragbus down` stops them).
    click.echo("  services      starting in the foreground (Ctrl-C stops them)")
    await services.start(detach=False, log_to_terminal=True)
    await _print_services(health_port)
    try:
        await services.wait()
    finally:
        await services.stop()


async def _print_services(health_port: int) -> None:
    body = await _health(health_port)
    # The runner reports its services in pipeline order (ragbus.stack.services).
    for name, deps in body["services"].items():
        _line(name, "ready", "  ".join(f"{d} {v}" for d, v in deps.items()))


def _infra(settings: StackSettings) -> list[ManagedProcess]:
    """The model server and the broker, as their pid files know them (no binary or model needed)."""
    return [
        model_handle(settings.model, port=settings.model.port, home=settings.home),
        broker_handle(settings.broker.port, home=settings.home),
    ]


async def down(settings: StackSettings) -> None:
    click.echo("ragbus down")
    for proc in (services_process(settings.up_health_port, home=settings.home), *_infra(settings)):
        click.echo(f"  {(await proc.stop()).line()}")
    click.echo(f"  {await stop_postgres(settings.database_url, home=settings.home)}")


async def status(settings: StackSettings) -> None:
    click.echo("ragbus status")
    pg = await postgres_status(settings.database_url, home=settings.home)
    _line("postgres", "ok" if pg.up else "down", redact(pg.url), ok=pg.up)
    services = services_process(settings.up_health_port, home=settings.home)
    for proc in (*reversed(_infra(settings)), services):
        click.echo(f"  {(await proc.status()).line()}")
    if services.running_pid() is None:
        return
    try:
        await _print_services(settings.up_health_port)
    except NotReady as exc:
        _line("services", "unhealthy", str(exc), ok=False)
