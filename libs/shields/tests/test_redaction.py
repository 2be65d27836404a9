"""Redaction: `[REDACTED:<KIND>]` for answers, numbered placeholders that keep a question usable."""

from __future__ import annotations

from ragbus.shields.pii import PiiSpan
from ragbus.shields.redaction import pseudonymize, redact
from ragbus.shields.secrets import SecretSpan


def at(text: str, kind: str, value: str, nth: int = 0) -> PiiSpan:
    start = -1
    for _ in range(nth + 1):
        start = text.index(value, start + 1)
    return PiiSpan(kind, start, start + len(value))  # type: ignore[arg-type]


def test_redact_keeps_the_answer_form_and_takes_secrets_too() -> None:
    text = "Ask Ann at ann@example.org with key ghp_x"
    spans: list[PiiSpan | SecretSpan] = [
        at(text, "PERSON", "Ann"),
        at(text, "EMAIL", "ann@example.org"),
        SecretSpan("GITHUB_TOKEN", 36, 41),
    ]
    assert redact(text, spans) == "Ask [REDACTED:PERSON] at [REDACTED:EMAIL] with key [REDACTED:GITHUB_TOKEN]"


def test_overlapping_spans_are_redacted_once() -> None:
    text = "call 555 0100 now"
    assert redact(text, [PiiSpan("PHONE", 5, 13), PiiSpan("PERSON", 9, 13)]) == "call [REDACTED:PHONE] now"


def test_the_same_entity_gets_the_same_number() -> None:
    text = "Did Ann Lee email Bob Stone at bob@x.org? Lee says ann lee never did; Bob Stone disagrees."
    spans = [
        at(text, "PERSON", "Ann Lee"),
        at(text, "PERSON", "Bob Stone"),
        at(text, "EMAIL", "bob@x.org"),
        at(text, "PERSON", "Lee", 1),
        at(text, "PERSON", "ann lee"),
        at(text, "PERSON", "Bob Stone", 1),
    ]
    result = pseudonymize(text, spans)
    assert result.text == (
        "Did [PERSON_1] email [PERSON_2] at [EMAIL_1]? [PERSON_1] says [PERSON_1] never did; "
        "[PERSON_2] disagrees."
    )
    assert result.originals == {"[PERSON_1]": "Ann Lee", "[PERSON_2]": "Bob Stone", "[EMAIL_1]": "bob@x.org"}
    assert "Ann Lee" not in repr(result)  # the mapping is personal data: not in its repr (logs)


def test_numbers_are_the_same_entity_whatever_their_spacing() -> None:
    text = "Card 4111 1111 1111 1111 or 4111111111111111?"
    spans = [PiiSpan("CREDIT_CARD", 5, 24), PiiSpan("CREDIT_CARD", 28, 44)]
    assert pseudonymize(text, spans).text == "Card [CREDIT_CARD_1] or [CREDIT_CARD_1]?"


def test_a_single_name_shared_by_two_people_is_not_guessed() -> None:
    text = "Ann Lee and Tom Lee met; Lee left."
    spans = [at(text, "PERSON", "Ann Lee"), at(text, "PERSON", "Tom Lee"), at(text, "PERSON", "Lee", 2)]
    assert pseudonymize(text, spans).text == "[PERSON_1] and [PERSON_2] met; [PERSON_3] left."


def test_numbering_continues_over_a_conversation_and_restores() -> None:
    first = pseudonymize("Who is Ann Lee?", [PiiSpan("PERSON", 7, 14)])
    text = "And Bob, does he know Ann Lee?"
    second = pseudonymize(text, [at(text, "PERSON", "Bob"), at(text, "PERSON", "Ann Lee")], first.originals)
    assert second.text == "And [PERSON_2], does he know [PERSON_1]?"
    assert second.restore("[PERSON_2] has met [PERSON_1]; [PERSON_9] is unknown") == (
        "Bob has met Ann Lee; [PERSON_9] is unknown"
    )
