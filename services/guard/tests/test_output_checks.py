"""Output checks: grounded, cited answers pass; invented sources are blocked; personal data is redacted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest

from ragbus.common.events import AnswersDrafted, Cascade, Citation, RetrievedChunk
from ragbus.common.ids import record_id
from ragbus.guard.output_checks import (
    CITATIONS,
    GROUNDING,
    PII,
    SECRETS,
    SUPPORT,
    USER_REASONS,
    abstains,
    check_output,
)
from ragbus.guard.settings import OutputPolicy
from ragbus.shields.detection import PiiDetector
from ragbus.shields.entities import Entity
from ragbus.shields.grounding import markers

POLICY = OutputPolicy()
CHUNK_A = record_id("default", "doc-a", "0", "h1")
CHUNK_B = record_id("default", "doc-b", "3", "h2")
RETRIEVED = [
    RetrievedChunk(chunk_id=CHUNK_A, doc_id="doc-a", index=0, score=0.9, title="Doc A"),
    RetrievedChunk(chunk_id=CHUNK_B, doc_id="doc-b", index=3, score=0.7),
]


def cite(n: int, chunk: UUID = CHUNK_A, doc: str = "doc-a", **extra: Any) -> Citation:
    return Citation(n=n, doc_id=doc, chunk_id=chunk, **extra)


def drafted(
    answer: str, citations: list[Citation], retrieved: list[RetrievedChunk] = RETRIEVED
) -> AnswersDrafted:
    return AnswersDrafted(
        query_id="q1",
        question="What is it?",
        answer=answer,
        citations=citations,
        retrieved=retrieved,
        cascade=Cascade(tier=0, reason="extractive answer accepted"),
    )


def verdict(result: Any, check: str) -> Any:
    return next(v for v in result.verdicts if v.check == check)


def test_grounded_cited_answer_is_answered_unchanged() -> None:
    d = drafted(
        "Cells divide by mitosis [1], and sometimes meiosis [2].", [cite(1), cite(2, CHUNK_B, "doc-b")]
    )
    result = check_output(d, POLICY)
    assert result.status == "answered"
    assert result.answer == d.answer
    assert result.citations == d.citations
    assert result.reason is None
    assert [v.check for v in result.verdicts] == [GROUNDING, SUPPORT, CITATIONS, PII, SECRETS]
    assert all(v.passed for v in result.verdicts)


def test_citation_to_a_chunk_that_was_not_retrieved_is_blocked() -> None:
    invented = record_id("default", "doc-z", "0", "h9")
    result = check_output(drafted("It is so [1].", [cite(1, invented, "doc-z")]), POLICY)
    assert result.status == "blocked"
    assert result.answer == USER_REASONS[GROUNDING] == result.reason
    assert result.citations == []  # an ungrounded source is not shown as one
    grounding = verdict(result, GROUNDING)
    assert not grounding.passed
    assert grounding.details["unknown_chunks"] == [str(invented)]
    assert "not retrieved" in grounding.reason


def test_marker_without_a_citation_is_blocked() -> None:
    result = check_output(drafted("It is so [1], see also [3].", [cite(1)]), POLICY)
    assert result.status == "blocked"
    grounding = verdict(result, GROUNDING)
    assert grounding.details["unresolved_markers"] == [3]
    assert "[3]" in grounding.reason


def test_citation_naming_another_document_than_its_chunk_is_blocked() -> None:
    result = check_output(drafted("It is so [1].", [cite(1, CHUNK_A, "doc-b")]), POLICY)
    assert result.status == "blocked"
    assert verdict(result, GROUNDING).details["wrong_doc"] == [1]


def test_duplicate_citation_numbers_are_blocked() -> None:
    result = check_output(drafted("It is so [1].", [cite(1), cite(1, CHUNK_B, "doc-b")]), POLICY)
    assert result.status == "blocked"
    assert verdict(result, GROUNDING).details["duplicate_numbers"] == [1]


def test_uncited_answer_is_blocked_unless_it_abstains() -> None:
    uncited = check_output(drafted("The answer is 42.", []), POLICY)
    assert uncited.status == "blocked"
    assert uncited.reason == USER_REASONS[CITATIONS]
    assert verdict(uncited, CITATIONS).reason == "the answer cites no source"

    honest = check_output(drafted("I could not find this in the indexed documents.", []), POLICY)
    assert honest.status == "answered"
    assert verdict(honest, CITATIONS).details["abstained"] is True


def test_citation_requirement_can_be_turned_off() -> None:
    result = check_output(drafted("The answer is 42.", []), OutputPolicy(require_citation=False))
    assert result.status == "answered"


def test_empty_answer_is_blocked() -> None:
    result = check_output(drafted("   ", []), POLICY)
    assert result.status == "blocked"
    assert verdict(result, CITATIONS).reason == "empty answer"


@pytest.mark.parametrize(
    "answer",
    [
        "I don't know.",
        "I do not know based on these sources.",
        "The provided documents do not mention the dosage.",
        "There is not enough information to answer.",
        "I'm not sure.",
    ],
)
def test_abstentions_are_recognised(answer: str) -> None:
    assert abstains(answer)


def test_confident_answers_are_not_abstentions() -> None:
    assert not abstains("The documents mention a dosage of 5 mg [1].")


def test_markers_in_all_shapes() -> None:
    assert markers("a [1] b [2, 3] c [4-6] d [Source 7] e [1][8]") == {1, 2, 3, 4, 5, 6, 7, 8}
    # code indexes and bracketed years are not markers
    assert markers("x[0] and arr[2] in [2020]") == set()


def test_pii_in_answer_and_quotes_is_redacted_with_counts() -> None:
    d = drafted(
        "Contact the author at jane@example.org or +44 20 7946 0958 [1].",
        [cite(1, quote="Corresponding author: jane@example.org", title="Doc A")],
    )
    result = check_output(d, POLICY)
    assert result.status == "answered"
    assert result.answer == "Contact the author at [REDACTED:EMAIL] or [REDACTED:PHONE] [1]."
    assert result.citations[0].quote == "Corresponding author: [REDACTED:EMAIL]"
    pii = verdict(result, PII)
    assert pii.passed
    assert pii.details["action"] == "redacted"
    assert pii.details["counts"] == {"EMAIL": 2, "PHONE": 1}
    assert pii.reason == "redacted 2 EMAIL, 1 PHONE"
    # the data itself is nowhere in the verdicts
    assert "jane@" not in str([v.model_dump() for v in result.verdicts])


def test_pii_block_action_withholds_the_answer() -> None:
    d = drafted("Her SSN is 123-45-6789 [1].", [cite(1)])
    result = check_output(d, OutputPolicy(pii_action="block"))
    assert result.status == "blocked"
    assert result.answer == USER_REASONS[PII]
    assert "123-45-6789" not in result.answer + str(result.verdicts)
    assert verdict(result, PII).details == {
        "action": "blocked",
        "counts": {"US_SSN": 1},
        "in_answer": 1,
        "in_citations": 0,
        "kinds_checked": sorted(POLICY.pii_kinds),
        "ner": False,
        "echoed": 0,
    }


def test_pii_kinds_not_enabled_are_left_alone() -> None:
    d = drafted("Server 10.0.0.7 answered [1].", [cite(1)])
    result = check_output(d, OutputPolicy(pii_kinds=frozenset({"EMAIL"})))
    assert result.answer == d.answer


# --- names (a named-entity model behind the detector) and credentials --------------------------------


class FakeModel:
    """Stands in for the spaCy adapter: tags the given strings with the given labels."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels

    def recognize(self, texts: Sequence[str]) -> list[list[Entity]]:
        return [
            [Entity(label, t.index(v), t.index(v) + len(v)) for v, label in self.labels.items() if v in t]
            for t in texts
        ]


NAMES = PiiDetector(FakeModel({"Sarah Johnson": "PERSON", "Sarah": "PERSON", "Acme": "ORG", "Lyon": "GPE"}))
# Names of persons and places are redacted only where the policy names them (not by default).
WITH_NAMES = OutputPolicy(pii_kinds=frozenset({*POLICY.pii_kinds, "PERSON", "LOCATION"}))


def test_names_and_places_are_redacted_with_a_model_in_answer_and_quotes() -> None:
    quote = "Sarah Johnson (Acme) moved to Lyon."
    d = drafted("Sarah Johnson of Acme wrote it in Lyon [1].", [cite(1, quote=quote, title="Sarah's notes")])
    result = check_output(d, WITH_NAMES, NAMES)
    assert result.status == "answered"
    # organisations are detected but not redacted by default (not personal data; see settings)
    assert result.answer == "[REDACTED:PERSON] of Acme wrote it in [REDACTED:LOCATION] [1]."
    assert result.citations[0].quote == "[REDACTED:PERSON] (Acme) moved to [REDACTED:LOCATION]."
    assert result.citations[0].title == "[REDACTED:PERSON]'s notes"
    pii = verdict(result, PII)
    assert pii.details["counts"] == {"LOCATION": 2, "PERSON": 3}
    assert pii.details["ner"] is True
    assert pii.score == 0.9  # "moved to Lyon": the model's place, confirmed by a cue
    assert "Sarah" not in str([v.model_dump() for v in result.verdicts])


def test_data_the_question_contains_is_not_a_leak() -> None:
    d = drafted("Sarah Johnson moved to Lyon [1].", [cite(1)]).model_copy(
        update={"question": "Where did sarah johnson move?"}
    )
    result = check_output(d, WITH_NAMES, NAMES)
    assert result.answer == "Sarah Johnson moved to [REDACTED:LOCATION] [1]."
    assert verdict(result, PII).details["echoed"] == 1


def test_credentials_are_redacted_by_kind_and_counted_apart() -> None:
    key = "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"
    d = drafted(f"Use the token {key} and mail ops@example.org [1].", [cite(1, quote="password=Hunter2!x")])
    result = check_output(d, POLICY)
    assert result.status == "answered"
    assert result.answer == "Use the token [REDACTED:GITHUB_TOKEN] and mail [REDACTED:EMAIL] [1]."
    assert result.citations[0].quote == "password=[REDACTED:PASSWORD]"
    secrets = verdict(result, SECRETS)
    assert secrets.passed
    assert (secrets.reason, secrets.score) == ("redacted 1 GITHUB_TOKEN, 1 PASSWORD", 1.0)
    assert secrets.details == {
        "action": "redacted",
        "counts": {"GITHUB_TOKEN": 1, "PASSWORD": 1},
        "in_answer": 1,
        "in_citations": 1,
    }
    assert verdict(result, PII).details["counts"] == {"EMAIL": 1}
    assert key not in str([v.model_dump() for v in result.verdicts])


def test_credentials_block_action_withholds_the_answer() -> None:
    d = drafted("The key is AKIAIOSFODNN7EXAMPLE [1].", [cite(1)])
    result = check_output(d, OutputPolicy(secrets_action="block"))
    assert result.status == "blocked"
    assert result.answer == USER_REASONS[SECRETS]
    assert "AKIA" not in result.answer + str(result.verdicts)
    assert not verdict(result, SECRETS).passed
    assert verdict(result, PII).passed


# --- support of each sentence by its cited chunks -------------------------------------------------------

TEXT_A = "Consumers are idempotent: each write is an upsert keyed by a deterministic id."
TEXT_B = "A poison message goes to the topic's dead-letter queue with the reason, after 5 attempts."
WITH_TEXT = [
    RetrievedChunk(chunk_id=CHUNK_A, doc_id="doc-a", index=0, score=0.9, text=TEXT_A),
    RetrievedChunk(chunk_id=CHUNK_B, doc_id="doc-b", index=3, score=0.7, text=TEXT_B),
]
BOTH = [cite(1), cite(2, CHUNK_B, "doc-b")]


def test_an_answer_its_sources_support_is_answered() -> None:
    d = drafted(
        "Each write is an upsert keyed by a deterministic id [1]. "
        "A poison message goes to the dead-letter queue with the reason after 5 attempts [2].",
        BOTH,
        WITH_TEXT,
    )
    result = check_output(d, POLICY)
    assert result.status == "answered"
    v = verdict(result, SUPPORT)
    assert (v.passed, v.score, v.details["judged"], v.details["unsupported"]) == (True, 1.0, 2, [])


def test_an_answer_invented_from_memory_is_withheld_without_echoing_it() -> None:
    d = drafted(
        "Idempotence comes from two-phase commit across a Zookeeper quorum [1]. "
        "Poison messages are retried 12 times before an operator pages the on-call engineer [2].",
        BOTH,
        WITH_TEXT,
    )
    result = check_output(d, POLICY)
    assert result.status == "blocked"
    assert result.answer == USER_REASONS[SUPPORT]
    assert result.citations == []
    v = verdict(result, SUPPORT)
    assert not v.passed
    assert v.reason == "2 of 2 sentence(s) not supported by their cited sources"
    assert "Zookeeper" not in str(v.details)


def test_one_weak_sentence_of_four_passes_and_flag_only_records() -> None:
    answer = (
        "Each write is an upsert keyed by a deterministic id [1]. Consumers are idempotent by design [1]. "
        "A poison message goes to the dead-letter queue with the reason [2]. "
        "This design was popularised by banking mainframes in the seventies [2]."
    )
    v = verdict(check_output(drafted(answer, BOTH, WITH_TEXT), POLICY), SUPPORT)
    assert (v.passed, v.score, len(v.details["unsupported"])) == (True, 0.75, 1)
    invented = drafted(
        "Idempotence comes from two-phase commit across a Zookeeper quorum [1].", BOTH, WITH_TEXT
    )
    flagged = check_output(invented, OutputPolicy(support_action="flag"))
    assert flagged.status == "answered"
    assert verdict(flagged, SUPPORT).reason.startswith("flagged: 1 of 1")


def test_without_chunk_text_support_is_not_judged_and_says_so() -> None:
    d = drafted("Idempotence comes from two-phase commit across a Zookeeper quorum [1].", [cite(1)])
    v = verdict(check_output(d, POLICY), SUPPORT)
    assert v.passed
    assert v.details["note"] == "no cited source text to check against"


def test_an_abstention_is_not_judged_for_support() -> None:
    d = drafted("I don't know; the documents do not mention Zookeeper quorums [1].", [cite(1)], WITH_TEXT)
    v = verdict(check_output(d, POLICY), SUPPORT)
    assert v.passed
    assert v.details["judged"] == 0
