"""Input checks: is this question fit to send to retrieval and the models? Pure, CPU-bound, no I/O.

Two hard limits hold for every tenant: `input.size` and `input.garbage` (a question that is not text).
Then one verdict per category of the tenant's policy (ragbus.guard.policy): `input.injection`
(technique patterns), `input.jailbreak` and `input.harmful` (the learned classifiers), `input.gibberish`
(adversarial-suffix-like token runs), `input.pii` and `input.secrets`. Each category verdict lists every
scanner that scored it, with its score and time in milliseconds, the threshold, the action and the
decision (`pass`, `flag`, `redact`, `block`); a category the policy sets to `allow` is not scanned.
A rejected question still gets every verdict, so the record shows all that was wrong with it. Verdicts
carry scores, technique names, kinds and counts, never the question's text.

The garbage check is built to never reject a real question, however short or in whatever language:
it looks for letters at all, for non-printable or symbol noise, for one character or token repeated,
and for keyboard mash, and only rejects when the noise dominates the text.
"""

from __future__ import annotations

import itertools
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from ragbus.common.events import Verdict
from ragbus.common.telemetry import tracer
from ragbus.guard.policy import Category, Policies, Rule, TenantPolicy
from ragbus.guard.ports import InputResult, PromptScorer
from ragbus.guard.settings import InputPolicy
from ragbus.shields.detection import PiiDetector
from ragbus.shields.injection import score_injection
from ragbus.shields.normalize import strip_invisible, views
from ragbus.shields.redaction import Located, pseudonymize
from ragbus.shields.secrets import find_secrets

SIZE = "input.size"
GARBAGE = "input.garbage"
INJECTION = "input.injection"
JAILBREAK = "input.jailbreak"
HARMFUL = "input.harmful"
GIBBERISH = "input.gibberish"
PII = "input.pii"
SECRETS = "input.secrets"
CHECKS: dict[Category, str] = {
    "injection": INJECTION,
    "jailbreak": JAILBREAK,
    "harmful": HARMFUL,
    "gibberish": GIBBERISH,
    "pii": PII,
    "secrets": SECRETS,
}

# What the user is told, per check: plain words, never an echo of what fired; the verdicts say more
# for operators.
USER_REASONS = {
    SIZE: "Your question is too long. Please shorten it and ask again.",
    GARBAGE: "Your question could not be understood. Please rephrase it.",
    INJECTION: "Your question looks like an attempt to override the assistant's instructions, so it was "
    "not answered.",
    JAILBREAK: "Your question looks like an attempt to get around the assistant's rules, so it was not "
    "answered.",
    HARMFUL: "Your question asks for something this assistant does not help with, so it was not answered.",
    GIBBERISH: "Your question contains text that looks machine-generated to get around the assistant's "
    "rules, so it was not answered.",
    PII: "Your question contains personal data, which this assistant does not accept. Please remove it and "
    "ask again.",
    SECRETS: "Your question contains a credential (a key, token or password). Please remove it and ask "
    "again.",
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


# --- prompt injection (patterns) ---------------------------------------------------------------------


def check_injection(text: str, threshold: float = 0.5) -> Verdict:
    """The technique patterns alone (ragbus.shields.injection), blocking at `threshold`: the verdict
    `check_input` gives under a policy whose `injection` rule is that."""
    policy = TenantPolicy(injection=Rule(action="block", threshold=threshold))
    return _injection_verdict(text, policy)


# --- the categories of the tenant's policy ----------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    """What the scanners of one category measured: a score in [0, 1] and the time of each."""

    scores: dict[str, float] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # How several scanners' scores make the category's: the highest, or their mean (the learned
    # classifiers: chosen on the held-out split, where the mean at 0.45 kept recall 0.975 at a 2.2%
    # false-positive rate; the highest needed 0.7 for 2.4%, at recall 0.970).
    combine: Literal["max", "mean"] = "max"

    def add(self, name: str, score: float, ms: float) -> None:
        self.scores[name] = round(score, 4)
        self.ms[name] = round(ms, 3)

    @property
    def score(self) -> float:
        if self.combine == "mean" and self.scores:
            return sum(self.scores.values()) / len(self.scores)
        return max(self.scores.values(), default=0.0)


def _timed(scanner: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    """`fn()` and its time in ms, traced as a span of the guard (under the request's input stage)."""
    with tracer("guard").start_as_current_span(f"scan {scanner}"):
        started = time.perf_counter()
        result = fn()
        return result, (time.perf_counter() - started) * 1000


@dataclass(frozen=True, slots=True)
class Scanners:
    """The models the input checks score with: learned prompt classifiers (labels `attack` and `harmful`)
    and the personal-data detector. Both optional: without classifiers, `jailbreak` and `harmful` have
    no scanner (their verdicts say so) and only the patterns judge injections."""

    classifiers: Sequence[PromptScorer] = ()
    pii: PiiDetector = field(default_factory=PiiDetector)


def _verdict(check: str, scan: _Scan, policy: TenantPolicy, category: Category, reason: str) -> Verdict:
    rule = policy.rule(category)
    fired = bool(scan.scores) and scan.score >= rule.threshold
    decision = (
        "pass"
        if not fired
        else {"allow": "pass", "flag": "flag", "redact": "redact"}.get(rule.action, "block")
    )
    details = {
        "action": rule.action,
        "threshold": rule.threshold,
        "decision": decision,
        "scanners": {n: {"score": s, "ms": scan.ms[n]} for n, s in scan.scores.items()},
        **scan.details,
    }
    if not scan.scores:
        details["note"] = "no scanner for this category"
    return Verdict(
        check=check,
        passed=decision != "block",
        reason=reason if fired else None,
        score=round(scan.score, 4) if scan.scores else None,
        details=details,
    )


def _injection_verdict(text: str, policy: TenantPolicy) -> Verdict:
    patterns, ms = _timed("injection/patterns", lambda: score_injection(text))
    found = _Scan(details={"techniques": list(patterns.techniques)})
    found.add("patterns", patterns.score, ms)
    return _verdict(
        INJECTION, found, policy, "injection", "prompt injection: " + ", ".join(patterns.techniques)
    )


def deobfuscated(text: str) -> str | None:
    """The text with homoglyphs, leetspeak, invisible characters and spaced-out letters undone, when
    that changes more than case and blanks; None otherwise. The classifiers learned from plain
    spellings: `h0w t0 p0is0n` or a Cyrillic `о` would otherwise lower their scores by half."""
    folded = views(text).folded
    return folded if "".join(folded.split()) != "".join(text.casefold().split()) else None


def _learned(text: str, scanners: Scanners) -> tuple[_Scan, _Scan]:
    attack, harmful = _Scan(combine="mean"), _Scan(combine="mean")
    # Both spellings when they differ; each label takes the higher score.
    texts = [text, alt] if (alt := deobfuscated(text)) is not None else [text]
    for scan in (attack, harmful):
        scan.details["deobfuscated"] = alt is not None
    for classifier in scanners.classifiers:
        found, ms = _timed(f"classifier/{classifier.name}", partial(classifier.scores, texts))
        scores = {k: max(s.get(k, 0.0) for s in found) for k in found[0]}
        if "attack" in scores:
            attack.add(classifier.name, scores["attack"], ms)
        if "harmful" in scores:
            harmful.add(classifier.name, scores["harmful"], ms)
    return attack, harmful


def check_input(
    text: str, limits: InputPolicy, policy: TenantPolicy, scanners: Scanners | None = None
) -> InputResult:
    """Every verdict on a question and what goes on (the question, redacted where the policy says)."""
    scanners = scanners or Scanners()
    # An oversized question is rejected by its size; the other checks read only as much as a question
    # may hold, so a 100 kB body costs what a 4 kB one does (the schema allows 100,000 characters).
    scan = text[: limits.max_chars]
    verdicts = [check_size(text, limits), check_garbage(scan, limits)]
    question = text

    if policy.injection.action != "allow":
        verdicts.append(_injection_verdict(scan, policy))
    if policy.jailbreak.action != "allow" or policy.harmful.action != "allow":
        attack, harmful = _learned(scan, scanners)
        if policy.jailbreak.action != "allow":
            verdicts.append(_verdict(JAILBREAK, attack, policy, "jailbreak", "classified as a jailbreak"))
        if policy.harmful.action != "allow":
            verdicts.append(_verdict(HARMFUL, harmful, policy, "harmful", "classified as a harmful request"))
    if policy.gibberish.action != "allow":
        verdicts.append(_verdict(GIBBERISH, _gibberish(scan), policy, "gibberish", "adversarial token run"))
    redactions: list[Located] = []
    for category, check, find in _DATA_CHECKS:
        if policy.rule(category).action == "allow":
            continue
        spans, ms = _timed(f"{check}/detector", partial(find, scan, scanners))
        kinds = Counter(s.kind for s in spans)
        found = _Scan(details={"counts": dict(kinds)})
        found.add("detector", max((getattr(s, "score", 1.0) for s in spans), default=0.0), ms)
        verdict = _verdict(check, found, policy, category, "contains " + ", ".join(sorted(kinds)))
        verdicts.append(verdict)
        if verdict.details["decision"] == "redact":
            redactions += spans
    if redactions:
        # Spans of `scan`, a prefix of the question: their offsets hold in the whole question too.
        question = pseudonymize(question, redactions).text
    failed = [v for v in verdicts if not v.passed]
    # The first failure, in words a user can act on.
    user_reason = USER_REASONS.get(failed[0].check, "Your question was not accepted.") if failed else None
    return InputResult(verdicts=verdicts, user_reason=user_reason, question=question)


_DATA_CHECKS: tuple[tuple[Category, str, Callable[[str, Scanners], Sequence[Located]]], ...] = (
    ("pii", PII, lambda text, scanners: scanners.pii.find(text)),
    ("secrets", SECRETS, lambda text, _: find_secrets(text)),
)


def _gibberish(text: str) -> _Scan:
    from ragbus.shields.gibberish import gibberish_score

    result, ms = _timed("gibberish/char-lm", lambda: gibberish_score(text))
    found = _Scan(details={"window": result.window})
    found.add("char-lm", result.score, ms)
    return found


@dataclass(frozen=True, slots=True)
class InputChecks:
    """The default `ports.InputGuard`: the hard limits, then the tenant's policy with these scanners."""

    limits: InputPolicy
    policies: Policies = field(default_factory=Policies)
    scanners: Scanners = field(default_factory=Scanners)

    def check(self, question: str, tenant: str = "default") -> InputResult:
        return check_input(question, self.limits, self.policies.for_tenant(tenant), self.scanners)
