"""`ragbus up`, `ragbus down`, `ragbus status`: the whole stack on one machine, no Docker.

`up` checks (or starts) PostgreSQL, starts the Tansu broker and the local chat model server (reusing
running ones), then hosts the five services in one process (`python -m ragbus.stack.serve all`) and
waits until every service says its dependencies answer. With `--detach` that process runs in the
background (pid and log under RAGBUS_HOME) and `ragbus down` stops everything `up` started.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import click
import httpx

from ragbus.common.settings import ragbus_home
from ragbus.stack.local import (
    LOCAL_KAFKA,
    BrokerSettings,
    broker_process,
    ensure_postgres,
    model_process,
    postgres_status,
    redact,
    stop_postgres,
)
from ragbus.stack.process import HOST, LocalInfraError, ManagedProcess, NotReady, ProcessSpec, run_argv
from ragbus.stack.serve import SERVICES

HEALTH_PORT = int(os.environ.get("RAGBUS_HEALTH_PORT", "8079"))
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _line(name: str, state: str, detail: str = "", *, ok: bool = True) -> None:
    click.echo(f"  {name:<13}" + click.style(f"{state:<9}", fg="green" if ok else "red") + detail)


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


def services_process(port: int = HEALTH_PORT, env: dict[str, str] | None = None) -> ManagedProcess:
    async def probe(address: str) -> None:
        await _health(port)

    spec = ProcessSpec(
        "services",
        run_argv("ragbus.stack.serve", ["all", "--health-port", str(port)]),
        f"http://{HOST}:{port}/healthz",
        probe,
        port=port,
        env=env or {},
        ready_timeout_s=180.0,  # MiniLM loads and five consumer groups join
        stop_grace_s=20.0,
    )
    return ManagedProcess(spec)


@dataclass
class Plan:
    detach: bool
    model: bool
    port: int


async def _up(plan: Plan) -> None:
    t0 = time.monotonic()
    click.echo(f"ragbus up (RAGBUS_HOME={ragbus_home()})")
    database_url = (
        os.environ.get("MONITOR_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    )
    pg = await ensure_postgres(database_url)
    _line("postgres", "ok", f"{redact(pg.url)}  {pg.detail}".rstrip())

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if bootstrap:
        _line("broker", "external", bootstrap)
    else:
        broker = await broker_process(BrokerSettings(), port=plan.port).start(detach=True)
        bootstrap = broker.address
        _line(
            "broker",
            "ready",
            f"{broker.address}  pid {broker.pid}  "
            f"{'(already running)' if broker.reused else f'({broker.ready_after_s:.1f} s)'}",
        )

    env = {"KAFKA_BOOTSTRAP": bootstrap, "MONITOR_DATABASE_URL": database_url}
    # Tansu joins groups slowly with Kafka's 10 s session timeout, and answers a waiting fetch only when
    # it times out, so the fetch wait bounds the latency of every hop (ARCHITECTURE.md).
    for name, value in LOCAL_KAFKA.items():
        var = f"KAFKA_{name.upper()}"
        env[var] = os.environ.get(var, str(value))
    if not plan.model:
        env["ORCHESTRATOR_CHAT"] = "false"
        _line("model", "off", "extractive answers only (--no-model)")
    elif os.environ.get("ORCHESTRATOR_CHAT_BASE_URL"):
        _line("model", "external", os.environ["ORCHESTRATOR_CHAT_BASE_URL"])
    else:
        model = await model_process().start(detach=True)
        env["ORCHESTRATOR_CHAT_BASE_URL"] = model.address
        _line(
            "model",
            "ready",
            f"{model.address}  pid {model.pid}  "
            f"{'(already running)' if model.reused else f'({model.ready_after_s:.1f} s)'}",
        )

    services = services_process(env=env)
    if not plan.detach:
        # In the foreground the services log to this terminal until Ctrl-C; broker and model stay up
        # for the next run (`ragbus down` stops them).
        click.echo("  services      starting in the foreground (Ctrl-C stops them)")
        await services.start(detach=False, log_to_terminal=True)
        await _print_services()
        try:
            await services.wait()
        finally:
            await services.stop()
        return
    running = await services.start(detach=True)
    await _print_services()
    click.echo(
        f"stack is up in {time.monotonic() - t0:.1f} s (services pid {running.pid}, log {running.log_file}); "
        f"`ragbus down` stops it"
    )


async def _print_services() -> None:
    body = await _health(HEALTH_PORT)
    for name in SERVICES:
        deps = body["services"].get(name, {})
        _line(name, "ready", "  ".join(f"{d} {v}" for d, v in deps.items()))


def up(*, detach: bool, model: bool, port: int) -> None:
    try:
        asyncio.run(_up(Plan(detach=detach, model=model, port=port)))
    except KeyboardInterrupt:
        click.echo("stopped")
    except (LocalInfraError, NotReady) as exc:
        raise click.ClickException(str(exc)) from None


async def _down() -> None:
    for proc in (services_process(), model_process_or_none(), broker_process_or_none()):
        if proc is None:
            continue
        stopped = await proc.stop()
        click.echo(f"  {stopped.line()}")
    click.echo(f"  {await stop_postgres(os.environ.get('MONITOR_DATABASE_URL') or DEFAULT_DATABASE_URL)}")


def model_process_or_none() -> ManagedProcess | None:
    try:
        return model_process()
    except LocalInfraError:
        return None


def broker_process_or_none() -> ManagedProcess | None:
    try:
        return broker_process()
    except LocalInfraError:
        return None


def down() -> None:
    click.echo("ragbus down")
    asyncio.run(_down())


async def _status() -> None:
    pg = await postgres_status(os.environ.get("MONITOR_DATABASE_URL") or DEFAULT_DATABASE_URL)
    _line("postgres", "ok" if pg.up else "down", redact(pg.url), ok=pg.up)
    services = services_process()
    for proc in (broker_process_or_none(), model_process_or_none(), services):
        if proc is not None:
            click.echo(f"  {(await proc.status()).line()}")
    if services.running_pid() is None:
        return
    try:
        await _print_services()
    except NotReady as exc:
        _line("services", "unhealthy", str(exc), ok=False)


def status() -> None:
    click.echo("ragbus status")
    asyncio.run(_status())
