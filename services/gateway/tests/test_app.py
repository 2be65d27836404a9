"""The service as the runner hosts it: `create_app` is a RagbusApp whose startup serves the HTTP API
(on the in-memory broker here) and whose /healthz reports the bus and the dependencies."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ragbus.common.admin import ensure_topics
from ragbus.common.settings import KafkaSettings
from ragbus.common.testing import Harness, component_settings
from ragbus.common.topics import Topics
from ragbus.gateway.adapters.postgres import PostgresKeyStore
from ragbus.gateway.app import HttpServer, create_app
from ragbus.gateway.keys import new_key
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


@pytest.mark.integration
async def test_the_service_opens_its_own_clients_on_a_real_broker_and_database(
    kafka_settings: KafkaSettings, pg_schema: str, database_url: str
) -> None:
    """What `ragbus gateway` runs: the key store migrated and the bus client started by the service's
    lifecycle; /healthz reports each; a key created in the database authenticates."""
    settings = GatewaySettings(
        kafka=kafka_settings, host="127.0.0.1", port=0, database_url=database_url, db_schema=pg_schema
    )
    await ensure_topics(kafka_settings, Topics(kafka_settings.topic_prefix).all_with_dlq)
    app = create_app(settings, None)
    await app.start()
    try:
        http: HttpServer = app.http  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=http.url) as client:
            for _ in range(100):  # the clients open in the background if a dependency is slow
                health = await client.get("/healthz")
                if health.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert health.json()["checks"] == {"kafka": "ok", "database": "ok", "bus_client": "ok"}
            store = await PostgresKeyStore.open(settings)
            new = new_key()
            await store.create(new, "acme")
            await store.aclose()
            models = await client.get("/v1/models", headers={"Authorization": f"Bearer {new.key}"})
            assert models.status_code == 200
    finally:
        await app.stop()
