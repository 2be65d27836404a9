"""Tier 0, extractive: answer by quoting the retrieved sentences that best match the question.

No model runs. Each retrieved chunk is cut into sentences; a sentence scores the IDF-weighted share of
the question's content words it contains (IDF computed over the retrieved sentences, so words every
passage shares count little) plus a fraction of its chunk's retrieval score. The best sentence answers,
and up to `max_sentences - 1` more join when they cover question words the answer does not yet cover.
Each quoted sentence is followed by `[n]`, `n` being its chunk's rank in the retrieval (source `n`).
A sentence from a span ingest flagged as instructions to the model is never quoted (`untrusted`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ragbus.common.events import Citation
from ragbus.orchestrator.retrieval import place_of
from ragbus.orchestrator.text import content_terms, content_words, split_sentences, word_count
from ragbus.orchestrator.untrusted import FlaggedSources, quotable_text
from ragbus.vectors.ports import Hit

# How much a sentence's chunk retrieval score adds to its lexical score (which lies in [0, 1]): equal
# footing. On SciFact's training claims any weight from 0.3 to 2 quotes a relevant abstract first within
# 2 points of each other (55-57%, vs 53% for retrieval's own top hit; bench/cascade.py).
RETRIEVAL_WEIGHT = 1.0
# A further sentence joins the answer only if it scores at least this share of the best one.
FOLLOWER_MIN_SHARE = 0.5
# Fragments shorter than this (headings, "Methods:") are not quoted as answers.
MIN_SENTENCE_WORDS = 4
MAX_QUOTE_CHARS = 600


@dataclass(frozen=True, slots=True)
class Sentence:
    source: int  # 1-based rank of its chunk in the retrieval: the `[n]` it is cited with
    text: str
    terms: frozenset[str]
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class ExtractiveAnswer:
    text: str
    citations: list[Citation]
    sentences: list[Sentence]
    question_terms: list[str]  # distinct stems of the question's content words
    covered_terms: list[str]
    top_score: float  # retrieval score of the best hit
    words: dict[str, str] = field(default_factory=dict)  # stem -> the word as the question wrote it

    def missing_words(self) -> list[str]:
        return [self.words.get(t, t) for t in self.question_terms if t not in self.covered_terms]

    @property
    def coverage(self) -> float:
        """Share of the question's distinct content words that the quoted sentences contain."""
        return len(self.covered_terms) / len(self.question_terms) if self.question_terms else 0.0


def _sentences(hits: Sequence[Hit], flagged: FlaggedSources) -> list[Sentence]:
    # A flagged span (an instruction planted in the document) is never quoted as an answer.
    return [
        Sentence(source=n, text=s, terms=frozenset(content_terms(s)))
        for n, hit in enumerate(hits, start=1)
        for s in split_sentences(quotable_text(hit, flagged))
        if word_count(s) >= MIN_SENTENCE_WORDS
    ]


def _idf(sentences: Sequence[Sentence], terms: Iterable[str]) -> dict[str, float]:
    """Smoothed IDF of `terms` over the retrieved sentences: a word found in none weighs the most."""
    df: Counter[str] = Counter()
    for s in sentences:
        df.update(s.terms)
    n = len(sentences)
    return {t: math.log((n + 1) / (df[t] + 1)) + 1 for t in terms}


def score_sentences(
    question: str, hits: Sequence[Hit], flagged: FlaggedSources = "quote"
) -> tuple[list[Sentence], list[str]]:
    """The retrieved sentences scored against the question, best first, and the question's terms
    (sentences of flagged spans left out unless the policy is `keep`)."""
    q_terms = list(dict.fromkeys(content_terms(question)))
    sentences = _sentences(hits, flagged)
    if not q_terms or not sentences:
        return [], q_terms
    weight = _idf(sentences, q_terms)
    total = sum(weight.values())
    scored = []
    for s in sentences:
        overlap = sum(weight[t] for t in q_terms if t in s.terms) / total
        if overlap > 0:
            retrieval = hits[s.source - 1].score
            scored.append(Sentence(s.source, s.text, s.terms, overlap + RETRIEVAL_WEIGHT * retrieval))
    # Ties keep retrieval order (stable sort), so the better-ranked chunk wins.
    scored.sort(key=lambda s: s.score, reverse=True)
    return scored, q_terms


def _select(scored: Sequence[Sentence], q_terms: Iterable[str], max_sentences: int) -> list[Sentence]:
    wanted = set(q_terms)
    chosen = [scored[0]]
    covered = wanted & scored[0].terms
    for s in scored[1:]:
        if len(chosen) >= max_sentences or s.score < FOLLOWER_MIN_SHARE * scored[0].score:
            break
        if (wanted & s.terms) - covered:  # it answers a part of the question the others do not
            chosen.append(s)
            covered |= wanted & s.terms
    return chosen


def citation_for(n: int, hit: Hit, quote: str | None) -> Citation:
    if quote and len(quote) > MAX_QUOTE_CHARS:
        quote = quote[: MAX_QUOTE_CHARS - 1].rstrip() + "…"
    return Citation(
        n=n,
        doc_id=hit.doc_id,
        chunk_id=hit.chunk_id,
        title=hit.title,
        score=hit.score,
        quote=quote,
        **place_of(hit),
    )


def extract_answer(
    question: str, hits: Sequence[Hit], *, max_sentences: int = 3, flagged: FlaggedSources = "quote"
) -> ExtractiveAnswer:
    """The best 1..max_sentences retrieved sentences, each followed by its source marker `[n]`; a
    sentence of a flagged span is never one of them (unless the policy is `keep`)."""
    top = max((h.score for h in hits), default=0.0)  # fusion may rank a lower cosine first
    words = {stem: word for word, stem in reversed(content_words(question))}  # first spelling wins
    scored, q_terms = score_sentences(question, hits, flagged)
    if not scored:
        return ExtractiveAnswer("", [], [], q_terms, [], top, words)
    chosen = _select(scored, q_terms, max(1, max_sentences))
    text = " ".join(f"{s.text} [{s.source}]" for s in chosen)
    quotes: dict[int, list[str]] = {}
    for s in chosen:
        quotes.setdefault(s.source, []).append(s.text)
    citations = [citation_for(n, hits[n - 1], " … ".join(q)) for n, q in quotes.items()]
    covered = [t for t in q_terms if any(t in s.terms for s in chosen)]
    return ExtractiveAnswer(text, citations, chosen, q_terms, covered, top, words)


def best_quote(hit: Hit, about: str, flagged: FlaggedSources = "quote") -> str:
    """The sentence of a chunk that shares the most content words with `about` (a model's answer);
    never a sentence of a flagged span (unless the policy is `keep`)."""
    text = quotable_text(hit, flagged)
    sentences = split_sentences(text) or [text]
    terms = set(content_terms(about))
    return max(sentences, key=lambda s: len(terms & set(content_terms(s))))  # first one wins ties
