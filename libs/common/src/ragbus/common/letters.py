"""A message of a `.dlq` topic, wherever it is read from: the bus (`ragbus dlq`) or the monitor's record
(`ragbus dlq --from-record`, after the local broker lost its log). Shared, so both read the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pydantic

from ragbus.common import topics
from ragbus.common.events import DLQ_HEADER_PREFIX, DeadLetter
from ragbus.common.trust import PRINCIPAL_HEADER, SIGNATURE_HEADER


@dataclass(frozen=True, slots=True)
class Letter:
    """One message of a `.dlq` topic."""

    dlq_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    letter: DeadLetter | None  # None: the x-ragbus-dlq-* headers are missing or incomplete

    @classmethod
    def of(
        cls,
        dlq_topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        headers: Iterable[tuple[str, bytes]],
    ) -> Letter:
        """A letter from its record; `letter` parsed from the `x-ragbus-dlq-*` headers when they hold."""
        kept = tuple((k, v or b"") for k, v in headers)
        try:
            letter: DeadLetter | None = DeadLetter.from_headers(dict(kept))
        except (pydantic.ValidationError, UnicodeDecodeError):
            letter = None
        return cls(dlq_topic, partition, offset, key, value, kept, letter)

    @property
    def original_topic(self) -> str:
        return self.letter.original_topic if self.letter else self.dlq_topic.removesuffix(topics.DLQ_SUFFIX)

    @property
    def origin(self) -> tuple[str, int | None, int | None]:
        """Where the message was first published: the same for every consumer that dead-lettered it."""
        if self.letter is None:
            return (self.dlq_topic, self.partition, self.offset)
        return (self.letter.original_topic, self.letter.partition, self.letter.offset)


_SIGNATURE = (PRINCIPAL_HEADER, SIGNATURE_HEADER)


def replay_headers(letter: Letter) -> list[tuple[str, bytes]]:
    """A letter's headers as its original had them: without the `x-ragbus-dlq-*` ones and the dead-
    lettering service's signature, with the original producer's signature back (if it had one), so the
    replayed record is checked as the producer's, not trusted as the service's or the operator's."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith(DLQ_HEADER_PREFIX) and k not in _SIGNATURE]
    dead = letter.letter
    if dead is not None and dead.original_principal and dead.original_signature:
        kept += [
            (PRINCIPAL_HEADER, dead.original_principal.encode()),
            (SIGNATURE_HEADER, dead.original_signature.encode()),
        ]
    return kept
