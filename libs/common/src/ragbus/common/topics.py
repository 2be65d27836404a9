"""Topic names: `<domain>.<event>.v<major>`. They live here and nowhere else.

A deployment (or a test) may put all topics under a prefix, e.g. `staging.` or `t3f9.`; services
build their names through `Topics(prefix)` so the prefix is applied in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

DOCS_SUBMITTED: Final = "docs.submitted.v1"
DOCS_DELETED: Final = "docs.deleted.v1"
DOCS_CHUNKED: Final = "docs.chunked.v1"
DOCS_INDEXED: Final = "docs.indexed.v1"
QUERIES_SUBMITTED: Final = "queries.submitted.v1"
QUERIES_ACCEPTED: Final = "queries.accepted.v1"
QUERIES_REJECTED: Final = "queries.rejected.v1"
QUERIES_ESCALATED: Final = "queries.escalated.v1"
ANSWERS_DRAFTED: Final = "answers.drafted.v1"
ANSWERS_DELTA: Final = "answers.delta.v1"
ANSWERS_COMPLETED: Final = "answers.completed.v1"
FEEDBACK_SUBMITTED: Final = "feedback.submitted.v1"
FEEDBACK_RECORDED: Final = "feedback.recorded.v1"

ALL: Final = (
    DOCS_SUBMITTED,
    DOCS_DELETED,
    DOCS_CHUNKED,
    DOCS_INDEXED,
    QUERIES_SUBMITTED,
    QUERIES_ACCEPTED,
    QUERIES_REJECTED,
    QUERIES_ESCALATED,
    ANSWERS_DRAFTED,
    ANSWERS_DELTA,
    ANSWERS_COMPLETED,
    FEEDBACK_SUBMITTED,
    FEEDBACK_RECORDED,
)

DLQ_SUFFIX: Final = ".dlq"
TYPE_PREFIX: Final = "io.ragbus."


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return topic + DLQ_SUFFIX


# Every topic and its dead-letter topic (what the monitor reads and topic-init creates).
ALL_WITH_DLQ: Final = ALL + tuple(dlq(t) for t in ALL)


def event_type(topic: str) -> str:
    """CloudEvents `type` of the events on a (prefix-free) topic: `io.ragbus.docs.submitted.v1`."""
    return TYPE_PREFIX + topic


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under an optional prefix (a deployment namespace, or one test's own topics)."""

    prefix: str = ""

    def __call__(self, base: str) -> str:
        return self.prefix + base

    def dlq(self, base: str) -> str:
        return dlq(self(base))

    def strip(self, topic: str) -> str:
        """The base name of a prefixed topic (the name events are typed by)."""
        return topic.removeprefix(self.prefix)

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(self(t) for t in ALL)

    @property
    def all_with_dlq(self) -> tuple[str, ...]:
        return tuple(self(t) for t in ALL_WITH_DLQ)

    def pattern(self) -> str:
        """A regex matching every ragbus topic under this prefix, dead-letter topics included."""
        names = "|".join(re.escape(t) for t in ALL)
        return rf"{re.escape(self.prefix)}(?:{names})(?:{re.escape(DLQ_SUFFIX)})?"
