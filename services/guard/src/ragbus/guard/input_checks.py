"""Input checks: is this question fit to send to retrieval and the models? Pure functions, no I/O.

Each check returns a `Verdict`; `check_input` runs them all (a rejected question still gets every
verdict, so the record shows everything that was wrong with it) and decides. Verdict details carry
measurements and technique names, never the question's text.

The garbage check is built to never reject a real question, however short or in whatever language:
it looks for letters at all, for non-printable or symbol noise, for one character or token repeated,
and for keyboard mash, and only rejects when the noise dominates the text.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from ragbus.common.events import Verdict
from ragbus.guard.ports import InputResult
from ragbus.guard.settings import InputPolicy
from ragbus.shields.injection import score_injection
from ragbus.shields.normalize import strip_invisible

SIZE = "input.size"
GARBAGE = "input.garbage"
INJECTION = "input.injection"

# What the user is told, per check; the verdict's own reason says more for operators.
USER_REASONS = {
    SIZE: "Your question is too long. Please shorten it and ask again.",
    GARBAGE: "Your question could not be understood. Please rephrase it.",
    INJECTION: "Your question looks like an attempt to override the assistant's instructions, so it was "
    "not answered.",
}


# --- size ------------------------------------------------------------------------------------------


def check_size(text: str, policy: InputPolicy) -> Verdict:
    chars = len(text)
    lines = text.count("\n") + 1 if text else 0
    details = {"chars": chars, "lines": lines, "max_chars": policy.max_chars, "max_lines": policy.max_lines}
    if chars > policy.max_chars:
        return Verdict(
            check=SIZE,
            passed=False,
            reason=f"{chars} characters, over the limit of {policy.max_chars}",
            details=details,
        )
    if lines > policy.max_lines:
        return Verdict(
            check=SIZE,
            passed=False,
            reason=f"{lines} lines, over the limit of {policy.max_lines}",
            details=details,
        )
    return Verdict(check=SIZE, passed=True, details=details)


# --- garbage ---------------------------------------------------------------------------------------

_ALLOWED_CONTROLS = frozenset("\n\r\t")
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Keyboard rows (QWERTY, and the QWERTZ/AZERTY letters that differ): mash slides along a row.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop", "yxcvbnm", "azertyuiop", "qsdfghjklm", "wxcvbn")
_ROW_PAIRS = frozenset(pair for row in _ROWS for a, b in itertools.pairwise(row) for pair in (a + b, b + a))
_VOWELS = frozenset("aeiouy")
_LATIN_WORD = re.compile(r"[a-z]+")


def _mash_word(word: str) -> bool:
    """A lowercase ASCII word that looks typed by a hand sliding over the keyboard, not spelled.

    Rules that hold across languages written in Latin script: real words of six letters or more have
    vowels (Czech "strč prst" words are short), are not one short unit repeated ("asdasdasd"), and are
    not mostly runs of neighbouring keys on one row ("asdfghjkl", "qwertz"; diagonal neighbours are left
    out: "desert" and "fresh" are typed along them).
    """
    n = len(word)
    if n < 5:
        return False
    vowels = sum(ch in _VOWELS for ch in word)
    if n >= 6 and vowels == 0:
        return True
    for unit in range(1, 5):  # "asdasdasd", "hahaha" is laughter, not a question either
        if n >= 3 * unit and n >= 6 and word == (word[:unit] * (n // unit + 1))[:n]:
            return True
    if n >= 6 and sum(word[i : i + 2] in _ROW_PAIRS for i in range(n - 1)) / (n - 1) >= 0.8:
        return True
    # Long consonant runs with few vowels ("sdkjfhskdjfh"); German compounds have runs but many vowels.
    longest = run = 0
    for ch in word:
        run = 0 if ch in _VOWELS else run + 1
        longest = max(longest, run)
    return n >= 8 and longest >= 6 and vowels / n < 0.25


def garbage_signals(text: str, policy: InputPolicy) -> tuple[str | None, dict[str, float | int]]:
    """The reason `text` is not a question (or None), and the measurements behind it."""
    visible = [ch for ch in strip_invisible(text) if not ch.isspace()]
    n = len(visible)
    letters = sum(ch.isalpha() for ch in visible)
    digits = sum(ch.isdigit() for ch in visible)
    if text.isascii():
        controls = len(_ASCII_CONTROLS.findall(text))
    else:
        controls = sum(
            unicodedata.category(ch) in ("Cc", "Cn", "Co", "Cs") and ch not in _ALLOWED_CONTROLS
            for ch in text
        )
    details: dict[str, float | int] = {"visible_chars": n, "letters": letters, "digits": digits}
    if n == 0:
        return "empty", details
    details["control_ratio"] = round(controls / max(len(text), 1), 3)
    if controls / max(len(text), 1) > 0.1:
        return "mostly non-printable characters", details
    if letters + digits == 0:  # "2+2?" is a question; "?!#" is not
        return "no letters or digits", details
    if letters + digits < policy.min_meaningful_chars:
        return f"fewer than {policy.min_meaningful_chars} letters or digits", details
    symbols = n - letters - digits
    details["symbol_ratio"] = round(symbols / n, 3)
    if n >= 8 and symbols / n > 0.6:
        return "mostly symbols", details
    top_count = Counter(ch.casefold() for ch in visible).most_common(1)[0][1]
    details["top_char_ratio"] = round(top_count / n, 3)
    if n >= 6 and top_count / n > 0.8:
        return "one character repeated", details
    tokens = [t for t in text.casefold().split() if any(ch.isalnum() for ch in t)]
    if len(tokens) >= 6:
        top_token_count = Counter(tokens).most_common(1)[0][1]
        details["top_token_ratio"] = round(top_token_count / len(tokens), 3)
        if top_token_count / len(tokens) > 0.8:
            return "one word repeated", details
    # Keyboard mash: judged on the Latin-letter words only, and only when they carry the text.
    words = _LATIN_WORD.findall(
        unicodedata.normalize("NFKD", text.casefold()).encode("ascii", "ignore").decode()
    )
    latin_letters = sum(len(w) for w in words)
    if words and latin_letters >= 0.5 * letters:
        mash_letters = sum(len(w) for w in words if _mash_word(w))
        details["mash_ratio"] = round(mash_letters / latin_letters, 3)
        if mash_letters / latin_letters >= 0.6:
            return "keyboard mash", details
    return None, details


def check_garbage(text: str, policy: InputPolicy) -> Verdict:
    reason, details = garbage_signals(text, policy)
    return Verdict(check=GARBAGE, passed=reason is None, reason=reason, details=details)


# --- prompt injection ------------------------------------------------------------------------------


def check_injection(text: str, policy: InputPolicy) -> Verdict:
    result = score_injection(text)
    passed = result.score < policy.injection_threshold
    return Verdict(
        check=INJECTION,
        passed=passed,
        reason=None if passed else "prompt injection: " + ", ".join(result.techniques),
        score=result.score,
        details={"techniques": list(result.techniques), "threshold": policy.injection_threshold},
    )


def check_input(text: str, policy: InputPolicy) -> InputResult:
    # An oversized question is rejected by its size; the other checks read only as much as a question
    # may hold, so a 100 kB body costs what a 4 kB one does (the schema allows 100,000 characters).
    scan = text[: policy.max_chars]
    verdicts = [check_size(text, policy), check_garbage(scan, policy), check_injection(scan, policy)]
    failed = [v for v in verdicts if not v.passed]
    # The first failure, in words a user can act on.
    reason = USER_REASONS.get(failed[0].check, "Your question was not accepted.") if failed else None
    return InputResult(verdicts=verdicts, user_reason=reason)


@dataclass(frozen=True, slots=True)
class InputChecks:
    """The default `ports.InputGuard`: the checks above under one policy."""

    policy: InputPolicy

    def check(self, question: str) -> InputResult:
        return check_input(question, self.policy)
