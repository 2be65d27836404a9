"""Credentials in text: API keys, tokens, private keys and passwords. Pure functions, no I/O.

Each kind is a pattern a vendor documents (a fixed prefix and a length: `ghp_` + 36, `AKIA` + 16, `AIza`
+ 35, ...) plus a check that a look-alike rarely passes: a JWT's header must decode to JSON naming an
algorithm; key bodies must mix letters and digits (`sk-learn-tutorial` is not a key); an AWS secret
key (40 base64 characters, no prefix of its own) or a generic `password=` / `api_key:` value counts
only next to a word that names it, and only when it looks random (character classes and Shannon
entropy), never a placeholder (`<your-key>`, `${TOKEN}`, `xxxx`, `changeme`). A UUID, a git sha or a
long word on its own is not a secret.

Found spans never leave this module in logs or verdicts: callers get kinds, offsets and counts.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Literal

SecretKind = Literal[
    "PRIVATE_KEY",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GITHUB_TOKEN",
    "SLACK_TOKEN",
    "GOOGLE_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "STRIPE_KEY",
    "JWT",
    "PASSWORD",
    "API_KEY",
]
ALL_SECRET_KINDS: tuple[SecretKind, ...] = (
    "PRIVATE_KEY",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GITHUB_TOKEN",
    "SLACK_TOKEN",
    "GOOGLE_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "STRIPE_KEY",
    "JWT",
    "PASSWORD",
    "API_KEY",
)


@dataclass(frozen=True, slots=True)
class SecretSpan:
    kind: SecretKind
    start: int
    end: int
    score: float = 1.0  # how sure: 1.0 for a vendor prefix and length, less for a named random value


# --- randomness ------------------------------------------------------------------------------------


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s own character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def char_classes(value: str) -> int:
    """How many of lowercase, uppercase, digits and other characters `value` uses."""
    return sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )


_PLACEHOLDER = re.compile(
    r"^(?:<[^>]*>|\$\{?[\w.]+\}?|%\(?\w+\)?s?|\{\{?[^}]*\}?\}|\*+|x+|X+|\.+|-+|_+|#+)$"
    r"|^(?:your|my|the|some|example|sample|dummy|fake|test|placeholder|redacted|changeme|change_me|secret"
    r"|password|passw0rd|token|none|null|nil|true|false|undefined|todo|tbd|n/a|\*\*\*)[\w-]*$"
    r"|(?:os\.environ|getenv|process\.env|env\[|settings\.|config\.|REDACTED)",
    re.IGNORECASE,
)


def looks_random(value: str, *, min_length: int = 8, min_entropy: float = 3.0, min_classes: int = 2) -> bool:
    """Whether a value looks generated rather than chosen: long enough, several character classes,
    high entropy, not a placeholder and not a plain word."""
    if len(value) < min_length or _PLACEHOLDER.search(value):
        return False
    if value.isalpha() and (value.islower() or value.isupper() or value.istitle()):
        return False  # "internationalization", "CONFIDENTIAL", "Strawberry"
    if len(set(value)) <= 2:
        return False
    return char_classes(value) >= min_classes and shannon_entropy(value) >= min_entropy


def _mixed(body: str) -> bool:
    """Letters and digits both: every vendor key body has them; English words and slugs do not."""
    return any(c.isdigit() for c in body) and sum(c.isalpha() for c in body) >= 4


# --- detectors -------------------------------------------------------------------------------------

_NOT_KEY = r"(?![A-Za-z0-9_-])"
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?P<label>(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----"
    r"(?:.*?-----END (?P=label)-----|[\s\S]*)",  # a block cut off before its END line is still a key
    re.DOTALL,
)
_AWS_ACCESS = re.compile(
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}(?![A-Za-z0-9])"
)
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_SECRET_WORDS = re.compile(
    r"(?:aws|secret|amazon)[\w.\- ]{0,30}(?:key|secret)?[\"']?\s*(?:[:=]|=>|\s)\s*[\"']?$", re.IGNORECASE
)
_GITHUB = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})"
    r"(?![A-Za-z0-9_])"
)
_SLACK = re.compile(
    r"(?<![A-Za-z0-9])xox[abposr]-(?:\d+-)+[A-Za-z0-9]{8,}(?:-[A-Za-z0-9]+)*" + _NOT_KEY
    + r"|https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{20,}"
)  # fmt: skip
_GOOGLE = re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}" + _NOT_KEY)
_ANTHROPIC = re.compile(r"(?<![A-Za-z0-9_-])sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{32,}" + _NOT_KEY)
_OPENAI = re.compile(
    r"(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin|None)-)?(?P<body>[A-Za-z0-9_-]{20,})" + _NOT_KEY
)
_STRIPE = re.compile(r"(?<![A-Za-z0-9_])(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{24,}(?![A-Za-z0-9_])")
_JWT = re.compile(
    r"(?<![A-Za-z0-9_-])(?P<header>eyJ[A-Za-z0-9_-]{8,})\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*(?![A-Za-z0-9_.-])"
)
# `password = "..."`, `api_key: ...`, `"client_secret": "..."`, `PGPASSWORD=...`, `--token ...`.
_ASSIGNMENT = re.compile(
    r"(?P<name>(?<![\w.-])(?:[\w.-]*[_.-]|pg|db|mysql|redis|smtp|admin|root|user)?"
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|private[_-]?key"
    r"|token|bearer|credentials?)\b[\"']?)"
    r"(?:\s*(?:[:=]|=>|:=)\s*|\s+(?=[\"']))"
    r"(?P<quote>[\"'`]?)(?P<value>[^\s\"'`,;()\[\]{}<>]{6,200})(?P=quote)",
    re.IGNORECASE,
)
# `user.password`, `getpass`, `settings.API_TOKEN`: a reference to a value, not the value.
_IDENTIFIER = re.compile(r"^[A-Za-z_]+(?:\.[A-Za-z_]+)*$")
_BEARER = re.compile(r"\b(?:Bearer|Token)\s+(?P<value>[A-Za-z0-9._~+/=-]{20,})", re.IGNORECASE)
# `scheme://user:password@host`
_URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,64}:(?P<value>[^\s@/]{3,128})@[\w.-]+")
_PASSWORD_NAMES = re.compile(r"pass|pwd", re.IGNORECASE)


def _private_keys(text: str) -> Iterator[SecretSpan]:
    for m in _PRIVATE_KEY.finditer(text):
        yield SecretSpan("PRIVATE_KEY", m.start(), m.end())


def _aws(text: str) -> Iterator[SecretSpan]:
    access = list(_AWS_ACCESS.finditer(text))
    for m in access:
        yield SecretSpan("AWS_ACCESS_KEY", m.start(), m.end())
    for m in _AWS_SECRET.finditer(text):
        value = m.group(0)
        if not (looks_random(value, min_entropy=4.0, min_classes=3) and value.lower() != value):
            continue  # a 40-hex git sha has no uppercase letters
        named = _AWS_SECRET_WORDS.search(text[max(0, m.start() - 60) : m.start()])
        near_key = any(0 <= m.start() - a.end() <= 80 or 0 <= a.start() - m.end() <= 80 for a in access)
        if named or near_key:
            yield SecretSpan("AWS_SECRET_KEY", m.start(), m.end(), 0.95)


def _vendor(pattern: re.Pattern[str], kind: SecretKind) -> Callable[[str], Iterator[SecretSpan]]:
    def detect(text: str) -> Iterator[SecretSpan]:
        for m in pattern.finditer(text):
            if _mixed(m.group(0)):
                yield SecretSpan(kind, m.start(), m.end())

    return detect


def _openai(text: str) -> Iterator[SecretSpan]:
    for m in _OPENAI.finditer(text):
        body = m.group("body")
        if _mixed(body) and looks_random(body, min_entropy=3.5):
            yield SecretSpan("OPENAI_API_KEY", m.start(), m.end())


def _jwts(text: str) -> Iterator[SecretSpan]:
    for m in _JWT.finditer(text):
        header = m.group("header")
        try:
            decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded):
            yield SecretSpan("JWT", m.start(), m.end())


def _assignments(text: str) -> Iterator[SecretSpan]:
    for m in _ASSIGNMENT.finditer(text):
        value = m.group("value")
        if _IDENTIFIER.match(value):
            continue
        password = _PASSWORD_NAMES.search(m.group("name")) is not None
        # A password is chosen, not generated: "hunter2!" counts, "password=secret" does not.
        if password and looks_random(value, min_length=6, min_entropy=2.3):
            yield SecretSpan("PASSWORD", m.start("value"), m.end("value"), 0.9)
        elif not password and _mixed(value) and looks_random(value, min_length=12, min_entropy=3.0):
            yield SecretSpan("API_KEY", m.start("value"), m.end("value"), 0.85)
    for m in _BEARER.finditer(text):
        if looks_random(m.group("value"), min_length=20, min_entropy=3.5):
            yield SecretSpan("API_KEY", m.start("value"), m.end("value"), 0.85)
    for m in _URL_PASSWORD.finditer(text):
        if not _PLACEHOLDER.search(m.group("value")):
            yield SecretSpan("PASSWORD", m.start("value"), m.end("value"), 0.9)


# Most specific first: where spans overlap, the earlier detector's span wins.
_DETECTORS: tuple[tuple[SecretKind, Callable[[str], Iterator[SecretSpan]]], ...] = (
    ("PRIVATE_KEY", _private_keys),
    ("JWT", _jwts),
    ("GITHUB_TOKEN", _vendor(_GITHUB, "GITHUB_TOKEN")),
    ("SLACK_TOKEN", _vendor(_SLACK, "SLACK_TOKEN")),
    ("GOOGLE_API_KEY", _vendor(_GOOGLE, "GOOGLE_API_KEY")),
    ("ANTHROPIC_API_KEY", _vendor(_ANTHROPIC, "ANTHROPIC_API_KEY")),
    ("STRIPE_KEY", _vendor(_STRIPE, "STRIPE_KEY")),
    ("OPENAI_API_KEY", _openai),
    ("AWS_ACCESS_KEY", _aws),
    ("PASSWORD", _assignments),
)


def find_secrets(text: str, kinds: Collection[SecretKind] = ALL_SECRET_KINDS) -> list[SecretSpan]:
    """Non-overlapping credential spans in `text`, in order of position."""
    taken: list[SecretSpan] = []
    for _, detect in _DETECTORS:
        for span in detect(text):
            if span.kind in kinds and all(span.end <= t.start or span.start >= t.end for t in taken):
                taken.append(span)
    return sorted(taken, key=lambda s: s.start)
