"""What the guard's use cases need: an input guard and an output guard, and the results they return.

The defaults are the checks of `input_checks` / `output_checks`; a learned classifier (an injection
model, an NER model for names and addresses) would be another implementation, in `adapters/`.
Implementations are synchronous and CPU-bound on short texts; one that calls a model server would be
made async here first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ragbus.common.events import AnswersDrafted, Citation, Verdict


@dataclass(frozen=True, slots=True)
class InputResult:
    """The verdicts on a question, what the user is told when one failed, and the question as it goes
    on (personal data or secrets replaced by placeholders where the tenant's policy says `redact`)."""

    verdicts: list[Verdict]
    user_reason: str | None = None
    question: str | None = None

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]


@dataclass(frozen=True, slots=True)
class OutputResult:
    """An answer as it may reach the user (possibly redacted), or blocked with the reason."""

    status: Literal["answered", "blocked"]
    answer: str
    reason: str | None
    citations: list[Citation]
    verdicts: list[Verdict]


class PromptScorer(Protocol):
    """A learned classifier of prompts: per label (`attack`, `harmful`) a probability. CPU-bound."""

    @property
    def name(self) -> str: ...

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]: ...


class InputGuard(Protocol):
    """Judges a question under the tenant's policy. Blocking (CPU): the use case runs it off the loop."""

    def check(self, question: str, tenant: str = "default") -> InputResult: ...


class OutputGuard(Protocol):
    def check(self, drafted: AnswersDrafted) -> OutputResult: ...
