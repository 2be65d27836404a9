"""What the guard's handlers need: an input guard and an output guard.

The defaults are the pattern checks of `input_checks` / `output_checks`; a learned classifier (an
injection model, an NER model for names and addresses) would be another implementation, in `adapters/`.
Implementations are synchronous and CPU-bound on short texts; one that calls a model server would be
made async here first.
"""

from __future__ import annotations

from typing import Protocol

from ragbus.common.events import AnswersDrafted
from ragbus.guard.input_checks import InputResult
from ragbus.guard.output_checks import OutputResult


class InputGuard(Protocol):
    def check(self, question: str) -> InputResult: ...


class OutputGuard(Protocol):
    def check(self, drafted: AnswersDrafted) -> OutputResult: ...
