"""The runner: hosts the services it is asked for, and reports their health on /healthz."""

from __future__ import annotations

import asyncio
import json
from typing import cast

import pytest

from ragbus.common.app import RagbusApp
from ragbus.stack import runner
from ragbus.stack.process import free_port
from ragbus.stack.runner import Host, health_server, load_app


class FakeApp:
    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.stopped = False

    async def health(self) -> dict[str, str]:
        return self.states

    async def stop(self) -> None:
        self.stopped = True


def host_of(apps: dict[str, FakeApp]) -> Host:
    host = Host(["all"])
    host.apps = cast(dict[str, RagbusApp], apps)
    return host


async def get(port: int, path: str) -> tuple[str, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), json.loads(body)


def test_all_hosts_every_installed_service_in_pipeline_order() -> None:
    assert Host(["all"]).names[:5] == ["ingest", "embed", "orchestrator", "guard", "monitor"]
    assert Host(["monitor", "ingest"]).names == ["ingest", "monitor"]


def test_an_unknown_service_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match=r"^unknown service 'nope'; choose from ingest, embed, "):
        Host(["embed", "nope"])


def test_a_factory_that_returns_no_ragbus_app_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "factory", lambda name: lambda: object())
    with pytest.raises(TypeError, match=r"create_app\(\) of service 'embed' must return a RagbusApp"):
        load_app("embed")


async def test_healthz_is_200_when_every_dependency_is_ok_and_503_otherwise() -> None:
    apps = {"ingest": FakeApp({"kafka": "ok"}), "embed": FakeApp({"kafka": "ok", "vector_store": "ok"})}
    host = host_of(apps)
    port = free_port()
    server = await health_server(host, "127.0.0.1", port)
    try:
        status, body = await get(port, "/healthz")
        assert status == "HTTP/1.1 200 OK"
        assert body["ok"] is True
        assert body["services"] == {"ingest": {"kafka": "ok"}, "embed": {"kafka": "ok", "vector_store": "ok"}}
        apps["embed"].states["vector_store"] = "error: ConnectError()"
        status, body = await get(port, "/healthz")
        assert (status, body["ok"]) == ("HTTP/1.1 503 Service Unavailable", False)
        assert await get(port, "/other") == ("HTTP/1.1 404 Not Found", {"error": "not found"})
    finally:
        server.close()
        await server.wait_closed()


async def test_services_stop_in_reverse_order_even_when_one_fails_to_stop() -> None:
    order: list[str] = []

    class Recording(FakeApp):
        def __init__(self, name: str, fail: bool = False) -> None:
            super().__init__({})
            self.name, self.fail = name, fail

        async def stop(self) -> None:
            order.append(self.name)
            if self.fail:
                raise RuntimeError("broker gone")

    host = host_of({"ingest": Recording("ingest"), "embed": Recording("embed", fail=True)})
    await host.stop()
    assert order == ["embed", "ingest"]
