"""Stage timings that travel with a request (`stages` of queries and answers); pure, no Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

from ragbus.common.events import StageTiming


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
