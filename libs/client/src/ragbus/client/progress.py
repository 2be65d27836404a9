"""How far an ingest has got: documents and chunks indexed, their rates, and the time left.

Pure (the clock is handed in), so the CLI's progress line is tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass(slots=True)
class IngestProgress:
    total: int
    started: float
    docs: int = 0
    chunks: int = 0

    def add(self, chunks: int) -> None:
        self.docs += 1
        self.chunks += chunks

    def line(self, now: float) -> str:
        """`1,234/5,183 documents · 2,871 chunks · 8.2 docs/s · 19.1 chunks/s · 8 min 02 s left`."""
        elapsed = max(now - self.started, 1e-9)
        rate, chunk_rate = self.docs / elapsed, self.chunks / elapsed
        left = self.total - self.docs
        if left == 0:
            eta = f"done in {duration(elapsed)}"
        elif self.docs:
            eta = f"{duration(left / rate)} left"
        else:
            eta = "waiting for the first"
        chunks = f"{self.chunks:,} chunk{'' if self.chunks == 1 else 's'}"
        return (
            f"{self.docs:,}/{self.total:,} documents · {chunks} · "
            f"{rate:.1f} docs/s · {chunk_rate:.1f} chunks/s · {eta}"
        )
