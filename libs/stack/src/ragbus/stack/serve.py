"""Host one or more ragbus services in one process.

    python -m ragbus.stack.serve embed                  # one service per process (containers)
    python -m ragbus.stack.serve all --health-port 8079 # all five in one process (`ragbus up`)

Each service is `ragbus.<name>.app.create_app()`; nothing else changes between the two ways of running
them. Several FastStream apps share one event loop (`asyncio.gather(a.start(), b.start())`). With
`--health-port`, `GET /healthz` answers 200 with every dependency's state when all are ok, else 503.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import time
from collections.abc import Sequence

import structlog

from ragbus.common import telemetry
from ragbus.common.app import RagbusApp
from ragbus.common.bus import ensure_topics
from ragbus.common.logging import setup_logging
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics

SERVICES = ("ingest", "embed", "orchestrator", "guard", "monitor")
log = structlog.stdlib.get_logger("ragbus.serve")


def load_app(name: str) -> RagbusApp:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    module = importlib.import_module(f"ragbus.{name}.app")
    app = module.create_app()
    if not isinstance(app, RagbusApp):
        raise TypeError(f"ragbus.{name}.app.create_app() must return a RagbusApp")
    return app


class Host:
    """The services of this process, started together and stopped in reverse order."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(dict.fromkeys(SERVICES if "all" in names else names))
        self.apps: dict[str, RagbusApp] = {}
        self.started_at = time.time()

    async def start(self) -> None:
        kafka = KafkaSettings()
        created = await ensure_topics(kafka, Topics(kafka.topic_prefix).all_with_dlq)
        if created:
            log.info("topics created", count=len(created))
        self.apps = {name: load_app(name) for name in self.names}
        results = await asyncio.gather(
            *(self._start_one(n, a) for n, a in self.apps.items()), return_exceptions=True
        )
        failures = [(n, r) for n, r in zip(self.apps, results, strict=True) if isinstance(r, BaseException)]
        if failures:
            await self.stop()
            name, exc = failures[0]
            raise RuntimeError(f"{name} failed to start: {exc}") from exc

    async def _start_one(self, name: str, app: RagbusApp) -> None:
        t0 = time.perf_counter()
        await app.start()
        log.info("service started", service=name, took_ms=round((time.perf_counter() - t0) * 1000))

    async def stop(self) -> None:
        for name, app in reversed(list(self.apps.items())):
            with contextlib.suppress(Exception):
                await app.stop()
                log.info("service stopped", service=name)
        telemetry.flush()

    async def health(self) -> dict[str, dict[str, str]]:
        names = list(self.apps)
        results = await asyncio.gather(*(self.apps[n].health() for n in names))
        return dict(zip(names, results, strict=True))


async def _health_server(host: Host, bind: str, port: int) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            path = request.split()[1].decode() if len(request.split()) > 1 else "/"
            while (await reader.readline()).strip():  # drain headers
                pass
            if path.startswith("/healthz"):
                states = await host.health()
                ok = all(v == "ok" for deps in states.values() for v in deps.values())
                body = json.dumps({"ok": ok, "pid": os.getpid(), "services": states}).encode()
                status = "200 OK" if ok else "503 Service Unavailable"
            else:
                body, status = b'{"error": "not found"}', "404 Not Found"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, bind, port)


async def serve(
    names: Sequence[str], *, health_host: str = "127.0.0.1", health_port: int | None = None
) -> None:
    """Run the services until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = Host(names)
    await host.start()
    server = await _health_server(host, health_host, health_port) if health_port else None
    log.info("ready", services=",".join(host.names), health_port=health_port, pid=os.getpid())
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        if server:
            server.close()
        await host.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ragbus.stack.serve", description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="+", help=f"service names ({', '.join(SERVICES)}) or `all`")
    parser.add_argument(
        "--health-port", type=int, default=int(os.environ.get("RAGBUS_HEALTH_PORT", 0)) or None
    )
    parser.add_argument("--health-host", default=os.environ.get("RAGBUS_HEALTH_HOST", "127.0.0.1"))
    args = parser.parse_args(argv)
    setup_logging()
    try:
        asyncio.run(serve(args.services, health_host=args.health_host, health_port=args.health_port))
    except (RuntimeError, ValueError) as exc:
        log.error("cannot start", error=str(exc))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
