"""The service as the runner hosts it: `create_app` is a RagbusApp whose startup serves the HTTP API
(on the in-memory broker here) and whose /healthz reports the bus and the dependencies."""

from __future__ import annotations

import httpx

from ragbus.common.testing import Harness, component_settings
from ragbus.gateway.app import HttpServer, create_app
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps


async def test_the_service_serves_http_once_started_and_stops_serving_when_stopped(
    topic_prefix: str, deps: GatewayDeps, api_key: str
) -> None:
    settings = component_settings(GatewaySettings, topic_prefix, host="127.0.0.1", port=0)
    app = create_app(settings, deps)
    http: HttpServer = app.http  # type: ignore[attr-defined]
    async with Harness(app), httpx.AsyncClient(base_url=http.url) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["checks"]["kafka"] == "ok"
        models = await client.get("/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        assert models.json()["data"][0]["id"] == "ragbus"
        url = http.url
    async with httpx.AsyncClient() as client:
        try:
            await client.get(f"{url}/healthz")
            raise AssertionError("the gateway still answers after it stopped")
        except httpx.ConnectError:
            pass
