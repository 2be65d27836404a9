"""`ragbus eval answers`' pure parts: gold labels, verdicts, one answer's scores, the side-by-side table."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Literal

import pytest

from ragbus.client.answers_eval import (
    CLAIM_TEMPLATE,
    LabelledQuestion,
    answer_recall,
    claim_label,
    load_questions,
    options_for,
    parse_configs,
    parse_verdict,
    questions_from_beir,
    score,
    summarise,
    table,
)
from ragbus.client.evaluation import BeirDataset, BeirDocument
from ragbus.common.events import AnswersCompleted, Cascade, Citation, TierAttempt, Verdict


def test_a_claim_is_labelled_by_its_evidence() -> None:
    assert claim_label([]) == "NOINFO"
    assert claim_label([{"label": "SUPPORT"}, {"label": "SUPPORT"}]) == "SUPPORT"
    assert claim_label([{"label": "CONTRADICT"}]) == "CONTRADICT"
    assert claim_label([{"label": "SUPPORT"}, {"label": "CONTRADICT"}]) is None  # mixed: not judged


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("The sources support this claim: mice lacking X [1] ...", "SUPPORT"),
        ("Supported. In [2] the authors found ...", "SUPPORT"),
        ("This is not supported by the sources; [1] reports the opposite.", "CONTRADICT"),
        ("The claim is false: [1] found no effect.", "CONTRADICT"),
        ("The evidence contradicts the claim [3].", "CONTRADICT"),
        ("No evidence in the sources supports or refutes this.", "NOINFO"),
        ("The sources do not mention the dose, so I cannot tell.", "NOINFO"),
        ("I don't know.", "NOINFO"),
        ("Ribosomes translate mRNA into proteins [1].", None),
        # Wordings small models use (bench/cascade.py, 2026-12-05), misread before:
        ("The sources do not support or contradict this claim.", "NOINFO"),
        ("The sources do not support this claim.", "CONTRADICT"),
        ("The sources do not contradict the claim. They support it [1].", "SUPPORT"),
    ],
)
def test_the_verdict_is_read_from_the_answers_opening(answer: str, verdict: str | None) -> None:
    assert parse_verdict(answer) == verdict


def test_a_verdict_deep_inside_a_long_answer_is_not_read() -> None:
    assert parse_verdict("x " * 150 + "this supports the claim") is None


def test_answer_recall_counts_the_gold_answers_content_words() -> None:
    assert answer_recall("to the dead-letter topic", "It goes to the dead-letter topic [1].") == 1.0
    assert answer_recall("PostgreSQL events table", "It stores events [1].") == pytest.approx(1 / 3)
    assert answer_recall("the", "anything") == 0.0  # nothing to compare


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_questions_load_from_jsonl_and_csv_and_bad_rows_are_named(tmp_path: Path) -> None:
    jsonl = write(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "question": "Where do poison messages go?", "answer": "dead-letter topic",
             "doc_ids": ["errors.md"]},
            {"text": "Aspirin lowers fever.", "label": "support", "doc_ids": "d1, d2"},
        ],
    )  # fmt: skip
    a, b = load_questions(jsonl)
    assert (a.qid, a.answer, a.label) == ("a", "dead-letter topic", None)
    assert a.gold_docs == frozenset({"errors.md"})
    assert (b.qid, b.label) == ("2", "SUPPORT")
    assert b.gold_docs == frozenset({"d1", "d2"})
    assert b.question() == CLAIM_TEMPLATE.format(text="Aspirin lowers fever.")
    assert a.question() == "Where do poison messages go?"  # not a claim: asked as it is
    csv_file = tmp_path / "q.csv"
    csv_file.write_text("question,answer\nWhat is a DLQ?,a topic\n", encoding="utf-8")
    assert [q.answer for q in load_questions(csv_file)] == ["a topic"]
    with pytest.raises(ValueError, match=r"row 1: label 'MAYBE'"):
        load_questions(write(tmp_path / "bad.jsonl", [{"question": "?", "label": "maybe"}]))
    with pytest.raises(ValueError, match=r"row 1: no 'question'"):
        load_questions(write(tmp_path / "bad.jsonl", [{"answer": "x"}]))
    (tmp_path / "broken.jsonl").write_text('{"question": "?"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.jsonl, line 2"):
        load_questions(tmp_path / "broken.jsonl")


def test_beir_questions_take_gold_documents_from_qrels_and_labels_from_claims(tmp_path: Path) -> None:
    data = BeirDataset(
        corpus=[BeirDocument("d1", "", "x"), BeirDocument("d2", "", "y")],
        queries={"1": "claim one", "2": "claim two", "3": "claim three"},
        qrels={"1": {"d1": 1}, "2": {"d2": 1, "d1": 0}},
    )
    write(
        tmp_path / "train-claims.jsonl",
        [
            {"_id": "1", "evidence": [{"doc_id": "d1", "label": "SUPPORT"}]},
            {"_id": "2", "evidence": []},
            {"_id": "3", "evidence": [{"label": "SUPPORT"}, {"label": "CONTRADICT"}]},
        ],
    )
    q1, q2, q3 = questions_from_beir(tmp_path, data, "train")
    assert (q1.gold_docs, q1.label) == (frozenset({"d1"}), "SUPPORT")
    assert (q2.gold_docs, q2.label) == (frozenset({"d2"}), "NOINFO")  # relevance 0 is not gold
    assert (q3.gold_docs, q3.label) == (frozenset(), None)
    assert questions_from_beir(tmp_path, data, "test")[0].label is None  # train's claims are not test's
    (tmp_path / "train-claims.jsonl").rename(tmp_path / "claims.jsonl")  # one claims file for any split
    assert questions_from_beir(tmp_path, data, "test")[0].label == "SUPPORT"


def completed(
    answer: str,
    docs: list[str],
    *,
    status: Literal["answered", "blocked", "failed"] = "answered",
    tier: int = 1,
    support: float | None = 1.0,
    cost: float = 0.002,
) -> AnswersCompleted:
    citations = [Citation(n=i + 1, doc_id=d, chunk_id=uuid.uuid4()) for i, d in enumerate(docs)]
    attempts = [TierAttempt(tier=0, name="extractive", accepted=False, reason="x", latency_ms=5)]
    attempts.append(
        TierAttempt(tier=tier, name="m", accepted=True, reason="ok", latency_ms=900, prompt_tokens=300,
                    completion_tokens=40, cost_usd=cost)
    )  # fmt: skip
    verdicts = [] if support is None else [Verdict(check="output.support", passed=True, score=support)]
    return AnswersCompleted(
        query_id="q", status=status, answer=answer, citations=citations, verdicts=verdicts,
        cascade=Cascade(tier=tier, reason="ok", attempts=attempts),
    )  # fmt: skip


def test_one_answer_is_scored_on_verdict_citations_support_and_cost() -> None:
    q = LabelledQuestion("1", "Aspirin lowers fever.", frozenset({"d1", "d2"}), label="SUPPORT")
    s = score(q, "cascade", completed("The sources support it [1][2][3].", ["d1", "d9", "d1"]), 1234.0)
    assert s.cited == ("d1", "d9")  # each document once
    assert (s.citation_precision, s.citation_recall) == (0.5, 0.5)
    assert (s.verdict, s.correct, s.groundedness, s.tier) == ("SUPPORT", True, 1.0, 1)
    assert (s.cost_usd, s.prompt_tokens, s.completion_tokens) == (0.002, 300, 40)
    wrong = score(q, "1", completed("This is false [1].", ["d1"]), 10.0)
    assert (wrong.verdict, wrong.correct) == ("CONTRADICT", False)
    blocked = score(q, "1", completed("", [], status="blocked", support=0.2), 10.0)
    assert (blocked.correct, blocked.cited, blocked.tier, blocked.citation_recall) == (False, (), None, 0.0)
    assert blocked.citation_precision is None  # nothing cited: precision undefined
    unlabelled = score(LabelledQuestion("2", "Hi?"), "0", completed("Hello [1].", ["d1"]), 10.0)
    assert (unlabelled.correct, unlabelled.citation_precision, unlabelled.citation_recall) == (
        None,
        None,
        None,
    )
    gold_text = LabelledQuestion("3", "Where?", answer="dead-letter topic")
    assert score(gold_text, "0", completed("To the dead-letter topic [1].", ["d"]), 1.0).correct is True
    assert score(gold_text, "0", completed("Nowhere [1].", ["d"]), 1.0).correct is False


def test_configurations_are_summarised_side_by_side() -> None:
    q = LabelledQuestion("1", "Aspirin lowers fever.", frozenset({"d1"}), label="SUPPORT")
    runs = {
        "0": [score(q, "0", completed("Aspirin [1].", ["d1"], tier=0, cost=0.0), ms) for ms in (50.0, 70.0)],
        "1": [
            score(q, "1", completed("Supported [1].", ["d1"], support=0.5), 3000.0),
            score(q, "1", completed("", [], status="blocked"), 5000.0),
        ],
    }
    zero, one = (summarise(c, runs[c]) for c in ("0", "1"))
    assert (zero["correct"], zero["citation_precision"], zero["tiers"], zero["cost_usd"]) == (
        0.0,
        1.0,
        {"0": 2},
        0.0,
    )
    assert zero["verdicts"] == {"none": 2}
    assert (one["answered"], one["blocked"], one["correct"], one["tiers"]) == (1, 1, 0.5, {"1": 1})
    assert (one["citation_recall"], one["groundedness"]) == (0.5, 0.75)
    assert one["latency_ms"] == {"p50": 4000.0, "p95": 5000.0}
    lines = table([zero, one]).splitlines()
    assert lines[0].split()[:4] == ["config", "answered", "blocked", "correct"]
    assert lines[1].split()[:4] == ["0", "2/2", "0", "0.000"]
    assert lines[2].split()[:4] == ["1", "1/2", "1", "0.500"]


def test_configurations_parse_to_request_options() -> None:
    assert parse_configs("0, 1,cascade,1") == ["0", "1", "cascade"]
    assert (options_for("1").min_tier, options_for("1").max_tier) == (1, 1)
    assert (options_for("cascade").min_tier, options_for("cascade").max_tier) == (None, None)
    assert not options_for("cascade").cache  # measured afresh, never from an earlier run's answers
    assert not options_for("0").cache
    with pytest.raises(ValueError, match="'gpt'"):
        parse_configs("0,gpt")
    with pytest.raises(ValueError, match="at least one"):
        parse_configs(" , ")


def test_the_readme_example_questions_load(repo_root: Path) -> None:
    questions = load_questions(repo_root / "bench" / "docs-questions.jsonl")
    assert [q.qid for q in questions] == ["dlq", "summary", "redact", "claim"]
    assert all(q.gold_docs and (q.answer or q.label) for q in questions)
    assert all((repo_root / "docs" / doc).is_file() for q in questions for doc in q.gold_docs)
