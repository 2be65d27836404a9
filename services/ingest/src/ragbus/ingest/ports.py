"""What the ingest domain needs from the outside, as Protocols, and the types they return
(implementations live in adapters/; `tokens.RegexTokenizer` is the dependency-free fallback;
`adapters.injection_scan` scans chunks with the shields' document-injection detector)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


def offsets() -> array[int]:
    return array("q")


@dataclass(frozen=True, slots=True)
class Tokens:
    """Tokens of one text: char offsets (`starts[i]`, `ends[i]`) and the word each belongs to.

    Tokens of one word share a `words` number; numbers never decrease along the text. Compact arrays,
    since a large document has millions of tokens.
    """

    starts: array[int] = field(default_factory=offsets)
    ends: array[int] = field(default_factory=offsets)
    words: array[int] = field(default_factory=offsets)

    def __len__(self) -> int:
        return len(self.starts)

    def extend(self, other: Tokens, *, char_offset: int) -> None:
        """Append the tokens of a block that starts at `char_offset`, continuing the word numbers."""
        word_offset = self.words[-1] + 1 if self.words else 0
        self.starts.extend(s + char_offset for s in other.starts)
        self.ends.extend(e + char_offset for e in other.ends)
        self.words.extend(w + word_offset for w in other.words)


class Tokenizer(Protocol):
    """Splits text into tokens with char offsets and word numbers (see `Tokens`)."""

    @property
    def name(self) -> str:
        """Recorded in `DocsChunked.tokenizer`, so a consumer knows what the token counts mean."""
        ...

    def tokenize(self, text: str) -> Tokens: ...

    def count(self, text: str) -> int: ...


@dataclass(frozen=True, slots=True)
class ChunkScan:
    """What an injection scan found in one chunk: a score in [0, 1], whether it is over the threshold,
    and the spans (`text[start:end]`) that read as instructions to the model."""

    score: float
    flagged: bool
    spans: tuple[tuple[int, int], ...] = ()


class InjectionScanner(Protocol):
    """Finds instructions aimed at the model in chunks of documents (indirect prompt injection)."""

    @property
    def name(self) -> str:
        """The detector and its model, for logs."""
        ...

    def scan(self, texts: Sequence[str]) -> list[ChunkScan]:
        """One scan per text, in order. CPU work: called off the event loop."""
        ...


@dataclass(frozen=True, slots=True)
class Language:
    """A document's language: an ISO 639 code (`en`, `fr`) and the detector's confidence in [0, 1]."""

    code: str
    score: float


class LanguageDetector(Protocol):
    """Tells the language a document is written in."""

    @property
    def name(self) -> str: ...

    def detect(self, text: str) -> Language | None:
        """The language of `text`, or None when the detector cannot tell. CPU work: off the event loop."""
        ...
