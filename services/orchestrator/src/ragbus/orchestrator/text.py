"""Small, dependency-free text tools for the extractive tier: sentences, content words, crude stems.

Deliberately simple and deterministic: they only have to rank a few dozen retrieved sentences against
one question, and every decision they feed must be explainable in an attempt's `reason`.
"""

from __future__ import annotations

import re

from ragbus.common.stopwords import STOPWORDS

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


# Abbreviations whose final dot does not end a sentence (lower case, without the dot).
_ABBREVIATIONS = frozenset(
    "e.g i.e al fig figs vs etc approx ca cf dr mr mrs ms prof no nos vol eq eqs ref refs st".split()  # noqa: SIM905
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


# Markdown structure: a heading is a title, not a sentence to quote; a blank line or a list item ends
# whatever sentence came before it.
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items of a text, headings left out."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or _HEADING.match(line) or _LIST_ITEM.match(line):
            if current:
                blocks.append(" ".join(current))
            current = []
            if _HEADING.match(line) or not line.strip():
                continue
            line = _LIST_ITEM.sub("", line)
        current.append(line.strip())
    if current:
        blocks.append(" ".join(current))
    return blocks


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences; abbreviations (e.g., et al., Fig.) and decimals do not split.

    Sentences never cross a paragraph, a list item or a Markdown heading (headings are dropped).
    """
    return [s for block in _blocks(text) for s in _split_block(block)]


def _split_block(text: str) -> list[str]:
    text = " ".join(text.split())
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        before = text[start : match.start()].rstrip("\"')]")
        last = before.rsplit(" ", 1)[-1].lstrip("(\"'[").rstrip(".").lower()
        if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
            continue  # "et al. Smith", "J. Smith": not a sentence end
        sentences.append(text[start : match.start()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def stem(word: str) -> str:
    """A crude suffix stripper so that `increase`, `increases`, `increased` and `increasing` meet."""
    for suffix, replacement in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word  # "loss", "virus", "analysis" are not plurals
            return word[: len(word) - len(suffix)] + replacement
    # "reduce" / "reduc-ed": drop a final silent e so the bare form meets the inflected ones.
    return word[:-1] if word.endswith("e") and len(word) >= 4 else word


def content_words(text: str) -> list[tuple[str, str]]:
    """The content words of a text as (word, stem), in order, with repeats."""
    return [(w, stem(w)) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


def content_terms(text: str) -> list[str]:
    """The stems of the content words of a text, in order, with repeats."""
    return [s for _, s in content_words(text)]


def word_count(text: str) -> int:
    return len(_WORD.findall(text.lower()))


# What makes a question ask for reasoning or synthesis, which quoting the best sentences cannot give:
# an imperative that opens the request ("Explain ...", "Could you compare ..."), `why` / `how` (but not
# "how many", "how tall": facts), or a synthesis phrase. Matched narrowly on purpose: the same words
# inside a statement ("... stem cell differentiation", "... compared to women") are not requests.
_REQUEST_VERB = re.compile(
    r"^\W*(?:please\s+|(?:can|could|would)\s+you\s+(?:please\s+)?)?"
    r"(explain|describe|compare|contrast|summari[sz]e|discuss|analy[sz]e|evaluate|assess|outline|"
    r"elaborate|justify|recommend|should)\b",
    re.IGNORECASE,
)
_WHY_HOW = re.compile(r"\b(why|how)\b", re.IGNORECASE)
_HOW_LOOKUP = re.compile(r"how\s+(many|much|long|old|often|far|big|large|high|tall|soon)\b", re.IGNORECASE)
_SYNTHESIS = re.compile(
    r"\b(what(?:'s|\s+is|\s+are)\s+the\s+differences?|pros\s+and\s+cons|"
    r"advantages\s+and\s+disadvantages|in\s+summary|"
    # A request for a verdict: quotes show the evidence but do not say which way it points.
    r"support(?:s|ed)?\s+or\s+contradict(?:s|ed)?|true\s+or\s+false|agree\s+or\s+disagree|"
    r"confirm(?:s|ed)?\s+or\s+(?:refute|deny|contradict)(?:s|d|ed)?|prove\s+or\s+disprove|fact[- ]check)\b",
    re.IGNORECASE,
)


def non_lookup_trigger(question: str) -> str | None:
    """What makes a question ask for more than a lookup (`why`, `explain`...), or None for a lookup."""
    if match := _REQUEST_VERB.match(question):
        return match.group(1).lower()
    for match in _WHY_HOW.finditer(question):
        if not _HOW_LOOKUP.match(question, match.start()):
            return match.group(1).lower()
    if match := _SYNTHESIS.search(question):
        return " ".join(match.group(1).lower().split())
    return None
