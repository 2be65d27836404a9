"""Text normalisation for the pattern checks: the same attack, however it is spelled, reads the same.

Three views of one text, each for a kind of pattern:
- `plain`: NFKC (fullwidth and styled letters become plain ones), invisible format characters removed,
  case folded, blanks collapsed to one space and blank lines to one line break. Patterns in other
  scripts (Russian, Chinese, ...) match here.
- `folded`: `plain` plus homoglyphs folded to Latin (Cyrillic `а`, Greek `ο`, ...), leetspeak undone
  inside words that mix letters and digits (`1gn0r3` -> `ignore`), and letters spaced or dotted out
  (`i g n o r e`, `i.g.n.o.r.e`) joined again. Latin-script patterns match here.
- `squashed`: `folded` with everything but letters removed (`ig-nore  all pre vious` ->
  `ignoreallprevious`), for a few long phrases that no innocent text contains by chance.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Lowercase Cyrillic / Greek / Latin-extended letters that render like a Latin letter. Only used for the
# Latin view, so real Russian or Greek text is not harmed (its own patterns match the `plain` view).
_HOMOGLYPHS = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "һ": "h",
        "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ь": "b", "ɡ": "g",
        # Greek
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s",
        # Latin look-alikes that NFKC keeps
        "ı": "i", "ȷ": "j", "ℓ": "l", "ꞵ": "b", "ɑ": "a",
    }
)  # fmt: skip

# Leetspeak digits and symbols, undone only inside a token that also has letters ("2021" stays).
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "l"})  # fmt: skip
_LEET_CHARS = frozenset("0134579@$!|")
# Every token, as `fold` first scanned them: kept as the reference `_LEET_CANDIDATE` is tested against.
_LEET_TOKEN = re.compile(r"[\w@$!|]+")
# The tokens `_unleet` may change: those with a leet character (it returns every other token as it is),
# so that the ~25 tokens of a sentence cost one C scan, not 25 Python calls. A match starts at the
# start of a token (the look-behind) and ends at its end (greedy): the same tokens, whole.
_LEET_CANDIDATE = re.compile(r"(?<![\w@$!|])[\w@$!|]*[0134579@$!|][\w@$!|]*")

# Four or more single letters separated by one space / dot / dash / underscore / star: "i g n o r e".
_SPACED = re.compile(r"(?<![^\W_])(?:[^\W\d_][ .\-_*]){3,}[^\W\d_](?![^\W_])")
_SPACED_SEP = re.compile(r"[ .\-_*]")
_BLANKS = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r" ?\n[\s]*")
_NOT_LETTER = re.compile(r"[\W\d_]+")


@dataclass(frozen=True, slots=True)
class Views:
    plain: str
    folded: str
    squashed: str


def strip_invisible(text: str) -> str:
    """Drop format characters (zero-width spaces and joiners, bidi controls, soft hyphens, BOM)."""
    if text.isascii():
        return text
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def plain(text: str) -> str:
    text = unicodedata.normalize("NFKC", strip_invisible(text)).casefold()
    # Line breaks are kept (one per run): fake chat turns and markdown headers start a line.
    return _NEWLINES.sub("\n", _BLANKS.sub(" ", text)).strip()


def _unleet(match: re.Match[str]) -> str:
    token = match.group(0)
    # Trailing "!!!" or "|" is punctuation, not a letter.
    core = token.rstrip("!|")
    if _LEET_CHARS.isdisjoint(core) or not any(ch.isalpha() for ch in core):
        return token
    return core.translate(_LEET) + token[len(core) :]


def fold(plain_text: str) -> str:
    """The Latin view of an already `plain` text (see the module docstring)."""
    text = plain_text.translate(_HOMOGLYPHS)
    # Combining marks left after NFKC ("ï" is kept, "i̇" decomposed) would split words: drop them.
    if not text.isascii():
        text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
    text = _LEET_CANDIDATE.sub(_unleet, text)
    return _SPACED.sub(lambda m: _SPACED_SEP.sub("", m.group(0)), text)


def views(text: str) -> Views:
    p = plain(text)
    f = fold(p)
    return Views(plain=p, folded=f, squashed=_NOT_LETTER.sub("", f))
