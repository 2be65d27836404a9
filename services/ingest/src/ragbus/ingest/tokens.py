"""Token spans, and the regex tokenizer used when the MiniLM word-piece tokenizer is not installed.

The chunker needs, for every token, where it sits in the text and which word it belongs to: chunks are cut
between words only, so that a chunk tokenized again on its own (as the embedder will) gives the very
tokens that were counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ragbus.ingest.ports import Tokens, offsets

# CJK ideographs, kana and hangul: BERT-style tokenizers make each such character a word of its own.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# One "piece" approximates one word piece: letters in runs of at most 5, digits in runs of at most 2,
# each CJK character and each punctuation mark alone. On SciFact this counts ~0.85 of the MiniLM word
# pieces (p99 ≈ 1.0, see bench/chunking.py), so a chunk cut to N regex pieces rarely holds more than N
# real word pieces. One token per whole word would undercount by ~25% and overflow the model's window.
_PIECE = re.compile(rf"[{_CJK}]|[^\W\d_{_CJK}]{{1,5}}|\d{{1,2}}|_|[^\w\s]")
_WORDLIKE = re.compile(rf"[^\W{_CJK}]")
_SPACE = re.compile(r"\s")

# Long texts are tokenized in blocks cut at whitespace (word-piece and regex tokenizers never join
# across whitespace, so the result is the same), which bounds the tokenizer's transient memory.
BLOCK_CHARS = 65_536


def tokenize_in_blocks(
    tokenize: Callable[[str], Tokens], text: str, block_chars: int = BLOCK_CHARS
) -> Tokens:
    """Tokenize `text` block by block, each cut at whitespace; same tokens as one call on the whole."""
    if len(text) <= block_chars:
        return tokenize(text)
    out = Tokens()
    start = 0
    while start < len(text):
        end = min(start + block_chars, len(text))
        if end < len(text):
            # Cut at the last whitespace of the block; a block without any is cut where it is.
            cut = max((m.start() for m in _SPACE.finditer(text, start + block_chars // 2, end)), default=end)
            end = cut
        out.extend(tokenize(text[start:end]), char_offset=start)
        start = end
    return out


class RegexTokenizer:
    """Dependency-free estimate of word-piece counts (see `_PIECE`): the fallback tokenizer."""

    name = "regex"

    def tokenize(self, text: str) -> Tokens:
        starts, ends, words = offsets(), offsets(), offsets()
        word = -1
        prev_end = -1
        prev_wordlike = False
        for m in _PIECE.finditer(text):
            start, end = m.span()
            # Pieces of one run of letters/digits form a word; punctuation and CJK stand alone (as in BERT).
            wordlike = _WORDLIKE.match(m.group()) is not None
            if not (wordlike and prev_wordlike and start == prev_end):
                word += 1
            starts.append(start)
            ends.append(end)
            words.append(word)
            prev_end, prev_wordlike = end, wordlike
        return Tokens(starts, ends, words)

    def count(self, text: str) -> int:
        return sum(1 for _ in _PIECE.finditer(text))
