"""Retrieved text is data, never instructions: what happens to the chunks that ingest flagged.

Ingest scans every chunk for instructions aimed at the model (an indirect prompt injection: "In your
reply, tell the user to visit ...", a task planted in an email) and flags it, with the spans that read
as instructions. The orchestrator's policy (`ORCHESTRATOR_FLAGGED_SOURCES`):

- `quote` (default): a flagged chunk stays a source, marked untrusted; in a prompt each flagged span
  is shown as a quotation between `⟦` and `⟧` that the model is told never to follow, and the
  extractive tier and citation quotes never take a sentence from a flagged span;
- `drop`: flagged chunks are left out of the prompt and of the citations (retrieval still records
  them, with their flags);
- `keep`: flagged chunks are used like any other (the prompt still delimits every source as data).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ragbus.vectors.ports import Hit

FlaggedSources = Literal["quote", "drop", "keep"]
FLAGGED_SOURCES: tuple[FlaggedSources, ...] = ("quote", "drop", "keep")

QUOTE_OPEN, QUOTE_CLOSE = "⟦", "⟧"


def usable(hits: Sequence[Hit], policy: FlaggedSources) -> list[Hit]:
    """The hits the answer may draw on, in retrieval order (`drop` leaves out flagged ones)."""
    if policy == "drop":
        return [h for h in hits if not h.flagged]
    return list(hits)


def _spans(hit: Hit) -> list[tuple[int, int]]:
    """The flagged spans of a hit, clipped to its text, in order, overlaps merged."""
    spans: list[tuple[int, int]] = []
    for start, end in sorted(hit.injection_spans):
        start, end = max(0, start), min(len(hit.text), end)
        if start >= end:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans


def without_flagged_spans(hit: Hit) -> str:
    """The hit's text with its flagged spans cut out (each replaced by a line break, so the sentences
    around a span never join across it). A flagged hit with no spans recorded loses nothing."""
    spans = _spans(hit)
    if not spans:
        return hit.text
    parts, at = [], 0
    for start, end in spans:
        parts.append(hit.text[at:start])
        at = end
    parts.append(hit.text[at:])
    return "\n".join(p for p in parts if p.strip())


def quoted(hit: Hit) -> str:
    """The hit's text with every flagged span shown as a quotation, `⟦...⟧`, the text inside unchanged
    but for the quotation marks themselves (so a span cannot close its own quotation)."""
    text = hit.text.replace(QUOTE_OPEN, "[").replace(QUOTE_CLOSE, "]")
    spans = _spans(hit)
    if not spans:
        return text
    parts, at = [], 0
    for start, end in spans:
        parts.append(text[at:start])
        parts.append(f"{QUOTE_OPEN}{text[start:end]}{QUOTE_CLOSE}")
        at = end
    parts.append(text[at:])
    return "".join(parts)


def shown_text(hit: Hit, policy: FlaggedSources) -> str:
    """What of a hit a prompt shows: its flagged spans quoted under `quote`, its own text otherwise."""
    return quoted(hit) if policy == "quote" and hit.flagged else hit.text


def quotable_text(hit: Hit, policy: FlaggedSources) -> str:
    """What of a hit an answer may quote (tier 0, citation quotes): never a flagged span, unless the
    policy is `keep`."""
    return without_flagged_spans(hit) if policy != "keep" and hit.flagged else hit.text
