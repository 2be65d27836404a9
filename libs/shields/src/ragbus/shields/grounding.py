"""Is each sentence of an answer supported by the sources it cites? Pure, deterministic, explainable.

A sentence is *supported* when enough of its content words (stemmed, stopwords and the citation markers
left out) occur in the text of the chunks it cites, and every number it states occurs there too: an
invented figure ("PGRP-15KP2", "in 1987", "42%") is the commonest unfaithful answer of a small model,
and words alone would let it through. A sentence without a marker is judged against every cited chunk
(the marker of the next sentence often covers both). Abstentions ("I don't know") and sentences with
fewer than `min_terms` content words ("Yes.", "In short:") claim nothing and are not judged.

Lexical support is a floor, not entailment: a paraphrase with other words can fall under the threshold
and a sentence that recombines the source's words into a false claim can pass. It catches what it is
cheap to catch (answers built from the model's memory rather than the sources), in microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ragbus.common.stopwords import STOPWORDS as COMMON_STOPWORDS

_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
# `[1]`, `[1, 2]`, `[1-3]`, `[Source 2]`; not `a[0]` (an index in code).
_LABEL = r"(?:(?:sources?|docs?|documents?|refs?)\s*)?"
MARKER = re.compile(
    rf"(?<![\w\[])\[\s*{_LABEL}(\d{{1,3}}(?:\s*[,;–-]\s*{_LABEL}\d{{1,3}})*)\s*\]", re.IGNORECASE
)
# A sentence ends at . ! ? before a capital or digit, at a blank line, or before a list item.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n\s*(?:[-*+]|\d{1,3}[.)])\s+"
)

# Besides function words, the words answers use to talk about their sources.
STOPWORDS = COMMON_STOPWORDS | frozenset(
    [
        "source",
        "sources",
        "document",
        "documents",
        "based",
        "mentioned",
        "states",
        "stated",
        "shows",
        "shown",
        "provided",
        "context",
        "information",
        "answer",
        "text",
        "passage",
    ]
)


def stem(word: str) -> str:
    """A crude suffix stripper: enough to match "consumers"/"consumer", "retried"/"retry"."""
    for suffix, keep in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + keep
    return word


def content_terms(text: str) -> set[str]:
    """Stemmed words other than stopwords and numbers (numbers are judged on their own, whole)."""
    words = (m.group().casefold() for m in _WORD.finditer(text))
    return {stem(w) for w in words if w not in STOPWORDS and not w.isdigit()}


def numbers(text: str) -> set[str]:
    """The numbers a text states, normalised ("1,000" = "1000"); single digits are left out (list
    items, "one of 2 groups" paraphrased)."""
    found = {m.group().replace(",", "") for m in _NUMBER.finditer(text)}
    return {n for n in found if len(n.replace(".", "")) > 1}


def markers(text: str) -> set[int]:
    """The source numbers a text refers to with `[n]`, `[n, m]` or `[n-m]` markers (a range spans at
    most 50)."""
    found: set[int] = set()
    for m in MARKER.finditer(text):
        for part in re.split(r"\s*[,;]\s*", m.group(1)):
            bounds = [int(x) for x in re.findall(r"\d+", part)]
            if len(bounds) == 2 and 0 < bounds[1] - bounds[0] <= 50:
                found.update(range(bounds[0], bounds[1] + 1))
            else:
                found.update(bounds)
    return found


_LEADING_MARKERS = re.compile(rf"^(?:\s*{MARKER.pattern})+", re.IGNORECASE)


def sentences(answer: str) -> list[str]:
    """The answer's sentences, each with its markers: a marker after the full stop ("... birth. [1]
    Recently ...") belongs to the sentence before it."""
    out: list[str] = []
    for piece in (p.strip() for p in _SENTENCE_END.split(answer) if p and p.strip()):
        lead = _LEADING_MARKERS.match(piece)
        if lead and out:
            out[-1] = f"{out[-1]} {lead.group().strip()}"
            piece = piece[lead.end() :].strip()
        if piece:
            out.append(piece)
    return out


@dataclass(frozen=True, slots=True)
class SentenceSupport:
    """How well one sentence is supported: the share of its content words found in its sources, and
    the numbers it states that no source contains."""

    sentence: str
    sources: tuple[int, ...]
    terms: int
    coverage: float
    missing_numbers: tuple[str, ...]
    judged: bool
    supported: bool


@dataclass(frozen=True, slots=True)
class Support:
    """Every sentence's support; `score` is the share of judged sentences that are supported (1.0 when
    nothing was judged)."""

    sentences: tuple[SentenceSupport, ...]

    @property
    def judged(self) -> list[SentenceSupport]:
        return [s for s in self.sentences if s.judged]

    @property
    def unsupported(self) -> list[SentenceSupport]:
        return [s for s in self.sentences if s.judged and not s.supported]

    @property
    def score(self) -> float:
        judged = self.judged
        return sum(s.supported for s in judged) / len(judged) if judged else 1.0

    def holds(self, min_share: float) -> bool:
        """Whether the answer is supported enough: every judged sentence, or at least `min_share` of
        them (the rule the guard and the cascade both apply)."""
        return not self.unsupported or self.score >= min_share


def support(
    answer: str,
    sources: Mapping[int, str],
    *,
    min_coverage: float = 0.5,
    min_terms: int = 3,
    skip: Sequence[re.Pattern[str]] = (),
) -> Support:
    """Judge each sentence of `answer` against `sources` (source number -> text); a sentence's markers
    choose its sources, a sentence without one is judged against all of them. Sentences matching a
    pattern of `skip` (abstentions) are not judged."""
    source_terms = {n: content_terms(text) for n, text in sources.items()}
    source_numbers = {n: numbers(text) for n, text in sources.items()}
    judged: list[SentenceSupport] = []
    for sentence in sentences(answer):
        refs = tuple(sorted(n for n in markers(sentence) if n in sources)) or tuple(sorted(sources))
        plain = MARKER.sub(" ", sentence)
        terms = content_terms(plain)
        skipped = len(terms) < min_terms or any(p.search(plain) for p in skip) or not refs
        pool = set().union(*(source_terms[n] for n in refs)) if refs else set()
        known_numbers = set().union(*(source_numbers[n] for n in refs)) if refs else set()
        coverage = len(terms & pool) / len(terms) if terms else 1.0
        missing = tuple(sorted(numbers(plain) - known_numbers))
        judged.append(
            SentenceSupport(
                sentence=sentence,
                sources=refs,
                terms=len(terms),
                coverage=round(coverage, 3),
                missing_numbers=missing,
                judged=not skipped,
                supported=skipped or (coverage >= min_coverage and not missing),
            )
        )
    return Support(tuple(judged))
