"""Conversation memory: which questions are follow-ups, what retrieval searches for them, what a chat
tier is shown, and the memory on each vector store adapter."""

from __future__ import annotations

import pytest

from ragbus.orchestrator.adapters.memory_store import VectorConversationMemory
from ragbus.orchestrator.conversation import is_follow_up, recent, standalone
from ragbus.orchestrator.ports import Turn
from ragbus.orchestrator.prompts import RAG_ANSWER_V3
from ragbus.orchestrator.testing import make_hit
from ragbus.vectors.ports import VectorStore

FIRST = Turn("q1", "When was the Eiffel Tower completed?", "It was completed in 1889 [1].")


@pytest.mark.parametrize(
    "question",
    ["How tall is it?", "What about its height?", "And in 2020?", "Why?", "Who designed that tower?",
     "what about the engineers", "Tell me more."],
)  # fmt: skip
def test_a_question_that_refers_back_is_a_follow_up(question: str) -> None:
    assert is_follow_up(question)
    assert standalone(question, [FIRST]) == f"{FIRST.question} {question}"


@pytest.mark.parametrize(
    "question",
    ["How is sourdough bread leavened?", "What does the monitor store in PostgreSQL?",
     "Which Paris landmark was built for the 1889 World's Fair?"],
)  # fmt: skip
def test_a_question_that_stands_alone_is_searched_alone(question: str) -> None:
    assert not is_follow_up(question)
    assert standalone(question, [FIRST]) == question


def test_without_history_nothing_is_added() -> None:
    assert standalone("How tall is it?", []) == "How tall is it?"


def test_a_chat_tier_sees_the_newest_whole_turns_within_the_budget() -> None:
    turns = [Turn(f"q{i}", f"question {i} " + "x" * 40, f"answer {i} " + "y" * 40) for i in range(5)]
    shown = recent(turns, max_chars=200)
    assert [t.query_id for t in shown] == ["q3", "q4"]  # ~100 characters a turn
    assert recent(turns, max_chars=0) == []

    messages = RAG_ANSWER_V3.render(
        "How tall is it?", [make_hit("The tower is 330 metres tall.")], max_source_chars=500, history=[FIRST]
    )
    roles = [m.role for m in messages]
    assert roles[-3:] == ["user", "assistant", "user"]
    assert messages[-3].content == FIRST.question
    assert messages[-2].content == "It was completed in 1889."  # its markers named that turn's sources
    assert "How tall is it?" in messages[-1].content


async def test_turns_are_kept_in_order_per_tenant_and_conversation_and_bounded(
    side_store: VectorStore,
) -> None:
    memory = VectorConversationMemory(side_store, dim=8, max_turns=3)
    assert await memory.turns("acme", "c1") == []
    for i in range(5):
        await memory.record("acme", "c1", Turn(f"q{i}", f"question {i}", f"answer {i}"))
    await memory.record("acme", "c2", Turn("other", "another conversation", "..."))
    await memory.record("globex", "c1", Turn("theirs", "another tenant", "..."))

    kept = await memory.turns("acme", "c1")
    assert [t.query_id for t in kept] == ["q2", "q3", "q4"]  # the oldest forgotten
    assert kept[-1] == Turn("q4", "question 4", "answer 4")
    assert await side_store.count("acme", "conversation:c1") == 3  # forgotten means deleted
    assert [t.query_id for t in await memory.turns("acme", "c2")] == ["other"]
    assert [t.query_id for t in await memory.turns("globex", "c1")] == ["theirs"]

    await memory.record("acme", "c1", Turn("q4", "question 4", "answer 4, redacted"))  # the same turn again
    kept = await memory.turns("acme", "c1")
    assert [t.query_id for t in kept] == ["q2", "q3", "q4"]
    assert kept[-1].answer == "answer 4, redacted"
