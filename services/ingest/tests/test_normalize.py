from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragbus.ingest.normalize import content_hash, normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ﬁne ＡＢＣ ①", "fine ABC 1"),  # NFKC: ligatures, full-width and circled forms
        ("a\u00a0b\u2003c", "a b c"),  # no-break and em spaces are spaces
        ("one\r\ntwo\rthree\u2028four", "one\ntwo\nthree\nfour"),
        ("page one\x0cpage two", "page one\n\npage two"),  # a page break is a paragraph break
        ("a\x00b\x07c\u200bd\ufeffe\u00adf", "abcdef"),  # controls and invisible format characters
        ("\x93quoted\x94 \x96 dash\x85", "“quoted” – dash..."),  # cp1252 bytes decoded as latin-1 upstream
        ("  lead and trail  \n\n", "lead and trail"),
        ("tabs\tand   runs  of spaces \t here", "tabs and runs of spaces here"),
        ("line one   \n   line two", "line one\nline two"),
    ],
)
def test_normalises_characters_and_whitespace(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_keeps_joiners_that_emoji_and_scripts_need() -> None:
    assert normalize_text("👩\u200d💻 می\u200cخواهم") == "👩\u200d💻 می\u200cخواهم"


def test_collapses_blank_line_runs_but_keeps_paragraphs_and_lines() -> None:
    raw = "Title\n\n\n\n  \n\t\nFirst paragraph,\nsecond line.\n\n\nSecond paragraph."
    assert normalize_text(raw) == "Title\n\nFirst paragraph,\nsecond line.\n\nSecond paragraph."


def test_joins_words_hyphenated_across_lines_only_before_lower_case() -> None:
    raw = "an exam-\nple of hyphen-\nation by Jean-\nPaul in 19-\n20"
    assert normalize_text(raw) == "an example of hyphenation by Jean-\nPaul in 19-\n20"
    assert normalize_text(raw, dehyphenate=False) == raw


def test_drops_lone_surrogates_so_the_text_can_be_hashed() -> None:
    text = normalize_text("broken \ud800 pair")
    assert text == "broken pair"
    assert len(content_hash(text)) == 64


def test_invisible_character_between_letter_and_accent_still_gives_composed_text() -> None:
    # Dropping the zero-width space brings "e" and the combining acute together: they must compose.
    assert normalize_text("caf e\u200b\u0301") == "caf é"


def test_same_content_in_another_layout_has_the_same_hash() -> None:
    a = normalize_text("Results\r\n\r\nThe effect was   significant.\r\n")
    b = normalize_text("Results\n\n\n\nThe effect was significant.")
    assert content_hash(a) == content_hash(b)


@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=300))
def test_normal_form_is_stable_and_clean(raw: str) -> None:
    once = normalize_text(raw)
    assert normalize_text(once) == once  # idempotent: the version of a normalised text never drifts
    assert once == once.strip()
    assert "\r" not in once
    assert "\t" not in once
    assert "\n\n\n" not in once
    assert "  " not in once
    once.encode("utf-8")  # no lone surrogates left
