"""Replacing found spans (personal data, secrets) in text. Pure functions, no I/O.

Two forms, for two uses:
- `redact`: each span becomes `[REDACTED:<KIND>]`. Answers keep this form (clients and the web app
  know it, and a reader of an answer needs no numbering: the data is gone for good).
- `pseudonymize`: typed, numbered placeholders (`[PERSON_1]`, `[EMAIL_1]`, `[PERSON_2]`), the same
  entity the same placeholder, so a question stays usable: "Did [PERSON_1] send [PERSON_2] the invoice,
  and what did [PERSON_1] reply?" still says who did what. The same entity: the same text up to case,
  spacing and punctuation ("Ann Lee" / "ann  lee"), the same digits for numbers (phones, cards, IBANs),
  and for a person a single name that is the first or last name of one already numbered ("Lee" after
  "Ann Lee"). `Pseudonymized.restore` puts the originals back (into a model's answer, say); the
  mapping holds the personal data itself and must never be logged or published.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

_NUMBERED_KINDS = frozenset({"PHONE", "CREDIT_CARD", "IBAN", "US_SSN"})
_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]*?)_(\d+)\]")


class Located(Protocol):
    """A found span: `PiiSpan`, `SecretSpan`, or anything with a kind and offsets."""

    @property
    def kind(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


def _ordered(spans: Iterable[Located]) -> list[Located]:
    """Spans by position; a span overlapping one already kept is dropped (the earlier, longer wins)."""
    kept: list[Located] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def redact(text: str, spans: Iterable[Located]) -> str:
    """`text` with each span replaced by `[REDACTED:<KIND>]`."""
    out: list[str] = []
    pos = 0
    for span in _ordered(spans):
        out.append(text[pos : span.start])
        out.append(f"[REDACTED:{span.kind}]")
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def _identity(kind: str, value: str) -> str:
    if kind in _NUMBERED_KINDS:
        return re.sub(r"\W", "", value).upper()
    return " ".join(re.sub(r"[^\w@.+-]", " ", value).casefold().split())


@dataclass(frozen=True)
class Pseudonymized:
    """Text with placeholders, and what each placeholder stands for (personal data: never log it)."""

    text: str
    originals: Mapping[str, str] = field(default_factory=dict, repr=False)

    def restore(self, text: str) -> str:
        """`text` (e.g. an answer to the pseudonymized question) with the placeholders put back."""
        return _PLACEHOLDER.sub(lambda m: self.originals.get(m.group(0), m.group(0)), text)


def pseudonymize(
    text: str, spans: Sequence[Located], known: Mapping[str, str] | None = None
) -> Pseudonymized:
    """`text` with each span replaced by a typed, numbered placeholder; `known` (the `originals` of an
    earlier turn) continues its numbering, so a conversation keeps one placeholder per entity."""
    originals: dict[str, str] = dict(known or {})
    ids: dict[tuple[str, str], str] = {}
    counts: dict[str, int] = {}
    for placeholder, value in originals.items():
        m = _PLACEHOLDER.fullmatch(placeholder)
        if m:
            kind, n = m.group(1), int(m.group(2))
            ids.setdefault((kind, _identity(kind, value)), placeholder)
            counts[kind] = max(counts.get(kind, 0), n)

    def placeholder_for(kind: str, value: str) -> str:
        key = (kind, _identity(kind, value))
        if key in ids:
            return ids[key]
        if kind == "PERSON" and " " not in key[1]:
            # "Lee" after "Ann Lee": the one numbered person whose first or last name it is.
            matches = {
                p for (k, v), p in ids.items() if k == kind and key[1] in (v.split()[0], v.split()[-1])
            }
            if len(matches) == 1:
                return matches.pop()
        counts[kind] = counts.get(kind, 0) + 1
        placeholder = f"[{kind}_{counts[kind]}]"
        ids[key] = placeholder
        originals[placeholder] = value
        return placeholder

    ordered = _ordered(spans)
    # Full names first, so that "Lee" before "Ann Lee" in the text still gets Ann Lee's placeholder.
    single = [s.kind == "PERSON" and " " not in text[s.start : s.end].strip() for s in ordered]
    chosen = dict.fromkeys(range(len(ordered)), "")
    for i in sorted(chosen, key=lambda i: single[i]):
        chosen[i] = placeholder_for(ordered[i].kind, text[ordered[i].start : ordered[i].end])
    out: list[str] = []
    pos = 0
    for i, span in enumerate(ordered):
        out.append(text[pos : span.start])
        out.append(chosen[i])
        pos = span.end
    out.append(text[pos:])
    return Pseudonymized("".join(out), originals)
