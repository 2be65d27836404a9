"""Host one or more ragbus services in one process.

    ragbus serve embed                     # one service per process (containers)
    ragbus serve all --health-port 8079    # every installed service in one process (`ragbus up`)

Each service is its package's `create_app()` (the `ragbus.services` entry points); nothing else changes
between the two ways of running them. Several FastStream apps share one event loop
(`asyncio.gather(a.start(), b.start())`). With a health port, `GET /healthz` answers 200 with every
dependency's state when all are ok, else 503.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Sequence

from ragbus.common import telemetry
from ragbus.common.admin import ensure_topics
from ragbus.common.app import RagbusApp
from ragbus.common.logging import get_logger
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics
from ragbus.stack.services import factory, resolve, service_names

log = get_logger("ragbus.serve")


def load_app(name: str) -> RagbusApp:
    """The service's app, from its installed `create_app()`."""
    app = factory(name)()
    if not isinstance(app, RagbusApp):
        raise TypeError(f"the create_app() of service {name!r} must return a RagbusApp")
    return app


class Host:
    """The services of this process, started together and stopped in reverse order.

    Raises ValueError at once for a name that is not an installed service (`all` hosts every one).
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = resolve(names, service_names())
        self.apps: dict[str, RagbusApp] = {}
        self.started_at = time.time()

    async def start(self) -> None:
        kafka = KafkaSettings()
        plan = await ensure_topics(kafka, Topics(kafka.topic_prefix).all_with_dlq)
        if plan.missing:
            log.info("topics created", count=len(plan.missing))
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
            try:
                await app.stop()
            except Exception:  # one service that fails to stop must not leave the others running
                log.exception("service failed to stop", service=name)
                continue
            log.info("service stopped", service=name)
        telemetry.flush()

    async def health(self) -> dict[str, dict[str, str]]:
        names = list(self.apps)
        results = await asyncio.gather(*(self.apps[n].health() for n in names))
        return dict(zip(names, results, strict=True))


async def _health_response(host: Host, path: str) -> tuple[str, bytes]:
    if not path.startswith("/healthz"):
        return "404 Not Found", b'{"error": "not found"}'
    states = await host.health()
    ok = all(v == "ok" for deps in states.values() for v in deps.values())
    body = json.dumps({"ok": ok, "pid": os.getpid(), "services": states}).encode()
    return ("200 OK" if ok else "503 Service Unavailable"), body


async def health_server(host: Host, bind: str, port: int) -> asyncio.AbstractServer:
    """A minimal HTTP server answering `GET /healthz` (no web framework in the services' process)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            path = request.split()[1].decode() if len(request.split()) > 1 else "/"
            while (await reader.readline()).strip():  # drain headers
                pass
            status, body = await _health_response(host, path)
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


async def run(
    names: Sequence[str], *, health_host: str = "127.0.0.1", health_port: int | None = None
) -> None:
    """Run the services until SIGINT/SIGTERM."""
    host = Host(names)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await host.start()
    server = await health_server(host, health_host, health_port) if health_port else None
    log.info("ready", services=",".join(host.names), health_port=health_port, pid=os.getpid())
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        if server:
            server.close()
        await host.stop()
