"""The service application: a FastStream app that also knows its name and how to check its health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from ragbus.common.topics import Topics

HealthCheck = Callable[[], Awaitable[None]]
# The service's dependency checks of the moment (they change once its clients are open).
ChecksProvider = Callable[[], Mapping[str, HealthCheck]]


class RagbusApp(FastStream):
    """`create_app(settings)` of every service returns one of these (built by `ragbus.common.service`).

    Health checks are the clients' `ping()`s (svcs-style): the runner's `/healthz` calls them, and
    `ragbus up` waits on them before it says a service is ready.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        service: str,
        topics: Topics | None = None,
        checks: ChecksProvider | None = None,
        **kwargs: Any,
    ) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            release = version(f"ragbus-{service}")
        except PackageNotFoundError:
            release = "0.0.0"
        spec = AsyncAPI(
            broker,
            title=f"ragbus {service}",
            version=release,
            description=f"The ragbus {service} service: the events it consumes and publishes.",
        )
        super().__init__(broker, specification=spec, **kwargs)
        self.service = service
        self.kafka_broker = broker
        self.topics = topics or Topics()
        self._checks = checks or dict

    async def health(self, timeout: float = 3.0) -> dict[str, str]:
        """`{"kafka": "ok", "vector_store": "error: ..."}`: each dependency's state, never raises."""
        results: dict[str, str] = {}
        try:
            ok = await asyncio.wait_for(self.kafka_broker.ping(timeout=timeout), timeout + 1)
            results["kafka"] = "ok" if ok else "error: broker did not answer"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            results["kafka"] = f"error: {exc!r}"
        for name, check in self._checks().items():
            try:
                await asyncio.wait_for(check(), timeout)
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001
                results[name] = f"error: {exc!r}"
        return results
