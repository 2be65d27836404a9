"""The service application: a FastStream app that also knows its name and how to check its health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from ragbus.common.errors import DependencyUnavailable

HealthCheck = Callable[[], Awaitable[None]]
T = TypeVar("T")


class Clients(Generic[T]):
    """A service's clients (stores, models, pools) between startup and shutdown.

    Handlers reach them through this holder, never a global; before startup (or after shutdown) a
    handler gets DependencyUnavailable, which the shared middleware retries.
    """

    def __init__(self, service: str, value: T | None = None) -> None:
        self.service = service
        self.value = value

    def get(self) -> T:
        if self.value is None:
            raise DependencyUnavailable(f"the {self.service} service's clients are not open yet")
        return self.value

    def take(self) -> T | None:
        """Hand the clients over for closing; the holder is empty afterwards."""
        value, self.value = self.value, None
        return value


class RagbusApp(FastStream):
    """`create_app(settings)` of every service returns one of these.

    Health checks are the adapters' `ping()`s (svcs-style): the runner's `/healthz` calls them, and
    `ragbus up` waits on them before it says a service is ready.
    """

    def __init__(self, broker: KafkaBroker, *, service: str, **kwargs: Any) -> None:
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
        self._checks: dict[str, HealthCheck] = {}

    def health_check(self, name: str, check: HealthCheck) -> None:
        """Register a dependency check: an async callable that raises when the dependency is down."""
        self._checks[name] = check

    async def health(self, timeout: float = 3.0) -> dict[str, str]:
        """`{"kafka": "ok", "vector_store": "error: ..."}`: each dependency's state, never raises."""
        results: dict[str, str] = {}
        try:
            ok = await asyncio.wait_for(self.kafka_broker.ping(timeout=timeout), timeout + 1)
            results["kafka"] = "ok" if ok else "error: broker did not answer"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            results["kafka"] = f"error: {exc!r}"
        for name, check in self._checks.items():
            try:
                await asyncio.wait_for(check(), timeout)
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001
                results[name] = f"error: {exc!r}"
        return results
