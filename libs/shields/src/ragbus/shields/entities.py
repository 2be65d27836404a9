"""Names of persons, places and organisations: the port to a named-entity model, and the pure rules
around it. No model is loaded here (see ragbus.shields.adapters.spacy_ner for one).

- `EntityRecognizer` is the port: texts in, the model's entities (its own labels, character offsets)
  out, in one batch.
- `candidate_windows` picks the parts of a text worth a model's time: the words around capitalised
  words that are not sentence openers ("The", "What", "I"). A question with no name in it costs nothing,
  and a 300-token prompt is read in a few windows instead of whole (the small English model reads about
  10k words a second on one core: 25 ms for 300 tokens). Names the model would find in lowercase text
  are rare enough (the small model misses them anyway) to be left to the cues below.
- `entity_spans` turns the model's entities into our kinds (PERSON; GPE, LOC and FAC are LOCATION; ORG
  is ORGANIZATION), trims what does not belong to a name (a possessive, line breaks, a title), and
  corrects the label where the words around it say what it is: "my name is Miklós Hajdu" and "Mr.
  Labrie" are persons whatever the model thought (an English model takes many foreign names for
  organisations), "flew to LEPPEN" / "originally from ΕΓΚΩΜΗ" are places.
- `cued_persons` finds names without a model, after words that announce one ("my name is", "Mr.",
  "Dear", "Directed by:").

Confidence: the small spaCy model's greedy parser gives no probability, so an entity scores 0.85 (as
presidio scores spaCy's entities); a cue that confirms it raises that, a lone lowercase word lowers it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


EntityKind = Literal["PERSON", "LOCATION", "ORGANIZATION"]
ENTITY_KINDS: tuple[EntityKind, ...] = ("PERSON", "LOCATION", "ORGANIZATION")

# The model's labels (spaCy's OntoNotes labels, and the CoNLL ones of other models) -> our kinds.
LABELS: dict[str, EntityKind] = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "ORG": "ORGANIZATION",
}
MODEL_SCORE = 0.85


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity as a model reports it: its own label, character offsets, a confidence."""

    label: str
    start: int
    end: int
    score: float = MODEL_SCORE


@dataclass(frozen=True, slots=True)
class EntitySpan:
    """An entity in our kinds, after the rules of this module."""

    kind: EntityKind
    start: int
    end: int
    score: float


class EntityRecognizer(Protocol):
    """A named-entity model: for each text, its entities, offsets into that text."""

    def recognize(self, texts: Sequence[str]) -> list[list[Entity]]: ...


# --- where to look ---------------------------------------------------------------------------------

_WORD = re.compile(r"\w+(?:['’.-]\w+)*")
# Capitalised words that open sentences and questions: never a name on their own.
_OPENERS = _words(
    """a an the i i'm i've i'd i'll im we you he she it they me us him her them my our your his its their this
    that these those there here what who whom whose which when where why how is are was were be been do does
    did can could would should will shall may might must have has had if then so but and or nor not no yes
    ok okay please thanks thank hello hi hey dear also as at by for from in into of on onto to with without
    about after before during since until while because although though however therefore thus hence yet
    still all any each every some many much more most few other another such one two three first second
    next last new let let's lets tell give show explain describe list write find compare summarize
    summarise according based given using note see figure table section chapter"""
)


def _candidate(word: str) -> bool:
    if not word[0].isupper():
        return False
    return word.casefold() not in _OPENERS


def candidate_windows(text: str, context: int = 8) -> list[tuple[int, int]]:
    """Character ranges around the capitalised words of `text` (`context` words either side), merged
    where they meet; empty when the text has no capitalised word but sentence openers."""
    words = list(_WORD.finditer(text))
    ranges: list[tuple[int, int]] = []
    for i, m in enumerate(words):
        if not _candidate(m.group(0)):
            continue
        lo, hi = max(0, i - context), min(len(words) - 1, i + context)
        if ranges and lo <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return [(words[lo].start(), words[hi].end()) for lo, hi in ranges]


def recognize(recognizer: EntityRecognizer, texts: Sequence[str], context: int = 8) -> list[list[Entity]]:
    """The recognizer's entities in each text, reading only the candidate windows (one batch for all)."""
    windows = [candidate_windows(t, context) for t in texts]
    pieces = [text[a:b] for text, ranges in zip(texts, windows, strict=True) for a, b in ranges]
    found = iter(recognizer.recognize(pieces) if pieces else [])
    out: list[list[Entity]] = []
    for ranges in windows:
        entities: list[Entity] = []
        for offset, _ in ranges:
            entities.extend(Entity(e.label, e.start + offset, e.end + offset, e.score) for e in next(found))
        out.append(entities)
    return out


# --- what the words around an entity say -----------------------------------------------------------

_TITLE = r"(?:mr|mrs|ms|mx|miss|mister|dr|prof|professor|sir|madam|dame|lord|lady|rev)\.?"
# "my name is", "her maiden name is", "last name is": a name follows.
_NAME_IS = r"\b(?:my|maiden|first|last|family|middle|sur)\s*name\s+is"
# Words right before a name that make it a person, strongly (a span is made even without a model) ...
_PERSON_STRONG = re.compile(
    rf"(?:{_NAME_IS}|\bname\s*:|\b{_TITLE}|\bdear|\bsigned|\bsincerely,?|\bregards,?|\bdirected\s+by\s*:?"
    r"|\bwritten\s+by|\bi\s+am|\bi['’]m|\bthis\s+is|\bcall\s+me|\bnamed|\bcalled)\s*$",
    re.IGNORECASE,
)
# ... or weakly (only a model's entity is relabelled).
_PERSON_WEAK = re.compile(
    r"(?:\b(?:by|with|to|from|for|and|ask|tell|met|meet|contact|under|add|name|kid|son|daughter|child|wife|husband"
    r"|brother|sister|mother|father|mom|mum|dad|friend|colleague|boss|manager|uncle|aunt|cousin|nephew|niece"
    r"|grandson|granddaughter|grandmother|grandfather|patient|client|customer|founders?|hi|hello|hey|thanks"
    r"|thank\s+you)|[:\n]|^)\s*$",
    re.IGNORECASE,
)
_WORKS_FOR = re.compile(r"\bwork(?:s|ed|ing)?\s+(?:for|at)\s*$", re.IGNORECASE)
_ORG_AFTER = re.compile(
    r"^\s+(?:is|was)\s+an?\s+(?:[\w-]+\s+){0,2}(?:agency|company|firm|startup|business|brand|charity"
    r"|nonprofit|non-profit|organi[sz]ation|manufacturer|retailer|bank|provider|corporation|studio)\b",
    re.IGNORECASE,
)
# The labels of a contact block's fields, which a model sometimes takes for names.
_FIELD_LABELS = _words("mobile desk fax office phone tel telephone cell home work email e-mail web")
_PERSON_AFTER = re.compile(
    r"^(?:\s+(?:lives?|lived|living|had\s+given|has\s+given|was\s+born"
    r"|is\s+(?:a|an)\s+\d|who|and\s+(?:his|her)|concert|fan|'s\s+(?:wife|husband|son|daughter|mother"
    r"|father|brother|sister|address|phone|email))\b|\s*:\s+\S)",
    re.IGNORECASE,
)
_PLACE_BEFORE = re.compile(
    r"(?:\b(?:flew|flies|fly|moved|move|travel(?:l)?ed|travel(?:l)?ing|trip|drove|went|going|relocated)\s+to"
    r"|\boriginally\s+from|\b(?:born|lives?|living|based|located|raised|grew\s+up)\s+in|\b(?:city|town|village"
    r"|capital|province|state|county|region)\s+of|\bvisit(?:ed|ing)?|\bwhere\s*:)\s*$",
    re.IGNORECASE,
)
_ORG_WORDS = re.compile(
    r"\b(?:inc|ltd|llc|plc|corp|corporation|company|co|group|bank|university|institute|foundation|agency"
    r"|association|society|orchestra|club|partners|holdings|systems|solutions|technologies|software|labs?"
    r"|media|news|records|press|airlines?|hospital|school|college|council|committee|ministry|department"
    r"|investments?|capital|consulting|ventures|industries|enterprises|insurance|trust|fund|services"
    r"|incorporated|finance|financial|tv|radio|network|weekly|daily|magazine|journal|times"
    r"|gmbh|ag|sa|nv|bv|ab|oy)\b\.?",
    re.IGNORECASE,
)
_NAME_TOKEN = re.compile(r"^[^\W\d_][^\W\d_'’.-]*(?:['’-][^\W\d_]+)*\.?$")
_POSSESSIVE = re.compile(r"['’]s?$")


def _trim(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of an entity worth keeping: split at line breaks, without outer punctuation, a trailing
    possessive or a leading title ("Mr. Labrie" -> "Labrie" is the name; the title is not personal)."""
    parts: list[tuple[int, int]] = []
    pos = start
    for piece in re.split(r"(\n)", text[start:end]):
        a, b = pos, pos + len(piece)
        pos = b
        if piece == "\n":
            continue
        while a < b and not text[a].isalnum():
            a += 1
        while b > a and not text[b - 1].isalnum() and text[b - 1] != ".":
            b -= 1
        m = _POSSESSIVE.search(text, a, b)
        if m and m.start() > a:
            b = m.start()
        m = re.match(rf"{_TITLE}\s+", text[a:b], re.IGNORECASE)
        if m and m.end() < b - a:
            a += m.end()
        if b > a and text[b - 1] == "." and not re.search(r"\b[A-Z]\.$", text[a:b]):
            b -= 1  # a sentence's full stop, not an initial
        if b - a >= 2 and any(c.isalpha() for c in text[a:b]):
            parts.append((a, b))
    return parts


def _looks_like_name(value: str) -> bool:
    """One to four words, each starting with a letter, at least one capitalised, no organisation word."""
    tokens = value.split()
    return (
        1 <= len(tokens) <= 4
        and all(_NAME_TOKEN.match(t) for t in tokens)
        and any(t[0].isupper() for t in tokens)
        and _ORG_WORDS.search(value) is None
    )


def entity_spans(text: str, entities: Sequence[Entity]) -> list[EntitySpan]:
    """Our kinds of the model's entities in `text`, trimmed and relabelled by the words around them."""
    out: list[EntitySpan] = []
    for e in entities:
        kind = LABELS.get(e.label)
        for a, b in _trim(text, e.start, e.end):
            value = text[a:b]
            before = text[max(0, a - 40) : a]
            after = text[b : b + 30]
            score = e.score
            name = _looks_like_name(value)
            person_after = _PERSON_AFTER.match(after) is not None
            if name and (_PERSON_STRONG.search(before) or (kind != "LOCATION" and person_after)):
                kind, score = "PERSON", max(score, 0.95)
            elif kind != "PERSON" and name and _PLACE_BEFORE.search(before):
                kind, score = "LOCATION", max(score, 0.9)
            elif (
                name
                and (kind == "ORGANIZATION" or (kind == "LOCATION" and person_after))
                and _PERSON_WEAK.search(before)
            ):
                # "by Szabina J Gelencsér", "with Kónya, Becker": a name-like entity the model called an
                # organisation, right after words that usually precede a person.
                kind, score = "PERSON", 0.75
            if kind == "PERSON" and (
                _ORG_WORDS.search(value)
                or value.startswith("The ")
                or (_WORKS_FOR.search(before) and not _PERSON_STRONG.search(before))
                or _ORG_AFTER.match(after)
            ):
                # "Russell Investments", "The Clean Power Finance", "I work for Citigroup", "Coden is a
                # design agency"
                kind = "ORGANIZATION"
            if kind == "PERSON" and value.casefold() in _FIELD_LABELS:
                continue  # "Mobile: 0688 ...", "Fax: ..." in a signature: a field's label, not a name
            if kind == "PERSON" and value.isupper() and len(value) <= 5:
                continue  # an acronym ("SSN", "ATM") is nobody's name
            if kind is None:
                continue
            if value.islower() and " " not in value:
                score = min(score, 0.6)
            out.append(EntitySpan(kind, a, b, score))
    return out


_RELATIVES = (
    r"(?:kid|son|daughter|child|wife|husband|partner|brother|sister|mother|father|mom|mum|dad|friend"
    r"|colleague|boss|uncle|aunt|cousin|nephew|niece|grandson|granddaughter|grandmother|grandfather)"
)
_PERSON_CUE_AT = re.compile(
    rf"(?:{_NAME_IS}|\bname\s*:|\b{_TITLE}(?=\s)|\bdear|\bdirected\s+by\s*:?|\bwritten\s+by"
    rf"|\bcalls?\s+me|\bmy\s+{_RELATIVES}(?:['’]s\s+name\s+is)?)[ \t]+",
    re.IGNORECASE,
)
_PLACE_CUE_AT = re.compile(
    r"(?:\b(?:flew|flies|fly|flying|moved|move|moving|relocated|travel(?:l)?ed|travel(?:l)?ing|trip|drove|driving)"
    r"(?:\s+(?:here|there|back))?\s+(?:to|from)|\boriginally\s+from|\b(?:born|lives?|living|based|located|raised"
    r"|grew\s+up)\s+in|\bi\s+am\s+in|\bi['’]m\s+in|\bwe\s+are\s+in|\barrived\s+(?:at|in)|\bhome\s+(?:city|town)"
    r"|\b(?:city|town|village)\s+of)[ \t]+",
    re.IGNORECASE,
)
_PARTICLES = _words("de del della di da do dos la le van von der den ten")
_NEXT_WORD = re.compile(r"[ \t]*([^\W\d_](?:[^\W\d_]|['’-](?=[^\W\d_]))*\.?)")


# Cues after which one lowercase word is still a name ("my name is vitoria", "call me višeslav").
_LOWERCASE_OK = re.compile(r"(?:name\s+is|calls?\s+me)\s*$", re.IGNORECASE)
_NOT_NAMES = _OPENERS | _words("not unknown private secret none nothing irrelevant too really just very")


def _cued(text: str, cues: re.Pattern[str], kind: EntityKind, score: float) -> list[EntitySpan]:
    out: list[EntitySpan] = []
    for cue in cues.finditer(text):
        if _LOWERCASE_OK.search(cue.group(0)) and (m := _NEXT_WORD.match(text, cue.end())):
            word = m.group(1).rstrip(".")
            if word.islower() and len(word) > 1 and word not in _NOT_NAMES:
                # One word only: a lowercase run after the cue ("is vitoria and i live") is not a name.
                out.append(EntitySpan(kind, m.start(1), m.start(1) + len(word), 0.7))
                continue
        pos = end = cue.end()
        for _ in range(4):
            m = _NEXT_WORD.match(text, pos)
            if not m:
                break
            word = m.group(1)
            if word.casefold() in _PARTICLES and end > cue.end():
                pos = m.end()  # "Chiclana de la Frontera": only kept if a capitalised word follows
                continue
            if not word[0].isupper() or word.casefold().rstrip(".") in _OPENERS:
                break
            pos = end = m.end()
        for a, b in _trim(text, cue.end(), end):
            if _looks_like_name(text[a:b]) and all(a >= o.end or b <= o.start for o in out):
                out.append(EntitySpan(kind, a, b, score))
    return out


def cued_persons(text: str) -> list[EntitySpan]:
    """Names right after words that announce a person ("my name is", "Mr.", "Dear", "Directed by:",
    "my kid"), without a model: one to four capitalised words (initials allowed) after such a cue."""
    return _cued(text, _PERSON_CUE_AT, "PERSON", 0.9)


def cued_places(text: str) -> list[EntitySpan]:
    """Places right after words that announce one ("flew to", "originally from", "I am in")."""
    return _cued(text, _PLACE_CUE_AT, "LOCATION", 0.8)
