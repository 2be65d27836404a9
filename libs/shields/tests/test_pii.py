"""PII detection and redaction: each kind found with its checksum, look-alike numbers left alone."""

from __future__ import annotations

import pytest

from ragbus.shields.pii import count_kinds, find_pii, iban_valid, luhn_valid, redact


def kinds_and_values(text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Write to jane.doe+rag@example.co.uk today.", "EMAIL", "jane.doe+rag@example.co.uk"),
        ("Card: 4111 1111 1111 1111, exp 12/29", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("Amex 3782-822463-10005 was charged", "CREDIT_CARD", "3782-822463-10005"),
        ("pay with 5555555555554444", "CREDIT_CARD", "5555555555554444"),
        ("my card 630427373398 is lost", "CREDIT_CARD", "630427373398"),  # 12 digits, next to "card"
        ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN", "DE89 3704 0044 0532 0130 00"),
        ("send it to GB82WEST12345698765432.", "IBAN", "GB82WEST12345698765432"),
        ("lowercase fr1420041010050500013m02606 works", "IBAN", "fr1420041010050500013m02606"),
        ("SSN: 123-45-6789", "US_SSN", "123-45-6789"),
        ("social security number 123456789", "US_SSN", "123456789"),
        ("blocked from 192.168.10.254 again", "IP_ADDRESS", "192.168.10.254"),
        ("v6 host 2001:db8:85a3::8a2e:370:7334 is up", "IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
        ("call +1 (415) 555-0132 now", "PHONE", "+1 (415) 555-0132"),
        ("Tel. +44 20 7946 0958", "PHONE", "+44 20 7946 0958"),
        ("Ruf an: +49 (0)30 901820", "PHONE", "+49 (0)30 901820"),
        ("office 905-674-3793", "PHONE", "905-674-3793"),
        ("mobile 06 12 34 56 78", "PHONE", "06 12 34 56 78"),
        ("Fax: 9498777106", "PHONE", "9498777106"),
        ("reach me at 345-899-3560x4587", "PHONE", "345-899-3560x4587"),
        ("She was born on 2/8/1935.", "DATE_OF_BIRTH", "2/8/1935"),
        ("date of birth: March 3, 1990", "DATE_OF_BIRTH", "March 3, 1990"),
    ],
)
def test_each_kind_is_found(text: str, kind: str, value: str) -> None:
    assert kinds_and_values(text) == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "The trial enrolled 1 234 567 patients in 2019.",  # an amount with thousands separators
        "Card 4111 1111 1111 1112 is not a card: the Luhn check fails",
        "An order number 123456789012 is twelve digits, no card word near",
        "Not an IBAN: GB82WEST12345698765431 (mod-97 fails)",
        "SSN 666-12-3456 and 900-12-3456 are never issued",
        "Version 10.0.0.1 and v1.2.3.4 are versions; EC 1.14.16.2 is an enzyme",
        "It happened at 12:20:39 on 2020-06-20.",
        "References 10 11 12 13 14 support this.",
        "The Civil Rights Act of 1964 was signed on 7/2/1964.",  # a date, not a date of birth
        "Use a[0]::b in C++ or std::vector<int>::size_type",
        "pi is 3.14159265358979 and e is 2.718281828",
    ],
)
def test_look_alikes_are_not_pii(text: str) -> None:
    assert find_pii(text) == []


def test_validators() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE8937040044053201300")  # a German IBAN is 22 long
    assert not iban_valid("XX89370400440532013000")  # no such country


def test_overlapping_candidates_keep_the_validated_kind() -> None:
    # A card number is also a run of digits a phone pattern could take; the card wins.
    text = "call me about card number 4111111111111111"
    assert kinds_and_values(text) == [("CREDIT_CARD", "4111111111111111")]


def test_redaction_replaces_each_span_with_its_kind() -> None:
    text = "Mail bob@example.org or call +1 415 555 0132; card 4111 1111 1111 1111."
    spans = find_pii(text)
    assert redact(text, spans) == (
        "Mail [REDACTED:EMAIL] or call [REDACTED:PHONE]; card [REDACTED:CREDIT_CARD]."
    )
    assert count_kinds(spans) == {"CREDIT_CARD": 1, "EMAIL": 1, "PHONE": 1}


def test_only_the_requested_kinds_are_found() -> None:
    text = "bob@example.org, 192.168.0.1"
    assert [s.kind for s in find_pii(text, {"IP_ADDRESS"})] == ["IP_ADDRESS"]
