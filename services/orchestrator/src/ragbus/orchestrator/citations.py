"""Citation markers in a model's answer: `[n]` naming source `n` of the prompt.

Models write markers in many shapes (`[1]`, `[1, 3]`, `[Source 2]`); all are read. A marker naming no
source given (a hallucinated `[7]` of five) is removed from the text rather than shown to a user as if it
pointed somewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragbus.common.events import Citation
from ragbus.orchestrator.extractive import best_quote, citation_for
from ragbus.orchestrator.untrusted import FlaggedSources
from ragbus.vectors.ports import Hit

_LABEL = r"(?:(?:sources?|docs?|documents?|refs?)\s*)?"
_MARKER = re.compile(rf"\s?\[\s*{_LABEL}(\d{{1,3}}(?:\s*[,;]\s*{_LABEL}\d{{1,3}})*)\s*\]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    text: str
    citations: list[Citation]
    invalid: list[int] = field(default_factory=list)  # marker numbers that name no source
    fell_back: bool = False  # no valid marker: every source given is cited

    def note(self) -> str:
        """What parsing changed, in plain words (empty if the answer cited cleanly)."""
        notes = []
        if self.invalid:
            notes.append(f"removed markers naming no source: {', '.join(f'[{n}]' for n in self.invalid)}")
        if self.fell_back:
            notes.append(
                f"the answer cites no source by number, so all {len(self.citations)} sources "
                "it was given are cited"
            )
        return "; ".join(notes)


def parse_citations(answer: str, hits: Sequence[Hit], flagged: FlaggedSources = "quote") -> ParsedAnswer:
    """Read the `[n]` markers of an answer into citations of `hits` (source `n` = `hits[n-1]`); a
    citation's quote is never taken from a flagged span (unless the policy is `keep`)."""
    about: dict[int, list[str]] = {}  # source -> the answer passages that cite it (to pick a quote)
    invalid: list[int] = []
    last_end = 0

    def rewrite(match: re.Match[str]) -> str:
        nonlocal last_end
        numbers = [int(x) for x in re.findall(r"\d+", match.group(1))]
        passage = answer[last_end : match.start()]
        last_end = match.end()
        valid = [n for n in dict.fromkeys(numbers) if 1 <= n <= len(hits)]
        invalid.extend(n for n in numbers if not 1 <= n <= len(hits))
        for n in valid:
            about.setdefault(n, []).append(passage)
        lead = " " if match.group(0).startswith((" ", "\t", "\n")) else ""
        return (lead + "".join(f"[{n}]" for n in valid)) if valid else ""

    text = _MARKER.sub(rewrite, answer).strip()
    if about:
        citations = [
            citation_for(n, hits[n - 1], best_quote(hits[n - 1], " ".join(p), flagged) or None)
            for n, p in about.items()
        ]
        return ParsedAnswer(text, citations, invalid)
    fallback = [citation_for(n, h, best_quote(h, text, flagged) or None) for n, h in enumerate(hits, start=1)]
    return ParsedAnswer(text, fallback, invalid, fell_back=bool(hits))


_PLAIN_MARKER = re.compile(r"\[(\d{1,3})\]")


def renumber(text: str, citations: Sequence[Citation]) -> tuple[str, list[Citation]]:
    """Number the cited sources 1, 2, ... in the order the answer first cites them.

    Markers first name sources by their rank in the retrieval (`[2]` = second hit); a reader expects
    an answer's first citation to be `[1]`. Citations the text never marks (a fallback) keep their
    order after the marked ones.
    """
    by_n = {c.n: c for c in citations}
    order = [n for n in dict.fromkeys(int(m) for m in _PLAIN_MARKER.findall(text)) if n in by_n]
    order += [c.n for c in citations if c.n not in order]
    new = {old: i for i, old in enumerate(order, start=1)}
    text = _PLAIN_MARKER.sub(lambda m: f"[{new.get(int(m.group(1)), int(m.group(1)))}]", text)
    return text, [by_n[old].model_copy(update={"n": new[old]}) for old in order]
