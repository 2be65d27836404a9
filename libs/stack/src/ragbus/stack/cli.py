"""The stack's commands, plugged into the `ragbus` CLI through the `ragbus.cli` entry points.

    ragbus up [--detach] [--no-model] [--port N]       the whole stack on this machine, no Docker
    ragbus down | status                               stop / show what `up` started
    ragbus serve SERVICE...|all [--health-port N]      host services in this process (containers, `up`)
    ragbus local broker|model|postgres start|stop|status [--port N] [--threads N] [--url URL]
                 [--timeout S] [--foreground]          one piece of the local infrastructure

`python -m ragbus.stack.serve` and `python -m ragbus.stack.local` run the same commands (compose and
the image call them). `local ... status` exits 0 when running, 1 when unhealthy, 3 when stopped.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import IO, Any, TypeVar

import click
from pydantic import ValidationError

from ragbus.common.logging import get_logger, setup_logging
from ragbus.stack import up as whole
from ragbus.stack.broker import broker_handle, broker_process
from ragbus.stack.model import model_handle, model_process
from ragbus.stack.postgres import ensure_postgres, postgres_status, stop_postgres
from ragbus.stack.process import LocalInfraError, ManagedProcess, NotReady
from ragbus.stack.settings import StackSettings

T = TypeVar("T")
CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
STOPPED = 3  # `status` of something that does not run (as LSB init scripts do)
EXIT_CODES = {"running": 0, "unhealthy": 1, "stopped": STOPPED}


class StackError(click.ClickException):
    """An error as one line on stderr, `<who>: error: <first line>`; further lines (a log's tail) follow."""

    def __init__(self, who: str, message: str) -> None:
        super().__init__(message)
        self.who = who

    def show(self, file: IO[Any] | None = None) -> None:
        first, _, rest = self.message.partition("\n")
        click.echo(f"{self.who}: error: {first.removeprefix(self.who + ': ')}", err=True)
        if rest:
            click.echo(rest, err=True)


def _run(who: str, work: Callable[[StackSettings], Awaitable[T]]) -> T:
    """Run one command's work with the stack's settings; its errors become one line and exit 1."""
    try:
        return asyncio.run(_with_settings(work))
    except (LocalInfraError, NotReady) as exc:
        raise StackError(who, str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise StackError(who, f"invalid setting {_variable(first['loc'])}: {first['msg']}") from None


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a settings error's location (`RAGBUS_BROKER_PORT`, `DATABASE_URL`)."""
    if loc and loc[0] in StackSettings.model_fields:
        return "_".join(["RAGBUS", *map(str, loc)]).upper()
    return ".".join(map(str, loc))  # an alias is the variable's own name


async def _with_settings(work: Callable[[StackSettings], Awaitable[T]]) -> T:
    return await work(StackSettings())


# --- the whole stack --------------------------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@click.option("--detach", "-d", is_flag=True, help="Run in the background; `ragbus down` stops it.")
@click.option("--no-model", is_flag=True, help="Do not start the local chat model server.")
@click.option(
    "--port", type=int, help="Port of the local Kafka-protocol broker (default: RAGBUS_BROKER_PORT, 9092)."
)
def up(detach: bool, no_model: bool, port: int | None) -> None:
    """Start the whole stack on one machine: broker, model server and every service."""
    plan = whole.Plan(detach=detach, model=not no_model, port=port)
    try:
        _run("ragbus", lambda settings: whole.up(plan, settings))
    except KeyboardInterrupt:  # how `up` in the foreground ends
        click.echo("stopped")


@click.command(context_settings=CONTEXT)
def down() -> None:
    """Stop what `ragbus up` started."""
    _run("ragbus", whole.down)


@click.command(context_settings=CONTEXT)
def status() -> None:
    """Show the local stack: PostgreSQL, broker, model server, services."""
    _run("ragbus", whole.status)


# --- hosting services -------------------------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@click.argument("names", metavar="SERVICE...|all", nargs=-1, required=True)
@click.option(
    "--health-port", type=int, help="Serve GET /healthz on this port (default: RAGBUS_HEALTH_PORT)."
)
@click.option("--health-host", help="Bind /healthz to this address (default: RAGBUS_HEALTH_HOST, 127.0.0.1).")
def serve(names: tuple[str, ...], health_port: int | None, health_host: str | None) -> None:
    """Host services in this process: one per container, or `all` of them (as `ragbus up` does)."""
    # Imported here: the runner loads the services' machinery, which no other command needs.
    from ragbus.stack.runner import run

    setup_logging()
    try:
        settings = StackSettings()
        asyncio.run(
            run(
                names,
                health_host=health_host or settings.health_host,
                health_port=health_port or settings.health_port,
            )
        )
    except (RuntimeError, ValueError) as exc:  # a service that cannot start, a bad setting: logged
        get_logger("ragbus.serve").error("cannot start", error=str(exc))
        raise click.exceptions.Exit(1) from None


# --- the local infrastructure, one piece at a time ---------------------------------------------------


async def _foreground(proc: ManagedProcess, timeout_s: float | None) -> int:
    running = await proc.start(detach=False, log_to_terminal=True, timeout_s=timeout_s)
    click.echo(running.line() + ", in the foreground: Ctrl-C stops it")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if exited.done():
        click.echo(f"{proc.name}: exited with code {exited.result()}")
        await proc.stop()  # clears the pid file
        return 1
    exited.cancel()
    click.echo((await proc.stop()).line())
    return 0


async def _start(proc: ManagedProcess, timeout_s: float | None, foreground: bool) -> int:
    if foreground:
        return await _foreground(proc, timeout_s)
    click.echo((await proc.start(detach=True, timeout_s=timeout_s)).line())
    return 0


async def _stop(proc: ManagedProcess) -> int:
    click.echo((await proc.stop()).line())
    return 0


async def _status(proc: ManagedProcess) -> int:
    found = await proc.status()
    click.echo(found.line())
    return EXIT_CODES[found.state]


def _exit(who: str, work: Callable[[StackSettings], Awaitable[int]]) -> None:
    """Run a `local` command's work and exit with its code (130 on Ctrl-C)."""
    try:
        code = _run(who, work)
    except KeyboardInterrupt:
        code = 130
    if code:
        raise click.exceptions.Exit(code)


broker_port = click.option("--port", type=int, help="Default: RAGBUS_BROKER_PORT, 9092.")
model_port = click.option("--port", type=int, help="Default: RAGBUS_MODEL_PORT, 8080.")
timeout_option = click.option("--timeout", type=float, help="Seconds to wait until it serves.")
foreground_option = click.option(
    "--foreground", is_flag=True, help="Stay attached and log to the terminal; Ctrl-C stops it."
)
url_option = click.option("--url", help="The database URL (default: MONITOR_DATABASE_URL, DATABASE_URL).")


@click.group(context_settings=CONTEXT)
def local() -> None:
    """The local infrastructure, one piece at a time: broker, model server, PostgreSQL.

    `start` detaches the server so it outlives the command (pid and log under RAGBUS_HOME);
    `status` exits 0 when it runs, 1 when it is unhealthy, 3 when it is stopped.
    """


@local.group()
def broker() -> None:
    """Tansu, a Kafka-protocol broker (127.0.0.1:9092, in-memory storage)."""


@broker.command("start")
@broker_port
@timeout_option
@foreground_option
def broker_start(port: int | None, timeout: float | None, foreground: bool) -> None:
    """Start the broker (or reuse the one running) and wait until it serves."""
    _exit(
        "broker",
        lambda s: _start(broker_process(s.broker, port=port, home=s.home), timeout, foreground),
    )


@broker.command("stop")
@broker_port
def broker_stop(port: int | None) -> None:
    """Stop the broker `start` started (by its recorded PID)."""
    _exit("broker", lambda s: _stop(_broker_handle(s, port)))


@broker.command("status")
@broker_port
def broker_status(port: int | None) -> None:
    """Whether the broker runs and answers a metadata request."""
    _exit("broker", lambda s: _status(_broker_handle(s, port)))


def _broker_handle(settings: StackSettings, port: int | None) -> ManagedProcess:
    return broker_handle(port or settings.broker.port, home=settings.home)


@local.group()
def model() -> None:
    """The chat model server: llama.cpp with SmolLM2-135M-Instruct (http://127.0.0.1:8080/v1)."""


@model.command("start")
@model_port
@click.option(
    "--threads", type=int, help="Generation threads (default: RAGBUS_MODEL_THREADS, half the cores)."
)
@timeout_option
@foreground_option
def model_start(port: int | None, threads: int | None, timeout: float | None, foreground: bool) -> None:
    """Start the model server (or reuse the one running) and wait until it answers a chat request."""
    _exit(
        "model",
        lambda s: _start(
            model_process(s.model, port=port, threads=threads, home=s.home), timeout, foreground
        ),
    )


@model.command("stop")
@model_port
def model_stop(port: int | None) -> None:
    """Stop the model server `start` started (by its recorded PID)."""
    _exit("model", lambda s: _stop(_model_handle(s, port)))


@model.command("status")
@model_port
def model_status(port: int | None) -> None:
    """Whether the model server runs and answers a one-token chat completion."""
    _exit("model", lambda s: _status(_model_handle(s, port)))


def _model_handle(settings: StackSettings, port: int | None) -> ManagedProcess:
    return model_handle(settings.model, port=port or settings.model.port, home=settings.home)


@local.group()
def postgres() -> None:
    """PostgreSQL at the stack's database URL: started with pg_ctlcluster when it is local and down."""


@postgres.command("start")
@url_option
@timeout_option
def pg_start(url: str | None, timeout: float | None) -> None:
    """Check PostgreSQL answers; start the local cluster if it is down, and wait."""

    async def start(settings: StackSettings) -> int:
        found = await ensure_postgres(
            url or settings.database_url, home=settings.home, timeout_s=timeout or 30.0
        )
        click.echo(found.line())
        return 0

    _exit("postgres", start)


@postgres.command("stop")
@url_option
def pg_stop(url: str | None) -> None:
    """Stop the cluster, only if `start` started it."""

    async def stop(settings: StackSettings) -> int:
        click.echo(await stop_postgres(url or settings.database_url, home=settings.home))
        return 0

    _exit("postgres", stop)


@postgres.command("status")
@url_option
def pg_status(url: str | None) -> None:
    """Whether PostgreSQL answers (exit 0) or not (exit 3)."""

    async def status(settings: StackSettings) -> int:
        found = await postgres_status(url or settings.database_url, home=settings.home)
        click.echo(found.line())
        return 0 if found.up else STOPPED

    _exit("postgres", status)


def alias(command: click.Command, module: str) -> None:
    """`python -m <module> ...`: the same command, under the name the caller typed."""
    command.main(args=sys.argv[1:], prog_name=f"python -m {module}")
