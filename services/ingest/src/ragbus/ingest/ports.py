"""What the ingest domain needs from the outside, as Protocols (implementations live in adapters/)."""

from __future__ import annotations

from typing import Protocol

from ragbus.ingest.tokens import Tokens


class Tokenizer(Protocol):
    """Splits text into tokens with char offsets and word numbers (see `Tokens`)."""

    @property
    def name(self) -> str:
        """Recorded in `DocsChunked.tokenizer`, so a consumer knows what the token counts mean."""
        ...

    def tokenize(self, text: str) -> Tokens: ...

    def count(self, text: str) -> int: ...
