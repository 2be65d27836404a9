"""`ragbus export`: which rated requests make a dataset and how each line reads (pure functions, exact
outputs), and the command end to end on PostgreSQL, its `eval` output read back by `ragbus eval answers`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ragbus.client.answers_eval import LabelledQuestion, load_questions
from ragbus.common.envelope import Envelope
from ragbus.common.events import FeedbackSubmitted, RetrievedChunk
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.export import (
    SYSTEM,
    Context,
    Example,
    contexts,
    eval_line,
    export_summary,
    lines,
    openai_chat,
    select,
    user_message,
)
from ragbus.monitor.ports import RatedRequest
from ragbus.monitor.settings import MonitorSettings

AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
CITED = {"n": 1, "doc_id": "doc-17", "chunk_id": "c-17", "title": "Vitamin D and fractures", "quote": "q"}
RETRIEVED = [
    {
        "chunk_id": "c-3",
        "doc_id": "doc-3",
        "index": 4,
        "score": 0.5,
        "title": None,
        "text": "Calcium varies.",
    },
    {
        "chunk_id": "c-17",
        "doc_id": "doc-17",
        "index": 0,
        "score": 0.8,
        "text": "Vitamin D alone did not help.",
    },
    {"chunk_id": "c-9", "doc_id": "doc-9", "index": 1, "score": 0.3, "text": None},
]


def rated(**fields: Any) -> RatedRequest:
    base = RatedRequest(
        tenant="acme",
        correlation_id="q-1",
        query_id="q-1",
        question="Does vitamin D prevent fractures?",
        status="answered",
        answer="Not on its own [1].",
        citations=[CITED],
        retrieved=RETRIEVED,
        rating="up",
        comment=None,
        correction=None,
        submitted_at=AT,
        rated_at=AT + timedelta(minutes=2),
        erased=False,
    )
    return dataclasses.replace(base, **fields)


EXAMPLE = Example(
    tenant="acme",
    query_id="q-1",
    question="Does vitamin D prevent fractures?",
    answer="Not on its own [1].",
    corrected=False,
    contexts=(
        Context(1, "doc-17", "c-17", "Vitamin D and fractures", "Vitamin D alone did not help."),
        Context(2, "doc-3", "c-3", None, "Calcium varies."),
    ),
    doc_ids=("doc-17",),
)


# --- contexts ---------------------------------------------------------------------------------------------


def test_contexts_are_numbered_as_the_answer_cites_them_then_the_rest_in_retrieval_order() -> None:
    # The answer cites c-17 as [1] though retrieval ranked it second; c-9 has no text to show.
    assert contexts([CITED], RETRIEVED) == EXAMPLE.contexts


def test_a_cited_chunk_retrieval_did_not_return_is_shown_by_its_quote() -> None:
    cited = [{"n": 2, "doc_id": "d", "chunk_id": "gone", "title": None, "quote": "  The quoted passage. "}]
    assert contexts(cited, []) == (Context(2, "d", "gone", None, "The quoted passage."),)


# --- selection --------------------------------------------------------------------------------------------


def test_select_keeps_answered_requests_rated_up_or_corrected_and_says_why_it_left_the_others_out() -> None:
    requests = [
        rated(),
        rated(query_id="q-2", rating="down", correction="Only with calcium [1]."),
        rated(query_id="q-3", rating="down", comment="wrong"),
        rated(query_id="q-4", erased=True),
        rated(query_id="q-5", status="blocked", answer="I can't share that."),
        rated(query_id="q-6", status="failed"),
        rated(query_id="q-7", status="pending", answer=None),
        rated(query_id="q-8", rating="up", correction="   "),  # a blank correction corrects nothing
    ]
    selection = select(requests)
    assert selection.examples == [
        EXAMPLE,
        dataclasses.replace(EXAMPLE, query_id="q-2", answer="Only with calcium [1].", corrected=True),
        dataclasses.replace(EXAMPLE, query_id="q-8"),
    ]
    assert selection.skipped == Counter(
        {
            "downvoted without a correction": 1,
            "erased": 1,
            "not answered (blocked)": 1,
            "not answered (failed)": 1,
            "not answered (pending)": 1,
        }
    )
    assert export_summary(selection, "out.jsonl") == (
        "exported 3 examples (1 corrected) to out.jsonl; left out: downvoted without a correction 1, "
        "erased 1, not answered (blocked) 1, not answered (failed) 1, not answered (pending) 1"
    )


def test_min_rating_corrected_keeps_only_corrected_answers() -> None:
    selection = select([rated(), rated(query_id="q-2", correction="Only with calcium [1].")], "corrected")
    assert [(e.query_id, e.answer) for e in selection.examples] == [("q-2", "Only with calcium [1].")]
    assert selection.skipped == Counter({"not corrected": 1})


def test_an_erased_request_is_left_out_even_when_corrected() -> None:
    assert select([rated(erased=True, correction="Fixed.")]).skipped == Counter({"erased": 1})


# --- formats ----------------------------------------------------------------------------------------------


def test_an_openai_chat_line_is_system_user_with_sources_and_assistant() -> None:
    assert openai_chat(EXAMPLE) == {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": 'Sources:\n<source id="1" title="Vitamin D and fractures">\n'
                "Vitamin D alone did not help.\n</source>\n"
                '<source id="2">\nCalcium varies.\n</source>\n\n'
                "Question: Does vitamin D prevent fractures?\nAnswer with citations:",
            },
            {"role": "assistant", "content": "Not on its own [1]."},
        ]
    }


def test_a_source_cannot_close_its_block_or_break_its_title() -> None:
    tricky = Context(1, None, None, 'A "quoted" <title>', "text </source> more")
    assert user_message("Q?", [tricky]) == (
        'Sources:\n<source id="1" title="A &quot;quoted&quot; &lt;title>">\ntext &lt;/source> more\n'
        "</source>\n\nQuestion: Q?\nAnswer with citations:"
    )


def test_an_eval_line_is_what_ragbus_eval_answers_reads(tmp_path: Path) -> None:
    assert eval_line(EXAMPLE) == {
        "id": "q-1",
        "question": "Does vitamin D prevent fractures?",
        "answer": "Not on its own [1].",
        "doc_ids": ["doc-17"],
        "contexts": ["Vitamin D alone did not help.", "Calcium varies."],
        "tenant": "acme",
        "corrected": False,
    }
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(line + "\n" for line in lines([EXAMPLE], "eval")), encoding="utf-8")
    assert load_questions(path) == [
        LabelledQuestion(
            "q-1", "Does vitamin D prevent fractures?", frozenset({"doc-17"}), "Not on its own [1]."
        )
    ]


def test_lines_keep_text_as_written() -> None:
    example = dataclasses.replace(EXAMPLE, question="Où est la tour ?", contexts=())
    [line] = lines([example], "openai-chat")
    assert "Où est la tour ?" in line
    assert (
        json.loads(line)["messages"][1]["content"]
        == "Sources:\n\n\nQuestion: Où est la tour ?\nAnswer with citations:"
    )


# --- the command, end to end on PostgreSQL ------------------------------------------------------------------


@pytest.mark.integration
async def test_ragbus_export_writes_a_dataset_that_ragbus_eval_answers_reads(
    settings: MonitorSettings,
    pg_schema: str,
    database_url: str,
    request_of: Callable[..., Any],
    record_of: Callable[[Envelope[Any]], Any],
    tmp_path: Path,
) -> None:
    store = await PostgresEventStore.open(settings.model_copy(update={"db_schema": pg_schema}))
    good, corrected, downvoted, erased = (request_of(query_id=f"q-{i}") for i in range(4))
    blocked = request_of(query_id="q-4", status="blocked")
    other_tenant = request_of(tenant="beta", query_id="q-1")
    cited = good.drafted.data.citations[0]
    text = RetrievedChunk(
        chunk_id=cited.chunk_id,
        doc_id="doc-17",
        index=0,
        score=0.8,
        text="Vitamin D alone did not reduce fractures.",
    )
    ratings = [
        rating(good, "up"),
        rating(corrected, "down", correction="Only with calcium [1]."),
        rating(downvoted, "down", comment="wrong"),
        rating(erased, "up"),
        rating(blocked, "up"),
        rating(other_tenant, "up"),
    ]
    drafted = good.drafted.model_copy(
        update={"data": good.drafted.data.model_copy(update={"retrieved": [text]})}
    )
    events = [*good.all[:2], drafted, good.completed]
    events += [e for r in (corrected, downvoted, erased, blocked, other_tenant) for e in r.all]
    try:
        await store.record_batch([record_of(e) for e in [*events, *ratings]], [])
        conn = await asyncpg.connect(database_url)
        try:  # what `ragbus audit erase` leaves on the request's answer
            q = f'"{pg_schema}".events'
            await conn.execute(f"UPDATE {q} SET erased_at = now() WHERE event_id = $1", erased.completed.id)
        finally:
            await conn.close()
    finally:
        await store.aclose()

    env = os.environ | {"MONITOR_DATABASE_URL": database_url, "MONITOR_DB_SCHEMA": pg_schema}
    ragbus = str(Path(sys.executable).parent / "ragbus")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ragbus, "export", *args], env=env, capture_output=True, text=True, check=False)

    out = tmp_path / "gold.jsonl"
    done = run("--format", "eval", "--tenant", "acme", "--since", "1d", "--out", str(out))
    chat = run("--format", "openai-chat", "--tenant", "acme", "--min-rating", "corrected")

    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        f"exported 2 examples (1 corrected) to {out}; left out: downvoted without a correction 1, "
        "erased 1, not answered (blocked) 1\n"
    )
    answer = good.completed.data.answer
    assert load_questions(out) == [
        LabelledQuestion("q-0", good.submitted.data.question, frozenset({"doc-17"}), answer),
        LabelledQuestion(
            "q-1", corrected.submitted.data.question, frozenset({"doc-17"}), "Only with calcium [1]."
        ),
    ]
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["contexts"] == ["Vitamin D alone did not reduce fractures."]
    assert chat.returncode == 0, chat.stderr
    [line] = [json.loads(x) for x in chat.stdout.splitlines()]
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
    assert line["messages"][2]["content"] == "Only with calcium [1]."
    assert line["messages"][1]["content"].endswith(
        f"Question: {corrected.submitted.data.question}\nAnswer with citations:"
    )


def rating(req: Any, value: str, **fields: Any) -> Envelope[FeedbackSubmitted]:
    data = FeedbackSubmitted(query_id=req.submitted.data.query_id, rating=value, **fields)
    event = Envelope.new(
        data, source="ragbus/cli", tenant=req.submitted.tenantid, correlation_id=data.query_id
    )
    return event.model_copy(update={"time": req.completed.time + timedelta(minutes=1)})
