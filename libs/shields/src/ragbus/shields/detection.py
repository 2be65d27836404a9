"""Personal data in text, from patterns and a named-entity model together. Pure but for the model,
which comes in through the `EntityRecognizer` port.

`PiiDetector.find` runs the patterns of ragbus.shields.pii (checksummed numbers, phones, dates of birth,
street addresses, names after a cue) and, when it has a recognizer, the model on the candidate windows
of the text, then `combine`s them into one list of non-overlapping spans, each with a confidence:

- a pattern's span wins over a model's entity it overlaps (a checksum or a street structure is surer
  than a guess, and the model often calls "Crown St" a person);
- a model's entity that overlaps a pattern span of the same kind is merged into it ("Mr. Faina D.
  Yefremova" from the cue, "Faina D. Yefremova" from the model);
- among entities that overlap each other, the higher confidence, then the longer one, stays;
- spans under `min_score` are dropped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from ragbus.shields.entities import EntityRecognizer, entity_spans, recognize
from ragbus.shields.pii import ALL_PII_KINDS, NAME_KINDS, PiiKind, PiiSpan, find_pii


def _overlaps(a: PiiSpan, b: PiiSpan) -> bool:
    return a.start < b.end and b.start < a.end


def combine(
    patterns: Iterable[PiiSpan], entities: Iterable[PiiSpan], min_score: float = 0.5
) -> list[PiiSpan]:
    """Pattern spans and model spans as one non-overlapping list, in order of position."""
    taken = sorted((s for s in patterns if s.score >= min_score), key=lambda s: (s.start, -s.end))
    kept: list[PiiSpan] = []
    for span in taken:  # patterns never overlap each other; keep the first if a caller's do
        if not any(_overlaps(span, k) for k in kept):
            kept.append(span)
    ranked = sorted(
        (s for s in entities if s.score >= min_score), key=lambda s: (-s.score, -(s.end - s.start), s.start)
    )
    for span in ranked:
        clashes = [k for k in kept if _overlaps(span, k)]
        if not clashes:
            kept.append(span)
        elif len(clashes) == 1 and clashes[0].kind == span.kind:
            other = clashes[0]
            merged = PiiSpan(
                span.kind,
                min(span.start, other.start),
                max(span.end, other.end),
                max(span.score, other.score),
            )
            if not any(_overlaps(merged, k) for k in kept if k is not other):
                kept[kept.index(other)] = merged
    return sorted(kept, key=lambda s: s.start)


@dataclass(frozen=True, slots=True)
class PiiDetector:
    """Patterns, and a named-entity model when there is one (`recognizer=None`: patterns only)."""

    recognizer: EntityRecognizer | None = None
    kinds: frozenset[PiiKind] = field(default_factory=lambda: frozenset(ALL_PII_KINDS))
    min_score: float = 0.5
    context: int = 8  # words of context the model reads either side of a capitalised word

    def find(self, text: str, kinds: Collection[PiiKind] | None = None) -> list[PiiSpan]:
        return self.find_many([text], kinds)[0]

    def find_many(
        self, texts: Sequence[str], kinds: Collection[PiiKind] | None = None
    ) -> list[list[PiiSpan]]:
        """The spans of each text; the model reads all of them in one batch."""
        wanted = frozenset(kinds) if kinds is not None else self.kinds
        patterns = [find_pii(t, wanted) for t in texts]
        entities: list[list[PiiSpan]] = [[] for _ in texts]
        if self.recognizer is not None and wanted & set(NAME_KINDS):
            found = recognize(self.recognizer, texts, self.context)
            entities = [
                [PiiSpan(s.kind, s.start, s.end, s.score) for s in entity_spans(t, f) if s.kind in wanted]
                for t, f in zip(texts, found, strict=True)
            ]
        return [combine(p, e, self.min_score) for p, e in zip(patterns, entities, strict=True)]
