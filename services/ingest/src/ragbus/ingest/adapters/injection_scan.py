"""The injection scan of chunks, by the shields' document-injection detector
(`ragbus.shields.indirect`: hashed n-grams, patterns and cues; a model file shipped in the package)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragbus.ingest.ports import ChunkScan
from ragbus.shields.indirect import DEFAULT_MODEL, DocumentInjectionDetector


@dataclass(frozen=True)
class ShieldsInjectionScanner:
    """An `InjectionScanner` over `DocumentInjectionDetector`; `threshold` is the score that flags."""

    detector: DocumentInjectionDetector

    @classmethod
    def load(cls, threshold: float) -> ShieldsInjectionScanner:
        """Blocking (reads the model file): call it off the event loop."""
        return cls(DocumentInjectionDetector.load(DEFAULT_MODEL, threshold=threshold))

    @property
    def name(self) -> str:
        return f"shields/{DEFAULT_MODEL.stem}"

    def scan(self, texts: Sequence[str]) -> list[ChunkScan]:
        return [
            ChunkScan(r.score, r.flagged, tuple((s.start, s.end) for s in r.spans))
            for r in self.detector.scan_many(texts)
        ]
