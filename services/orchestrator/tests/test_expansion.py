"""Query expansion: what is asked of the cheapest tier, what of its output is used, how retrieval fuses
it, and that a model that fails or dawdles never holds up the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ragbus.orchestrator.cascade import ChatTier
from ragbus.orchestrator.expansion import ExpansionPolicy, expand, messages, parse
from ragbus.orchestrator.ports import ChatMessage, ChatResult
from ragbus.orchestrator.prompts import RAG_ANSWER_V3
from ragbus.orchestrator.retrieval import retrieve
from ragbus.orchestrator.testing import FakeChatModel, index_texts
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.testing import HashingEmbedder

MULTI = ExpansionPolicy(mode="multi-query", variants=3)


def tier(model: FakeChatModel, price_prompt_per_1k: float = 0.0) -> ChatTier:
    return ChatTier(model=model, prompt=RAG_ANSWER_V3, price_prompt_per_1k=price_prompt_per_1k)


HYDE = ExpansionPolicy(mode="hyde")


def test_multi_query_asks_for_rewrites_and_hyde_for_a_passage() -> None:
    [_, user] = messages("Does aspirin lower fever?", MULTI)
    assert "3 different ways, one per line" in user.content
    assert user.content.endswith("Query: Does aspirin lower fever?")
    [_, user] = messages("Does aspirin lower fever?", HYDE)
    assert "one paragraph" in user.content


def test_rewrites_are_parsed_from_numbered_lines_without_preambles_or_echoes() -> None:
    output = (
        "Here are three rewrites:\n"
        "1. Effect of acetylsalicylic acid on body temperature\n"
        '2) "Aspirin antipyretic efficacy"\n'
        "- does aspirin lower fever\n"  # the question again
        "* Aspirin antipyretic efficacy\n"  # a duplicate
        "fever\n"  # one word: not a query
        "Query 4: salicylates and pyrexia in adults\n"
        "5. a fifth one beyond the three asked for\n"
    )
    assert parse(output, "Does aspirin lower fever?", MULTI) == (
        "Effect of acetylsalicylic acid on body temperature",
        "Aspirin antipyretic efficacy",
        "salicylates and pyrexia in adults",
    )
    assert parse("", "q", MULTI) == ()
    assert all(len(v) <= 300 for v in parse("x " * 400, "q", MULTI))


def test_a_hypothetical_passage_is_one_text_and_a_stub_is_none() -> None:
    passage = "Aspirin   reduces fever by inhibiting\ncyclooxygenase, lowering prostaglandin E2."
    assert parse(passage, "q", HYDE) == (
        "Aspirin reduces fever by inhibiting cyclooxygenase, lowering prostaglandin E2.",
    )
    assert parse("I don't know.", "q", HYDE) == ()


async def test_expansion_records_its_tokens_and_cost_and_answers_nothing() -> None:
    model = FakeChatModel("1. acetylsalicylic acid fever\n2. aspirin antipyretic")
    found = await expand(tier(model, price_prompt_per_1k=1.0), "Does aspirin lower fever?", MULTI)
    assert found.texts == ("acetylsalicylic acid fever", "aspirin antipyretic")
    attempt = found.attempt
    assert attempt is not None
    assert (attempt.tier, attempt.accepted, attempt.prompt) == (1, False, "expansion-multi-query@v1")
    assert attempt.reason == "query expansion (multi-query): 2 used"
    assert attempt.prompt_tokens > 0
    assert attempt.cost_usd == pytest.approx(attempt.prompt_tokens / 1000)
    assert len(model.calls) == 1
    assert await expand(tier(model), "q", ExpansionPolicy()) == type(found)()  # off: nothing, no call
    assert len(model.calls) == 1


class SlowModel(FakeChatModel):
    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> ChatResult:
        await asyncio.sleep(5)
        return await super().complete(messages, max_tokens=max_tokens, temperature=temperature)


async def test_a_model_that_is_down_or_slow_leaves_the_question_alone() -> None:
    down = FakeChatModel()
    down.down = True
    failed = await expand(tier(down), "q", MULTI)
    assert (failed.texts, failed.error) == ((), "fake-chat: connection refused")
    assert failed.attempt is not None
    assert failed.attempt.reason == "query expansion (multi-query): skipped"
    slow = await expand(tier(SlowModel()), "q", ExpansionPolicy(mode="hyde", timeout_s=0.05))
    assert (slow.texts, slow.error) == ((), "timed out after 0.05 s")
    refused = FakeChatModel()
    refused.reject = 400
    assert (await expand(tier(refused), "q", HYDE)).texts == ()


async def test_expansions_find_what_the_question_alone_misses(unique: str) -> None:
    embedder = HashingEmbedder()
    store = QdrantServerStore(":memory:", collection=unique)
    docs = {
        "aspirin": ["Acetylsalicylic acid lowers pyrexia through cyclooxygenase inhibition."],
        "other": ["Fever is a common symptom of influenza in adults."],
    }
    await index_texts(store, embedder, "acme", docs)
    question = "Does aspirin treat fever?"
    alone = await retrieve(embedder, store, tenant="acme", question=question, top_k=1, min_score=-1)
    assert [h.doc_id for h in alone.hits] == ["other"]  # shares "fever" with the question
    expanded = await retrieve(
        embedder, store, tenant="acme", question=question, top_k=2, min_score=-1,
        expansions=["acetylsalicylic acid pyrexia", "cyclooxygenase inhibition lowers pyrexia"],
    )  # fmt: skip
    assert [h.doc_id for h in expanded.hits] == ["aspirin", "other"]
    assert all(h.fused is not None for h in expanded.hits)
    # Tenant scoping holds for every expansion too.
    other = await retrieve(
        embedder, store, tenant="globex", question=question, top_k=2, min_score=-1, expansions=["pyrexia"]
    )
    assert other.hits == []
    await store.aclose()
