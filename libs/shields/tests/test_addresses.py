"""Street addresses by their structure, in several languages; numbers in prose are not addresses."""

from __future__ import annotations

import pytest

from ragbus.shields.addresses import find_addresses


def values(text: str) -> list[str]:
    return [text[a:b] for a, b, _ in find_addresses(text)]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Send it to 14 Crown Street, London please", "14 Crown Street, London"),
        ("I live at 221B Baker Street.", "221B Baker Street"),
        ("Our office: 1600 Pennsylvania Avenue NW, Washington", "1600 Pennsylvania Avenue NW, Washington"),
        ("Wohnt in der Hauptstraße 5, 10115 Berlin", "Hauptstraße 5, 10115 Berlin"),
        ("Bring it to Via Franscini 71, Tujetsch", "Via Franscini 71, Tujetsch"),
        ("The office is at Király u. 15.", "Király u. 15"),
        ("address: ul. Miła 53", "ul. Miła 53"),
        ("Meet me at 6750 Koskikatu 25 Apt. 864\nArtilleros", "6750 Koskikatu 25 Apt. 864\nArtilleros"),
        ("Tomomi lives at 86036 Rua do Arenque 1634, Goiânia", "86036 Rua do Arenque 1634, Goiânia"),
        ("my address is 2613 avenida praia 1 suite 463", "2613 avenida praia 1 suite 463"),
        ("the bus drops you off at 74678 midtvollen 130 st.", "74678 midtvollen 130 st."),
        ("Write to P.O. Box 242, Nuuk", "P.O. Box 242, Nuuk"),
        ("PSC 0413, Box 8144\nAPO AA 42323", "PSC 0413, Box 8144\nAPO AA 42323"),
        ("> 935 69 Gordon Terrace\n> Suite 828\n> BASHALL TOWN\n> United Kingdom 89800",
         "935 69 Gordon Terrace\n> Suite 828\n> BASHALL TOWN\n> United Kingdom 89800"),
    ],
)  # fmt: skip
def test_addresses_are_found_with_what_follows_them(text: str, address: str) -> None:
    assert values(text) == [address]


@pytest.mark.parametrize(
    "text",
    [
        "The trial enrolled 120 Patients in 2019 and 3 way handshakes failed.",
        "Mean diffusion was 1.8 microm2/ms at 28 wk (n = 17) and 7 X 7 months later.",
        "suppress miR-21 expression in U251 cells and GATA1 in STR7 lines",
        "See Box 1 and Table 2 Results; 1000 U of interferon were added.",
        "In 1977 Since then it grew. The 5 Musicians Of The 70s were famous.",
        "Meet me at Gate 12 at 10:30, then Route 66.",
        "3 Supreme Court justices dissented on 12 March 2020.",
        "Flight LH 454 departs from Terminal 2 at 14:05.",
    ],
)
def test_numbers_in_prose_are_not_addresses(text: str) -> None:
    assert find_addresses(text) == []


def test_a_comma_and_lowercase_words_end_the_address() -> None:
    text = "I moved to 12 Oak Street, and I love it there."
    assert values(text) == ["12 Oak Street"]


def test_scores_reflect_the_evidence() -> None:
    [(_, _, typed)] = find_addresses("14 Crown Street")
    [(_, _, sandwich)] = find_addresses("lives at 6750 Koskikatu 25 Apt. 864")
    assert typed >= 0.85
    assert sandwich >= 0.85
