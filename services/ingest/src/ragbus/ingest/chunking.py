"""Token-aware chunking with overlap that prefers paragraph and sentence boundaries.

A chunk is a run of whole words of the normalised text, at most `max_tokens` tokens long. Where it ends
is chosen among the word boundaries in its last half (from `min_tokens` to `max_tokens`): the strongest
boundary wins (paragraph > line that ends a sentence or starts a list/heading > sentence > clause >
space > between a word and its punctuation) and, among equals, the latest. The next chunk starts up to
`overlap_tokens` earlier, at the earliest strongest boundary in that window, so that the overlap begins
on a sentence where there is one.

Cutting only between words means a chunk tokenized on its own gives exactly the tokens counted here,
so the budget holds for what the embedder sees (plus its own [CLS]/[SEP]).

Heading-aware chunking (`ChunkingConfig.headings`) cuts the text at its Markdown headings first
(`sections`): no chunk, and no overlap, runs from one section into the next, and each chunk knows the
headings it is under. Sentence-window chunking (`ChunkingConfig.sentence_window`) makes one chunk per
sentence: the sentence is what is embedded (a precise match), its neighbours are what the model reads.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragbus.ingest.ports import Tokens

# Boundary strengths for a cut before token t.
INSIDE_WORD = -1  # never chosen unless one word is longer than the whole budget
ADJACENT = 0  # between a word and the punctuation that touches it: "word|,"
SPACE = 1
CLAUSE = 2
SENTENCE = 3
LINE = 4
PARAGRAPH = 5

_SENTENCE_END = frozenset(".!?…。！？")
_FULL_WIDTH_STOPS = frozenset("。！？")
_CLOSERS = frozenset("\"')]}»”’")
_CLAUSE_END = frozenset(",;:–—")
# A line that starts a list item, a heading, a quote or a table row (Markdown, reStructuredText).
_BLOCK_START = re.compile(r"(?:[#>|*+-]|\d{1,3}[.)]|\.\. )")


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    max_tokens: int = 200
    overlap_tokens: int = 40
    # A chunk may end early at a good boundary, but not before this many tokens (default: half the budget).
    min_tokens: int | None = None
    # Cut at Markdown headings first: chunks stay within a section and carry its heading path.
    headings: bool = False
    # Sentence windows: > 0 makes each sentence a chunk's focus (what is embedded), with up to this many
    # sentences on either side as its text (what the model reads), within the token budget.
    sentence_window: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not 1 <= self.floor <= self.max_tokens:
            raise ValueError("min_tokens must be between 1 and max_tokens")
        if not 0 <= self.overlap_tokens < self.floor:
            raise ValueError("overlap_tokens must be at least 0 and less than min_tokens (half the budget)")

    @property
    def floor(self) -> int:
        return self.min_tokens if self.min_tokens is not None else max(1, self.max_tokens // 2)


@dataclass(frozen=True, slots=True)
class Span:
    """A chunk as a token range [start, end) and a char range [char_start, char_end) of the text."""

    start: int
    end: int
    char_start: int
    char_end: int
    token_count: int  # the chunk's text tokenized on its own (end - start, unless cut inside a word)


def boundary_strengths(text: str, tokens: Tokens) -> list[int]:
    """Strength of a cut before each token (index 0 is the start of the text)."""
    starts, ends, words = tokens.starts, tokens.ends, tokens.words
    out = [PARAGRAPH] * len(tokens)
    for t in range(1, len(tokens)):
        if words[t] == words[t - 1]:
            out[t] = INSIDE_WORD
            continue
        gap_start, gap_end = ends[t - 1], starts[t]
        # Every mark that matters is one character long: longer tokens are words.
        prev = text[gap_start - 1] if gap_start - starts[t - 1] == 1 else ""
        # A closing quote or bracket right after a full stop still ends the sentence: `."` or `.)`.
        if (
            prev in _CLOSERS
            and t >= 2
            and ends[t - 2] == starts[t - 1]
            and text[starts[t - 1] - 1] in _SENTENCE_END
        ):
            prev = text[starts[t - 1] - 1]
        ends_sentence = prev in _SENTENCE_END and not text[gap_end].islower()
        if gap_start == gap_end:
            # Scripts without spaces end sentences with a full-width stop and go straight on.
            out[t] = SENTENCE if prev in _FULL_WIDTH_STOPS else ADJACENT
            continue
        newlines = (
            0 if gap_end - gap_start == 1 and text[gap_start] == " " else text.count("\n", gap_start, gap_end)
        )
        if newlines >= 2:
            out[t] = PARAGRAPH
        elif newlines == 1 and (ends_sentence or _BLOCK_START.match(text, gap_end)):
            out[t] = LINE
        elif ends_sentence:
            out[t] = SENTENCE
        elif prev in _CLAUSE_END or prev in _CLOSERS:
            out[t] = CLAUSE
        else:
            # A bare line break inside a sentence is hard wrapping: no better than a space.
            out[t] = SPACE
    return out


def _best(strengths: list[int], lo: int, hi: int, *, latest: bool) -> int | None:
    """The strongest cut in [lo, hi] (latest or earliest among equals), ignoring cuts inside words."""
    best, best_strength = None, INSIDE_WORD
    order = range(hi, lo - 1, -1) if latest else range(lo, hi + 1)
    for t in order:
        if strengths[t] > best_strength:
            best, best_strength = t, strengths[t]
            if best_strength == PARAGRAPH:
                break
    return best


def plan_chunks(
    text: str,
    tokens: Tokens,
    config: ChunkingConfig,
    count: Callable[[str], int] | None = None,
    breaks: Sequence[int] = (),
) -> list[Span]:
    """Cut the tokens of `text` into overlapping spans of at most `config.max_tokens` tokens.

    `count` (the tokenizer's) re-counts the rare chunk that starts or ends inside a word longer than
    the budget: a word piece cut loose from its word may tokenize into more pieces on its own, and the
    chunk is shortened until it fits. `breaks`: token indexes no chunk (nor its overlap) crosses, such
    as the start of a section.
    """
    n = len(tokens)
    if n == 0:
        return []
    strengths = boundary_strengths(text, tokens)
    edges = sorted({0, n, *(b for b in breaks if 0 < b < n)})
    spans: list[Span] = []
    for lo, hi in itertools.pairwise(edges):
        spans += _plan_range(text, tokens, strengths, config, count, lo, hi)
    return spans


def _plan_range(
    text: str,
    tokens: Tokens,
    strengths: list[int],
    config: ChunkingConfig,
    count: Callable[[str], int] | None,
    first: int,
    n: int,
) -> list[Span]:
    """plan_chunks on the tokens [first, n)."""
    spans: list[Span] = []
    start = first
    while True:
        if n - start <= config.max_tokens:
            end = n
        else:
            hi = start + config.max_tokens
            end = (
                _best(strengths, start + config.floor, hi, latest=True)
                # One word straddles the whole window: end before it if it starts past `start`,
                or _best(strengths, start + 1, hi, latest=True)
                # else (a single word longer than the budget) cut inside it.
                or hi
            )
        token_count = end - start
        if count is not None and (
            strengths[start] == INSIDE_WORD or (end < n and strengths[end] == INSIDE_WORD)
        ):
            token_count = count(text[tokens.starts[start] : tokens.ends[end - 1]])
            while token_count > config.max_tokens and end - start > 1:
                end -= 1
                token_count = count(text[tokens.starts[start] : tokens.ends[end - 1]])
        spans.append(Span(start, end, tokens.starts[start], tokens.ends[end - 1], token_count))
        if end == n:
            return spans
        next_start = end
        if config.overlap_tokens:
            lo = max(start + 1, end - config.overlap_tokens)
            if lo <= end - 1:
                next_start = _best(strengths, lo, end - 1, latest=False) or end
        start = next_start


# An ATX heading line of Markdown (what the HTML and DOCX loaders write headings as, too).
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading: [start, end) chars, and the headings above it, outermost first."""

    start: int
    end: int
    path: tuple[str, ...]


def sections(text: str) -> list[Section]:
    """The text cut at its Markdown headings; text before the first heading has an empty path."""
    out: list[Section] = []
    stack: list[tuple[int, str]] = []  # (level, heading) of the headings open at this point
    start = 0
    path: tuple[str, ...] = ()
    for match in _HEADING.finditer(text):
        if match.start() > start:
            out.append(Section(start, match.start(), path))
        level = len(match.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, match.group(2).strip()))
        start, path = match.start(), tuple(h for _, h in stack)
    if start < len(text):
        out.append(Section(start, len(text), path))
    return out


@dataclass(frozen=True, slots=True)
class WindowSpan:
    """A sentence window: the window as a Span, and the focus sentence's chars [focus_start, focus_end)."""

    span: Span
    focus_start: int
    focus_end: int


def plan_sentence_windows(
    text: str, tokens: Tokens, config: ChunkingConfig, breaks: Sequence[int] = ()
) -> list[WindowSpan]:
    """One chunk per sentence: the sentence is its focus, and its text is the sentence with up to
    `config.sentence_window` sentences on either side (nearest first), within `config.max_tokens` and
    never across a break. A sentence longer than the budget is cut as `plan_chunks` would, each piece
    a sentence of its own."""
    n = len(tokens)
    if n == 0:
        return []
    strengths = boundary_strengths(text, tokens)
    edges = sorted({0, n, *(b for b in breaks if 0 < b < n)})
    out: list[WindowSpan] = []
    whole = ChunkingConfig(max_tokens=config.max_tokens, overlap_tokens=0, min_tokens=1)
    for lo, hi in itertools.pairwise(edges):
        starts = [lo, *(t for t in range(lo + 1, hi) if strengths[t] >= SENTENCE)]
        sentences: list[tuple[int, int]] = []
        for a, b in itertools.pairwise([*starts, hi]):
            if b - a <= config.max_tokens:
                sentences.append((a, b))
            else:
                sentences += [
                    (p.start, p.end) for p in _plan_range(text, tokens, strengths, whole, None, a, b)
                ]
        for i, (a, b) in enumerate(sentences):
            first, last = i, i
            for _ in range(config.sentence_window):
                grew = False
                if first > 0 and sentences[last][1] - sentences[first - 1][0] <= config.max_tokens:
                    first, grew = first - 1, True
                if (
                    last + 1 < len(sentences)
                    and sentences[last + 1][1] - sentences[first][0] <= config.max_tokens
                ):
                    last, grew = last + 1, True
                if not grew:
                    break
            start, end = sentences[first][0], sentences[last][1]
            span = Span(start, end, tokens.starts[start], tokens.ends[end - 1], end - start)
            out.append(WindowSpan(span, tokens.starts[a], tokens.ends[b - 1]))
    return out
