"""Tier 1 against the real local model server (SmolLM2-135M over llama.cpp, or RAGBUS_CHAT_BASE_URL).

A 135M-parameter model's wording is not something to assert on; what must hold whatever it writes:
the call goes through, tokens are counted, the answer only cites sources it was given, temperature 0
makes it reproducible, and a prompt the server can never take falls back instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from ragbus.common.events import QueryOptions
from ragbus.orchestrator.adapters.chat_openai import OpenAIChatModel
from ragbus.orchestrator.cascade import CascadePolicy, ChatTier, run_cascade
from ragbus.orchestrator.prompts import RAG_ANSWER_V1
from ragbus.orchestrator.testing import make_hit

pytestmark = [pytest.mark.model, pytest.mark.integration]

HITS = [
    make_hit(
        "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the engineering "
        "company of Gustave Eiffel. It was built as the entrance arch to the 1889 World's Fair.",
        0.7,
        doc_id="eiffel",
    ),
    make_hit("The tower is 330 metres tall and was the tallest structure for 41 years.", 0.6, index=1),
]
WHY = "Why was the Eiffel Tower built?"


@pytest.fixture
async def model(chat_base_url: str) -> AsyncIterator[OpenAIChatModel]:
    m = OpenAIChatModel(
        base_url=chat_base_url,
        model=os.environ.get("ORCHESTRATOR_CHAT_MODEL", "smollm2-135m-instruct"),
        timeout_s=120,
    )
    yield m
    await m.aclose()


async def test_tier_1_answers_from_the_sources_it_was_given(model: OpenAIChatModel) -> None:
    await model.ping()
    tier = ChatTier(model=model, prompt=RAG_ANSWER_V1, max_tokens=96)
    r = await run_cascade(WHY, HITS, options=QueryOptions(), policy=CascadePolicy(), tiers=[tier])

    t0, t1 = r.cascade.attempts
    assert not t0.accepted
    assert "asks 'why'" in t0.reason
    assert t1.name == "smollm2-135m-instruct"
    assert t1.error is None
    assert t1.prompt_tokens > 50
    assert 0 < t1.completion_tokens <= 96
    assert t1.latency_ms > 0
    assert t1.prompt == "rag-answer@v1"
    assert r.answer.strip()
    given = {h.chunk_id for h in HITS}
    assert r.citations
    assert {c.chunk_id for c in r.citations} <= given


async def test_temperature_0_gives_the_same_answer_twice(model: OpenAIChatModel) -> None:
    tier = ChatTier(model=model, prompt=RAG_ANSWER_V1, max_tokens=48)
    answers = [
        (
            await run_cascade(
                WHY, HITS, options=QueryOptions(min_tier=1), policy=CascadePolicy(), tiers=[tier]
            )
        ).answer
        for _ in range(2)
    ]
    assert answers[0] == answers[1]


async def test_a_prompt_over_the_context_size_falls_back_to_tier_0(model: OpenAIChatModel) -> None:
    huge = [*HITS, make_hit("padding words " * 40_000, 0.5, index=2)]  # ~80k tokens, over any local context
    tier = ChatTier(model=model, prompt=RAG_ANSWER_V1, max_tokens=16, max_source_chars=1_000_000)
    r = await run_cascade(WHY, huge, options=QueryOptions(), policy=CascadePolicy(), tiers=[tier])

    t1 = r.cascade.attempts[1]
    assert not t1.accepted
    assert t1.error
    assert "HTTP 400" in t1.reason
    assert r.cascade.tier == 0
    assert r.citations
    assert "kept the answer of tier 0" in r.cascade.reason
