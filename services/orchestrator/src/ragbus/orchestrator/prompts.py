"""The prompt registry: versioned templates, looked up by `name@version`.

A template never changes once released: a wording change is a new version, so every recorded answer
names the exact prompt that produced it (in its cascade attempt) and evaluations can compare versions
side by side. Add a template by defining it below and listing it in `_RELEASED`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragbus.orchestrator.ports import ChatMessage
from ragbus.vectors.ports import Hit

DONT_KNOW = "I don't know."


@dataclass(frozen=True, slots=True)
class Example:
    """A worked exchange shown before the real question (few-shot): sources, question, ideal answer."""

    sources: tuple[str, ...]
    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A chat prompt: a system message, optional worked examples, and a user message with `{sources}`
    and `{question}` slots."""

    name: str
    version: str
    system: str
    user: str
    examples: tuple[Example, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, question: str, hits: Sequence[Hit], *, max_source_chars: int) -> list[ChatMessage]:
        messages = [ChatMessage("system", self.system)]
        for ex in self.examples:
            shown = "\n\n".join(f"[{n}] {text}" for n, text in enumerate(ex.sources, start=1))
            messages.append(ChatMessage("user", self.user.format(sources=shown, question=ex.question)))
            messages.append(ChatMessage("assistant", ex.answer))
        sources = format_sources(hits, max_chars=max_source_chars)
        messages.append(ChatMessage("user", self.user.format(sources=sources, question=question.strip())))
        return messages


def format_sources(hits: Sequence[Hit], *, max_chars: int) -> str:
    """Number the sources `[1]`, `[2]`, ... in retrieval order, within a character budget.

    Each source gets an equal share of what is left, so one long chunk cannot crowd out the others and
    a short one hands its unused share on; the prompt then fits the model's context whatever the chunks.
    """
    parts: list[str] = []
    remaining = max_chars
    for i, hit in enumerate(hits):
        share = remaining // (len(hits) - i)
        title = f"{hit.title.strip()}. " if hit.title and hit.title.strip() else ""
        text = " ".join(f"{title}{hit.text}".split())
        if len(text) > share:
            text = text[: max(share - 1, 0)].rsplit(" ", 1)[0] + "…"
        remaining -= len(text)
        parts.append(f"[{i + 1}] {text}")
    return "\n\n".join(parts)


RAG_ANSWER_V1 = PromptTemplate(
    name="rag-answer",
    version="v1",
    # Short and literal: the default tier-1 model is small (135M parameters) and follows plain
    # instructions best; larger models follow it just as well.
    system=(
        "You answer questions using only the numbered sources the user gives you. "
        "After each sentence, cite the sources it comes from by number in square brackets, like [1]. "
        f"If the sources do not contain the answer, reply only: {DONT_KNOW}"
    ),
    user="Sources:\n{sources}\n\nQuestion: {question}\nAnswer with citations:",
)

# v2: v1 plus one worked example, since small models copy the shape of an answer better than they
# follow a description of it. Not the default: with SmolLM2-135M on SciFact claims it looped more and
# was accepted less often than v1 (bench/cascade.py); kept to compare prompts on other models.
RAG_ANSWER_V2 = PromptTemplate(
    name="rag-answer",
    version="v2",
    system=(
        "You answer questions using only the numbered sources the user gives you. "
        "End each sentence with the number of the source it comes from in square brackets, like [1]. "
        f"If the sources do not contain the answer, reply only: {DONT_KNOW}"
    ),
    user=RAG_ANSWER_V1.user,
    examples=(
        Example(
            sources=(
                "Mount Everest is 8,849 metres high.",
                "Everest lies in the Himalayas, on the border between Nepal and China.",
            ),
            question="Where is Mount Everest and how high is it?",
            answer=(
                "Mount Everest lies in the Himalayas, between Nepal and China [2]. "
                "It is 8,849 metres high [1]."
            ),
        ),
    ),
)

_RELEASED: tuple[PromptTemplate, ...] = (RAG_ANSWER_V1, RAG_ANSWER_V2)
PROMPTS: dict[str, PromptTemplate] = {p.id: p for p in _RELEASED}


def get_prompt(prompt_id: str) -> PromptTemplate:
    """The template `name@version`; raises KeyError naming the known ones."""
    try:
        return PROMPTS[prompt_id]
    except KeyError:
        raise KeyError(f"unknown prompt {prompt_id!r}; known: {', '.join(sorted(PROMPTS))}") from None
