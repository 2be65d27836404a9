"""Text normalisation: one canonical form per document, so that the same content gives the same version.

Kept: paragraph boundaries (one blank line), line breaks (lists, headings, verse), and every visible
character. Removed: control and invisible format characters, layout whitespace, line-end hyphenation.
"""

from __future__ import annotations

import re
import sys
import unicodedata

from ragbus.common.ids import content_hash

__all__ = ["content_hash", "normalize_text"]

# Page breaks and the Unicode paragraph separator start a new paragraph; other line separators a line.
_PARAGRAPH_BREAKS = re.compile("[\x0c\u2029]")
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x1c\x1d\x1e\u2028]")


def _invisible_class() -> str:
    """A regex class of the characters to drop: controls (but tab and newline), format characters (but
    the zero-width (non-)joiners that Persian, Indic scripts and emoji need), lone surrogates (they
    cannot even be encoded as UTF-8) and the noncharacters U+FFFE/U+FFFF."""
    keep = {"\t", "\n", "\u200c", "\u200d"}
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        drop = (unicodedata.category(ch) in {"Cc", "Cf", "Cs"} and ch not in keep) or cp in {0xFFFE, 0xFFFF}
        if drop:
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


# C1 control characters in text almost always come from Windows-1252 bytes decoded as Latin-1 upstream
# (\x93 \x94 are really “ ”, \x96 is –, \x85 is … far more often than the NEL control): restore what
# they meant rather than drop them. The five bytes cp1252 leaves undefined stay controls, dropped below.
_C1_AS_CP1252 = {b: ch for b in range(0x80, 0xA0) if (ch := bytes([b]).decode("cp1252", errors="ignore"))}

_INVISIBLE = re.compile(f"[{_invisible_class()}]+")
_HSPACE = re.compile(r"[^\S\n]+")  # any whitespace but the newline
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_RUNS = re.compile(r"\n{3,}")
# "hyphen-\nated" → "hyphenated", only between letters and when the next one is lower case: a line-end
# hyphen before a capital ("Jean-\nPaul") or a digit is more likely part of the word.
_LINE_END_HYPHEN = re.compile(r"(?<=[^\W\d_])-\n(?=[^\W\d_])")


def _join_hyphenated(text: str) -> str:
    def join(m: re.Match[str]) -> str:
        return "" if text[m.end()].islower() else m.group()

    return _LINE_END_HYPHEN.sub(join, text)


def normalize_text(text: str, *, dehyphenate: bool = True) -> str:
    """The canonical form of a document's text (idempotent: normalising it again changes nothing)."""
    text = _PARAGRAPH_BREAKS.sub("\n\n", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = text.translate(_C1_AS_CP1252)
    # Drop invisibles before NFKC: dropping one later could bring a letter and its accent together
    # uncomposed, and the text would not be normalised any more.
    text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    text = _HSPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    if dehyphenate:
        text = _join_hyphenated(text)
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()
