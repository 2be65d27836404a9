"""Stage timings that travel with a request (`stages` of queries and answers), and the span of each;
no Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import Span

from ragbus.common.events import StageTiming
from ragbus.common.telemetry import tracer


class Stopwatch:
    """Measures one stage of a request for the `stages` list that travels with it."""

    def __init__(self, stage: str, service: str) -> None:
        self.stage = stage
        self.service = service
        self.started_at = datetime.now(UTC)

    def stop(self) -> StageTiming:
        return StageTiming(
            stage=self.stage, service=self.service, started_at=self.started_at, finished_at=datetime.now(UTC)
        )


@contextmanager
def stage(name: str, service: str, stages: list[StageTiming], **attributes: Any) -> Iterator[Span]:
    """One stage of a request: timed into `stages` (which travel on the event) and traced as a span of
    the service (its children nest under it); set more attributes on the span it yields."""
    clock = Stopwatch(name, service)
    with tracer(service).start_as_current_span(name, attributes=attributes) as span:
        yield span
    stages.append(clock.stop())
