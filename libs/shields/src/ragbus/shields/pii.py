"""Personal data in text: find spans of known kinds, and redact them. Pure functions, no I/O.

Each kind is a candidate pattern plus a validation that a random string rarely passes: card numbers
pass the Luhn check, IBANs their country's length and the mod-97 check, SSNs the SSA's rules, IP
addresses `ipaddress`. Phone numbers have no checksum, so a candidate counts only when its shape is
phone-like (an international prefix, an area code in parentheses, three or more digit groups) or a
phone word stands next to it ("Fax: 9498777106"). Dates count only as dates of birth, after
"born" / "date of birth". Street addresses are found by their structure (ragbus.shields.addresses), and
names only where words announce them ("my name is", "Mr.", see ragbus.shields.entities); the other
names of persons, places and organisations need a model: `ragbus.shields.detection.PiiDetector`
combines these patterns with one.

Found spans never leave this module in logs or verdicts: callers get kinds, offsets and counts.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from ragbus.shields.addresses import find_addresses
from ragbus.shields.entities import cued_persons, cued_places
from ragbus.shields.redaction import Located
from ragbus.shields.redaction import redact as redact  # `[REDACTED:<KIND>]`, where it always was

PiiKind = Literal[
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "PERSON",
    "LOCATION",
    "ORGANIZATION",
]
# Kinds a pattern finds (LOCATION: street addresses only; PERSON: names after a cue only) ...
PATTERN_KINDS: tuple[PiiKind, ...] = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
)
# ... and kinds a named-entity model finds (see ragbus.shields.entities).
NAME_KINDS: tuple[PiiKind, ...] = ("PERSON", "LOCATION", "ORGANIZATION")
ALL_PII_KINDS: tuple[PiiKind, ...] = PATTERN_KINDS + NAME_KINDS


@dataclass(frozen=True, slots=True)
class PiiSpan:
    kind: PiiKind
    start: int
    end: int
    score: float = 1.0  # confidence: 1.0 for a checksum, less for a shape or a model's guess


# --- validators ------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


# ISO 13616 IBAN lengths by country (the registry's list; a wrong length fails before mod-97).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    iban = compact.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# --- detectors -------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_IBAN_COMPACT = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}[A-Za-z0-9]{11,30}(?![A-Za-z0-9])")
_IBAN_GROUPED = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: [A-Za-z0-9]{4}){2,8}(?: [A-Za-z0-9]{1,3})?"
    r"(?![A-Za-z0-9])"
)
_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){11,18}(?![\d-]|[.,]\d)")
_CARD_WORDS = re.compile(r"\b(?:card|cc|credit|debit|visa|master\s?card|maestro|amex|payment|pan)\b", re.I)
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_SSN_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$")  # never a phone number, even when not a valid SSN
_SSN_PLAIN = re.compile(r"(?<!\d)(\d{3})(\d{2})(\d{4})(?!\d)")
_SSN_WORDS = re.compile(r"\b(?:ssn|social\s+security(?:\s+(?:number|no))?|ss#)\W{0,20}$", re.I)
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.]|\.\d)"
)
# "v1.2.3.4", "version 10.0.0.1", enzyme numbers "EC 1.14.16.2" are dotted quads too.
_VERSION_WORDS = re.compile(r"\b(?:v|version|release|build|ver|ec)\.?\s*$", re.I)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}|:)?(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+/.-])(?<!\d,)"
    r"(?P<intl>(?:\+|\b00)\d{1,3}[ .-]?(?:\(0\)[ .-]?)?)?"
    r"(?P<area>\(\d{1,5}\)[ .-]?)?"
    r"(?P<body>\d{1,12}(?:[ .-]\d{1,8}){0,5})"
    r"(?P<ext>[ ]?(?:x|ext\.?|extension)[ ]?\d{1,5})?"
    r"(?![\w/]|[.,-]\d)",
    re.I,
)
_PHONE_WORDS = re.compile(
    r"\b(?:phone|tel|telephone|call|called|calling|fax|mobile|cell|mob|answering|reach|text|sms|whatsapp|"
    r"contact|dial|ring|desk|hotline)\b\W{0,12}(?:(?:me|us|him|her|at|on|to|is|no|nr|number)\W{1,3})*$",
    re.I,
)
_PHONE_WORDS_AFTER = re.compile(r"^[ \t]?[-(]?(?:office|fax|mobile|cell|home|work|tel|phone)\b", re.I)
_DATE_LIKE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2}))$")
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DOB = re.compile(
    r"\b(?:born|date\s+of\s+birth|d\.?o\.?b\.?|birth\s?date|birthday|geboren|née?)\b[^\d\n]{0,25}?"
    r"(?P<date>\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})(?!\d)"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})",
    re.I,
)


def _emails(text: str) -> Iterator[PiiSpan]:
    for m in _EMAIL.finditer(text):
        yield PiiSpan("EMAIL", m.start(), m.end())


def _ibans(text: str) -> Iterator[PiiSpan]:
    for m in _IBAN_COMPACT.finditer(text):
        if iban_valid(m.group(0)):
            yield PiiSpan("IBAN", m.start(), m.end())
    for m in _IBAN_GROUPED.finditer(text):
        # A word after the last group ("... 3200 from") may have been taken as a group: drop groups from
        # the end until the rest validates.
        groups = m.group(0).split(" ")
        while len(groups) >= 3:
            candidate = " ".join(groups)
            if iban_valid(candidate.replace(" ", "")):
                yield PiiSpan("IBAN", m.start(), m.start() + len(candidate))
                break
            groups.pop()


def _cards(text: str) -> Iterator[PiiSpan]:
    for m in _CARD.finditer(text):
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        if len(set(digits)) == 1 or not luhn_valid(digits):
            continue
        groups = re.split(r"[ -]", raw)
        if len(groups) > 1 and (
            len(set(re.findall(r"[ -]", raw))) > 1
            or len(groups[0]) != 4
            or not all(3 <= len(g) <= 6 for g in groups[1:-1])
        ):
            continue  # printed cards group 4-4-4-4 or 4-6-5; other groupings are phone numbers or ids
        # 12 digits (Maestro) is short enough to be an order number: only next to a card word.
        if len(digits) == 12 and not _CARD_WORDS.search(text, max(0, m.start() - 40), m.start()):
            continue
        yield PiiSpan("CREDIT_CARD", m.start(), m.end())


def _ssns(text: str) -> Iterator[PiiSpan]:
    for m in _SSN.finditer(text):
        if not ssn_valid(m.group(1), m.group(3), m.group(4)):
            continue
        # "123 45 6789" with spaces is also a phone shape: only next to an SSN word.
        if m.group(2) == " " and not _SSN_WORDS.search(text[max(0, m.start() - 40) : m.start()]):
            continue
        yield PiiSpan("US_SSN", m.start(), m.end())
    for m in _SSN_PLAIN.finditer(text):
        if ssn_valid(*m.groups()) and _SSN_WORDS.search(text[max(0, m.start() - 40) : m.start()]):
            yield PiiSpan("US_SSN", m.start(), m.end())


def _ips(text: str) -> Iterator[PiiSpan]:
    for m in _IPV4.finditer(text):
        if not _VERSION_WORDS.search(text[max(0, m.start() - 12) : m.start()]):
            yield PiiSpan("IP_ADDRESS", m.start(), m.end())
    for m in _IPV6.finditer(text):
        candidate = m.group(0)
        # At least three hex groups, so times ("12:20:39") and "a::b" in code are not addresses.
        if sum(bool(g) for g in candidate.split(":")) < 3:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield PiiSpan("IP_ADDRESS", m.start(), m.end())


def _phones(text: str) -> Iterator[PiiSpan]:
    for m in _PHONE.finditer(text):
        body = m.group("body")
        groups = re.split(r"[ .-]", body)
        digits = sum(c.isdigit() for c in (m.group("intl") or "") + (m.group("area") or "") + body)
        if not 7 <= digits <= 15 or _DATE_LIKE.match(body) or _SSN_SHAPE.match(body):
            continue
        if m.group("intl") or m.group("area"):
            shaped = True
        else:
            # Three or more groups of two or more digits ("78 651 450", "905-674-3793"); "1 234 567" is an
            # amount. One or two groups need a phone word next to them ("Fax: 9498777106", "781 1704 office").
            one_separator = len(set(re.findall(r"[ .-]", body))) == 1
            shaped = len(groups) >= 3 and all(len(g) >= 2 for g in groups) and one_separator
        if shaped and len(groups) >= 3 and all(int(b) == int(a) + 1 for a, b in itertools.pairwise(groups)):
            continue  # "10 11 12 13 14": a run of reference numbers
        if not shaped and not (
            _PHONE_WORDS.search(text[max(0, m.start() - 40) : m.start()])
            or _PHONE_WORDS_AFTER.match(text[m.end() : m.end() + 12])
        ):
            continue
        yield PiiSpan("PHONE", m.start(), m.end(), 0.9 if shaped else 0.8)


def _dates_of_birth(text: str) -> Iterator[PiiSpan]:
    for m in _DOB.finditer(text):
        yield PiiSpan("DATE_OF_BIRTH", m.start("date"), m.end("date"), 0.9)


def _addresses(text: str) -> Iterator[PiiSpan]:
    for start, end, score in find_addresses(text):
        yield PiiSpan("LOCATION", start, end, score)


def _cued_persons(text: str) -> Iterator[PiiSpan]:
    for span in cued_persons(text):
        yield PiiSpan("PERSON", span.start, span.end, span.score)


def _cued_places(text: str) -> Iterator[PiiSpan]:
    for span in cued_places(text):
        yield PiiSpan("LOCATION", span.start, span.end, span.score)


# Highest priority first: where spans overlap, the more specific (validated) kind wins.
_DETECTORS: tuple[tuple[PiiKind, Callable[[str], Iterator[PiiSpan]]], ...] = (
    ("EMAIL", _emails),
    ("IBAN", _ibans),
    ("CREDIT_CARD", _cards),
    ("US_SSN", _ssns),
    ("IP_ADDRESS", _ips),
    ("DATE_OF_BIRTH", _dates_of_birth),
    ("PHONE", _phones),
    ("LOCATION", _addresses),
    ("PERSON", _cued_persons),
    ("LOCATION", _cued_places),
)


def find_pii(text: str, kinds: Collection[PiiKind] = ALL_PII_KINDS) -> list[PiiSpan]:
    """Non-overlapping PII spans in `text` that patterns find, in order of position (no model: see
    `ragbus.shields.detection.PiiDetector` for names)."""
    taken: list[PiiSpan] = []
    for kind, detect in _DETECTORS:
        if kind not in kinds:
            continue
        for span in detect(text):
            if all(span.end <= t.start or span.start >= t.end for t in taken):
                taken.append(span)
    return sorted(taken, key=lambda s: s.start)


def count_kinds(spans: Iterable[Located]) -> dict[str, int]:
    """How many spans of each kind (what verdicts and logs may carry)."""
    return dict(sorted(Counter(s.kind for s in spans).items()))
