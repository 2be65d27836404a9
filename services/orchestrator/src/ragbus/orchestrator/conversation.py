"""Conversation memory's rules, pure: which earlier turns a follow-up sees, and the standalone question
retrieval searches for it.

A follow-up ("What about its height?", "And in 2020?", "Why?") names nothing retrieval can find; the
question it stands for is the earlier one plus itself. The standalone form is built without a model
(the local tier is too small to rewrite reliably, and a rewrite costs a call on every turn): a question
that refers back (a pronoun or demonstrative, an opening "and / what about / how about", or fewer than
three content words) is searched together with the previous question; any other question stands alone.
The chat tiers see the earlier turns themselves, as the conversation's messages, within a budget.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ragbus.common.stopwords import STOPWORDS
from ragbus.orchestrator.ports import Turn


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    enabled: bool = True
    max_turns: int = 6  # kept per conversation; older ones are forgotten
    max_chars: int = 2000  # of earlier turns shown to a chat tier (the newest first, whole turns)


_REFERS_BACK = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|him|his|she|her|hers|there|then|"
    r"the same|the former|the latter|above|previous|earlier|else|also|too)\b",
    re.IGNORECASE,
)
_CONTINUES = re.compile(r"^\W*(and|but|or|so|also|what about|how about|why|why not|how come|then)\b", re.I)
_WORD = re.compile(r"[^\W_]+")


def is_follow_up(question: str) -> bool:
    """Does the question lean on an earlier one (see the module docstring)?"""
    content = [w for w in _WORD.findall(question.lower()) if w not in STOPWORDS]
    return len(content) < 3 or bool(_REFERS_BACK.search(question)) or bool(_CONTINUES.match(question))


def standalone(question: str, history: Sequence[Turn]) -> str:
    """What retrieval (and the semantic cache) search for: the question, preceded by the previous
    question when it is a follow-up."""
    if not history or not is_follow_up(question):
        return question
    return f"{history[-1].question.strip()} {question.strip()}"


def recent(history: Sequence[Turn], max_chars: int) -> list[Turn]:
    """The newest whole turns within `max_chars`, oldest first (what a chat tier is shown)."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(history):
        size = len(turn.question) + len(turn.answer)
        if used + size > max_chars:
            break
        kept.append(turn)
        used += size
    return kept[::-1]
