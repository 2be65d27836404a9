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

Then `extend_persons` carries what the model found to where it did not look twice: the other mentions
of a name it found ("Maciej Borkowski ... starring Borkowski"), the other items of a list most of whose
items are names ("Gaetane, Hannah, Anthony, Derek and Anna"), and the other speakers of a dialogue
("Ubul: ... Nicole: ..."). A small model misses the unfamiliar names among familiar ones; the structure
around them says what they are.
"""

from __future__ import annotations

import re
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


_NAME_WORD = r"[^\W\d_][^\W\d_'’-]*(?:[-'’][^\W\d_]+)*"
_CAPITALISED = re.compile(rf"(?<![\w-]){_NAME_WORD}(?![\w-])")
# "A, B, C and D": single capitalised words separated by commas, the last after and/or/&.
_UPPER = "A-ZÀ-ÖØ-ÞĀ-ſ"  # capitals of Latin scripts (the Latin Extended-A block holds both cases)
_LIST = re.compile(
    rf"(?<![\w-])(?:[{_UPPER}][\w'’-]+\s*,\s*)+[{_UPPER}][\w'’-]+,?\s+(?:and|or|&)\s+[{_UPPER}][\w'’-]+"
)
_ITEM = re.compile(rf"[{_UPPER}][\w'’-]+")
# A speaker's label: a capitalised word and a colon at the start of the text, a line or a sentence.
_SPEAKER = re.compile(rf"(?:^|(?<=\n)|(?<=[.!?]\s))\s*([{_UPPER}][\w'’-]+):\s")
# A name heading an address: two or three capitalised words (a middle initial allowed) at the start of
# the text, a line, or after `>`, `:` or `|`, right before the address.
_ADDRESSEE = re.compile(
    rf"(?:^|(?<=[\n>:|]))[ \t]*([{_UPPER}][\w'’-]+(?:[ \t]+[{_UPPER}]\.?)?"
    rf"(?:[ \t]+[{_UPPER}][\w'’-]+){{1,2}})[ \t>,|]*$"
)
# Words a name's mention is never carried by: titles, and the function words that begin sentences.
_NOT_A_NAME = frozenset(
    """
    mr mrs ms miss dr prof sir madam the a an and or of in on at to for my his her their our your it this
    that he she they we you i
    """.split()  # noqa: SIM905 - a word list reads better as prose than as 34 quoted strings
)


def extend_persons(text: str, spans: Sequence[PiiSpan], score: float = 0.6) -> list[PiiSpan]:
    """`spans` with the PERSON mentions their structure implies (see the module's docstring)."""
    out = list(spans)

    def overlaps_any(start: int, end: int, kinds: Collection[str] | None = None) -> bool:
        span = PiiSpan("PERSON", start, end)
        return any(_overlaps(span, t) for t in out if kinds is None or t.kind in kinds)

    def add(start: int, end: int) -> None:
        if not overlaps_any(start, end):
            out.append(PiiSpan("PERSON", start, end, score))

    # The addressee of a street address.
    for place in [s for s in spans if s.kind == "LOCATION"]:
        head = _ADDRESSEE.search(text, max(0, place.start - 80), place.start)
        if head:
            add(head.start(1), head.end(1))
    persons = [s for s in out if s.kind == "PERSON"]
    if not persons:
        return out

    # Other mentions of a word of a name found (a surname alone, a first name alone).
    words = {
        m.group()
        for p in persons
        for m in _CAPITALISED.finditer(text[p.start : p.end])
        if len(m.group()) >= 3 and m.group()[0].isupper() and m.group().casefold() not in _NOT_A_NAME
    }
    if words:
        mention = re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, sorted(words))) + r")(?![\w-])")
        for m in mention.finditer(text):
            add(m.start(), m.end())
    # The other items of a list of names.
    for m in _LIST.finditer(text):
        items = [(m.start() + i.start(), m.start() + i.end()) for i in _ITEM.finditer(m.group())]
        items = [(a, b) for a, b in items if text[a:b] not in ("and", "or")]
        named = sum(overlaps_any(a, b, ("PERSON",)) for a, b in items)
        unknown = sum(not overlaps_any(a, b) for a, b in items)
        if (named >= 2 and named * 2 >= len(items)) or (named >= 1 and unknown * 2 >= len(items)):
            # A lone item the model called a place is a name among names ("Mary, Ariana, Isabel").
            places = set(items)
            out = [
                PiiSpan("PERSON", x.start, x.end, score)
                if x.kind == "LOCATION" and (x.start, x.end) in places
                else x
                for x in out
            ]
            for a, b in items:
                add(a, b)
    # The other speakers of a dialogue.
    speakers = [(m.start(1), m.end(1)) for m in _SPEAKER.finditer(text)]
    if len(speakers) >= 2 and any(overlaps_any(a, b, ("PERSON",)) for a, b in speakers):
        for a, b in speakers:
            add(a, b)
    return sorted(out, key=lambda s: s.start)


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
        combined = [combine(p, e, self.min_score) for p, e in zip(patterns, entities, strict=True)]
        if self.recognizer is None or "PERSON" not in wanted:
            return combined
        return [extend_persons(t, c) for t, c in zip(texts, combined, strict=True)]
