"""The escalation rule: which tier answers, and the reason recorded for each decision."""

from __future__ import annotations

import asyncio
import time

import pytest

from ragbus.common.events import QueryOptions
from ragbus.orchestrator.cascade import (
    NOT_FOUND,
    UNAVAILABLE,
    CascadePolicy,
    CascadeResult,
    ChatTier,
    FailurePolicy,
    is_degenerate,
    is_refusal,
    judge_extractive,
    run_cascade,
)
from ragbus.orchestrator.extractive import ExtractiveAnswer
from ragbus.orchestrator.prompts import RAG_ANSWER_V1
from ragbus.orchestrator.testing import FakeChatModel, make_hit
from ragbus.orchestrator.text import non_lookup_trigger

EIFFEL = make_hit(
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the engineering company "
    "of Gustave Eiffel. Construction of the tower was completed in 1889 for the World's Fair.",
    0.71,
    doc_id="eiffel",
)
HEIGHT = make_hit("The tower is 330 metres tall. It was the tallest structure for 41 years.", 0.6, index=1)
HITS = [EIFFEL, HEIGHT]
POLICY = CascadePolicy(accept_min_score=0.5, accept_min_coverage=0.6)
LOOKUP = "When was the Eiffel Tower completed?"


def tier(model: FakeChatModel, **kw: object) -> ChatTier:
    return ChatTier(model=model, prompt=RAG_ANSWER_V1, **kw)  # type: ignore[arg-type]


async def ask(
    question: str,
    model: FakeChatModel | None = None,
    *,
    hits: list = HITS,  # type: ignore[type-arg]
    policy: CascadePolicy = POLICY,
    tiers: list[ChatTier] | None = None,
    **options: float,
) -> CascadeResult:
    chat = tiers if tiers is not None else [tier(model or FakeChatModel())]
    return await run_cascade(question, hits, options=QueryOptions(**options), policy=policy, tiers=chat)


async def test_a_lookup_with_a_strong_hit_is_answered_at_tier_0_without_a_model() -> None:
    model = FakeChatModel()
    r = await ask(LOOKUP, model)
    assert r.cascade.tier == 0
    assert model.calls == []
    assert "completed in 1889" in r.answer
    assert r.citations[0].chunk_id == EIFFEL.chunk_id
    [attempt] = r.cascade.attempts
    assert attempt.accepted
    assert attempt.name == "extractive"
    assert attempt.cost_usd == 0
    assert "lookup question" in attempt.reason
    assert "0.71" in attempt.reason
    assert r.cascade.reason.startswith("tier 0 (extractive) accepted")


async def test_a_why_question_escalates_to_tier_1_and_says_why() -> None:
    model = FakeChatModel("It was built for the World's Fair of 1889 [1].")
    r = await ask("Why was the Eiffel Tower built?", model)
    assert r.cascade.tier == 1
    assert len(model.calls) == 1
    t0, t1 = r.cascade.attempts
    assert not t0.accepted
    assert "asks 'why'" in t0.reason
    assert t1.accepted
    assert t1.name == "fake-chat"
    assert t1.prompt == "rag-answer@v1"
    assert "asks 'why'" in r.cascade.reason
    assert r.answer == "It was built for the World's Fair of 1889 [1]."
    assert [c.chunk_id for c in r.citations] == [EIFFEL.chunk_id]


@pytest.mark.parametrize(
    "question", ["How does the tower resist wind?", "Compare the tower to others", "Summarise the history"]
)
async def test_questions_that_need_reasoning_escalate(question: str) -> None:
    r = await ask(question)
    assert r.cascade.tier == 1
    assert "needs more than quoting" in r.cascade.attempts[0].reason


def test_how_many_and_how_tall_are_lookups() -> None:
    assert non_lookup_trigger("How tall is the Eiffel Tower?") is None
    assert non_lookup_trigger("How many visitors came?") is None
    assert non_lookup_trigger("How is it maintained?") == "how"
    assert non_lookup_trigger("Could you please explain the design?") == "explain"
    assert non_lookup_trigger("What is the difference between iron and steel?") == "what is the difference"


def test_a_request_for_a_verdict_is_not_a_lookup() -> None:
    # Quoted sentences show the evidence, but not which way it points.
    claim = "Do the sources support or contradict this claim? Klf4 is important for differentiation."
    assert non_lookup_trigger(claim) == "support or contradict"
    assert non_lookup_trigger("True or false: the tower was completed in 1889.") == "true or false"
    assert non_lookup_trigger("Please fact-check this: the tower is 330 m tall.") == "fact-check"
    assert non_lookup_trigger("Does the report support the plan?") is None  # a lookup of what it says


@pytest.mark.parametrize(
    "statement",
    [
        "Klf4 is important for proper myeloid cell differentiation.",  # SciFact claims, not requests
        "Men are more susceptible to death due to pneumonia when compared to women.",
        "Cost effectiveness evaluations based on cRCT data lack external validity.",
    ],
)
def test_request_words_inside_a_statement_do_not_make_it_a_request(statement: str) -> None:
    assert non_lookup_trigger(statement) is None


async def test_a_weak_best_hit_escalates() -> None:
    weak = [make_hit(EIFFEL.text, 0.31)]
    r = await ask(LOOKUP, hits=weak)
    assert r.cascade.tier == 1
    assert "best retrieval score 0.31 is under 0.50" in r.cascade.attempts[0].reason


@pytest.mark.parametrize(
    ("score", "printed"),
    [(0.4996, "0.4996 is under 0.5000"), (0.496, "0.496 is under 0.500"), (0.49, "0.49 is under 0.50")],
)
async def test_a_score_just_under_the_bound_is_printed_with_the_digits_that_show_it(
    score: float, printed: str
) -> None:
    r = await ask(LOOKUP, hits=[make_hit(EIFFEL.text, score)])
    assert r.cascade.tier == 1
    assert f"best retrieval score {printed}," in r.cascade.attempts[0].reason


def test_a_coverage_just_under_the_bound_is_printed_with_the_digits_that_show_it() -> None:
    terms = [f"w{i}" for i in range(200)]
    ex = ExtractiveAnswer(
        text="a quote",
        citations=[],
        sentences=[],
        question_terms=terms,
        covered_terms=terms[:119],
        top_score=0.9,
    )
    accepted, why = judge_extractive("When?", ex, POLICY)  # 119 of 200 = 59.5%, under 60%
    assert not accepted
    assert "contain 119 of the question's 200 content words (59.5%, under 60.0%;" in why


async def test_a_quote_that_misses_most_of_the_question_escalates() -> None:
    r = await ask("When was the Eiffel Tower painted yellow and bronze?")
    reason = r.cascade.attempts[0].reason
    assert r.cascade.tier == 1
    assert "content words" in reason
    assert "missing: painted, yellow, bronze" in reason


async def test_no_matching_sentence_escalates() -> None:
    r = await ask("What is the boiling point of mercury?")
    assert r.cascade.tier == 1
    assert "no retrieved sentence" in r.cascade.attempts[0].reason


async def test_min_tier_1_skips_tier_0_but_keeps_it_as_a_fallback() -> None:
    model = FakeChatModel()
    r = await ask(LOOKUP, model, min_tier=1)
    assert r.cascade.tier == 1
    assert len(model.calls) == 1
    assert "options.min_tier" in r.cascade.attempts[0].reason
    assert not r.cascade.attempts[0].accepted
    assert "escalated past" not in r.cascade.reason  # nothing was escalated past: tier 1 came first


async def test_a_fallback_to_a_tier_the_request_set_aside_says_so_without_contradiction() -> None:
    loop = "la femme au martyre, " * 12
    r = await ask(LOOKUP, FakeChatModel(loop), min_tier=1)
    assert r.cascade.tier == 0
    assert r.cascade.reason == (
        "no tier from tier 1 on was accepted (tier 1: the answer repeats itself (degenerate output)); "
        "kept the answer of tier 0 (extractive) as a fallback, although the request starts the cascade "
        "at tier 1 (options.min_tier)"
    )
    assert r.cascade.attempts[0].reason == (
        "not eligible: the request starts the cascade at tier 1 (options.min_tier); "
        "its answer is only a fallback"
    )


async def test_max_tier_0_never_calls_the_model_and_says_why() -> None:
    model = FakeChatModel()
    r = await ask("Why was the Eiffel Tower built?", model, max_tier=0)
    assert model.calls == []
    assert r.cascade.tier == 0
    assert "options.max_tier=0 forbids escalating" in r.cascade.reason
    assert r.answer
    assert r.citations


async def test_max_tier_wins_over_min_tier() -> None:
    model = FakeChatModel()
    r = await ask(LOOKUP, model, min_tier=1, max_tier=0)
    assert model.calls == []
    assert r.cascade.tier == 0


async def test_nothing_retrieved_says_so_without_citations_or_model() -> None:
    model = FakeChatModel()
    r = await ask(LOOKUP, model, hits=[])
    assert r.answer == NOT_FOUND
    assert r.citations == []
    assert model.calls == []
    assert r.cascade.attempts == []
    assert "nothing relevant was retrieved" in r.cascade.reason


async def test_a_request_the_model_refuses_for_good_falls_back_to_tier_0() -> None:
    model = FakeChatModel()
    model.reject = 400
    r = await ask("Why was the Eiffel Tower built?", model)
    _t0, t1 = r.cascade.attempts
    assert r.cascade.tier == 0
    assert r.answer.endswith("]")
    assert r.citations
    assert not t1.accepted
    assert t1.error
    assert "ChatRejectedError" in t1.error
    assert "HTTP 400" in t1.reason
    assert "kept the answer of tier 0" in r.cascade.reason


async def test_a_model_that_does_not_know_despite_sources_falls_back() -> None:
    r = await ask("Why was the Eiffel Tower built?", FakeChatModel("I don't know."))
    assert r.cascade.tier == 0
    assert "said it cannot answer although 2 sources" in r.cascade.attempts[1].reason


async def test_a_looping_answer_is_not_accepted() -> None:
    loop = "la femme au martyre, " * 12
    r = await ask("Why was the Eiffel Tower built?", FakeChatModel(loop))
    assert r.cascade.tier == 0
    assert "repeats itself" in r.cascade.attempts[1].reason


async def test_an_answer_of_citation_markers_only_is_not_accepted() -> None:
    r = await ask("Why was the Eiffel Tower built?", FakeChatModel("[1] [2] [1] [2] ["))
    assert r.cascade.tier == 0
    assert r.cascade.attempts[1].reason == "the answer is citation markers and no words"
    assert "kept the answer of tier 0" in r.cascade.reason
    yes = await ask("Was the Eiffel Tower built for a fair?", FakeChatModel("Yes [1]."), min_tier=1)
    assert (yes.cascade.tier, yes.answer) == (1, "Yes [1].")  # short, but an answer


FAST_FAILURES = CascadePolicy(
    accept_min_score=0.5,
    accept_min_coverage=0.6,
    failures=FailurePolicy(retries=2, backoff_s=0.001, breaker_failures=2, breaker_cooldown_s=60),
)


async def test_an_outage_is_retried_then_the_cascade_falls_back_and_says_so() -> None:
    model = FakeChatModel()
    model.down = True
    r = await ask("Why was the Eiffel Tower built?", model, policy=FAST_FAILURES)

    assert len(model.calls) == 3  # the first call and two retries
    assert r.cascade.tier == 0  # tier 0's answer, kept as the fallback
    assert r.answer.startswith("The Eiffel Tower is a wrought-iron lattice tower")
    failed = r.cascade.attempts[1]
    assert (failed.tier, failed.accepted) == (1, False)
    assert failed.error is not None
    assert failed.error.startswith("ChatUnavailable: fake-chat: connection refused")
    assert "unavailable (3 calls failed" in failed.reason
    assert "unavailable" in r.cascade.reason
    assert "kept the answer of tier 0" in r.cascade.reason


async def test_a_failed_tier_is_passed_over_for_the_next_one_up() -> None:
    small, big = FakeChatModel(name="small"), FakeChatModel("Built for the fair [1].", name="big")
    small.down = True
    r = await ask("Why was the Eiffel Tower built?", tiers=[tier(small), tier(big)], policy=FAST_FAILURES)
    assert (r.cascade.tier, r.answer) == (2, "Built for the fair [1].")
    assert [a.accepted for a in r.cascade.attempts] == [False, False, True]
    assert "escalated past" in r.cascade.reason
    assert "tier 1: the model server is unavailable" in r.cascade.reason


async def test_a_tier_down_for_several_requests_is_skipped_until_its_cooldown_ends() -> None:
    model = FakeChatModel()
    model.down = True
    tiers = [tier(model)]
    for _ in range(2):  # breaker_failures=2: two requests find it down...
        await ask("Why was the Eiffel Tower built?", tiers=tiers, policy=FAST_FAILURES)
    calls = len(model.calls)
    model.down = False
    r = await ask("Why was the Eiffel Tower built?", tiers=tiers, policy=FAST_FAILURES)
    assert len(model.calls) == calls  # ...so the third does not call it at all
    assert r.cascade.attempts[1].error == "unavailable (circuit open)"
    assert "skipped: the model server failed 2 requests in a row" in r.cascade.attempts[1].reason

    tiers[0].health.open_until = 0.0  # the cooldown is over: one request probes it, and it is back
    r = await ask("Why was the Eiffel Tower built?", tiers=tiers, policy=FAST_FAILURES)
    assert r.cascade.tier == 1
    assert tiers[0].health.failures == 0


async def test_nothing_to_fall_back_on_says_the_model_is_unavailable_not_that_nothing_was_found() -> None:
    model = FakeChatModel()
    model.down = True
    r = await ask("Why was the Eiffel Tower built?", model, policy=FAST_FAILURES, min_tier=1, max_tier=1)
    # min_tier=1: tier 0 ran as a fallback only; it did answer, so its answer is kept
    assert r.cascade.tier == 0
    unrelated = [make_hit("Bananas are rich in potassium.", 0.6)]
    r = await ask("Why was the Eiffel Tower built?", model, hits=unrelated, policy=FAST_FAILURES)
    assert r.answer == UNAVAILABLE
    assert "no tier produced an answer" in r.cascade.reason


async def test_a_refusing_tier_1_escalates_to_tier_2_which_costs_what_it_is_priced() -> None:
    small, big = (
        FakeChatModel("I don't know.", name="small"),
        FakeChatModel("Built for the fair [1].", name="big"),
    )
    tiers = [tier(small), tier(big, price_prompt_per_1k=1.0, price_completion_per_1k=2.0)]
    r = await ask("Why was the Eiffel Tower built?", tiers=tiers)
    assert r.cascade.tier == 2
    assert [a.name for a in r.cascade.attempts] == ["extractive", "small", "big"]
    t2 = r.cascade.attempts[2]
    assert t2.cost_usd == pytest.approx((t2.prompt_tokens * 1.0 + t2.completion_tokens * 2.0) / 1000)
    assert t2.cost_usd > 0
    assert r.cascade.prompt_tokens == sum(a.prompt_tokens for a in r.cascade.attempts)
    assert "escalated past tier 0" in r.cascade.reason
    assert "tier 1:" in r.cascade.reason


async def test_without_a_chat_tier_tier_0_answers_whatever_it_finds() -> None:
    r = await ask("Why was the Eiffel Tower built?", tiers=[])
    assert r.cascade.tier == 0
    assert "the last configured tier" not in r.cascade.reason
    assert "kept the answer of tier 0" in r.cascade.reason


async def test_with_tier_0_disabled_the_model_answers_even_a_lookup() -> None:
    model = FakeChatModel()
    r = await ask(LOOKUP, model, policy=CascadePolicy(extractive=False))
    assert r.cascade.tier == 1
    assert [a.tier for a in r.cascade.attempts] == [1]


def test_refusals_and_loops_are_recognised() -> None:
    assert is_refusal("I don't know.")
    assert is_refusal("The sources do not contain this information.")
    assert not is_refusal("The tower was completed in 1889 [1].")
    assert is_degenerate("a b c d " * 10)
    assert not is_degenerate("The tower was completed in 1889 for the fair.")


async def test_a_cost_cap_skips_a_tier_whose_worst_case_would_pass_it() -> None:
    small, big = (
        FakeChatModel("I don't know.", name="small"),
        FakeChatModel("Built for the fair [1].", name="big"),
    )
    tiers = [tier(small), tier(big, price_prompt_per_1k=1.0, price_completion_per_1k=2.0)]
    capped = await ask("Why was the Eiffel Tower built?", tiers=tiers, max_cost_usd=0.01)
    assert big.calls == []  # 256 completion tokens at $2 / 1k alone is $0.51
    assert capped.cascade.attempts[2].error == "over the request's budget"
    assert "options.max_cost_usd=0.01" in capped.cascade.attempts[2].reason
    assert sum(a.cost_usd for a in capped.cascade.attempts) <= 0.01
    free = await ask("Why was the Eiffel Tower built?", tiers=tiers, max_cost_usd=1.0)
    assert free.cascade.tier == 2


async def test_a_latency_cap_cuts_a_slow_model_off_and_keeps_the_cheaper_answer() -> None:
    class Slow(FakeChatModel):
        async def complete(self, messages, *, max_tokens, temperature):  # type: ignore[no-untyped-def]
            await asyncio.sleep(5)
            return await super().complete(messages, max_tokens=max_tokens, temperature=temperature)

    started = time.perf_counter()
    r = await ask("Why was the Eiffel Tower built?", Slow(), max_latency_ms=200)
    assert time.perf_counter() - started < 2
    assert r.cascade.tier == 0
    assert r.cascade.attempts[1].error == "over the request's latency cap"
    assert "latency cap (200 ms)" in r.cascade.attempts[1].reason


async def test_a_tier_takes_at_most_its_concurrency_in_calls_at_once() -> None:
    running, peak = 0, 0

    class Counting(FakeChatModel):
        async def complete(self, messages, *, max_tokens, temperature):  # type: ignore[no-untyped-def]
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1
            return await super().complete(messages, max_tokens=max_tokens, temperature=temperature)

    shared = [tier(Counting(), limit=asyncio.Semaphore(2))]
    await asyncio.gather(*(ask("Why was the Eiffel Tower built?", tiers=shared) for _ in range(6)))
    assert peak == 2


def test_a_small_context_window_keeps_the_best_sources_whole_and_drops_the_rest() -> None:
    from ragbus.orchestrator.settings import ChatTierSettings

    small = ChatTierSettings(base_url="http://x/v1", model="m", context_window=1024, max_tokens=256)
    assert small.source_chars() == 588  # (1,024 - 256 answer - 600 instructions) tokens x 3.5
    assert ChatTierSettings(base_url="http://x/v1", model="m").source_chars() == 6000
    hits = [make_hit(f"Source number {i}. " + "words " * 200, index=i) for i in range(5)]
    messages = RAG_ANSWER_V1.render("Why?", hits, max_source_chars=small.source_chars())
    prompt = messages[-1].content
    assert "[1] Source number 0." in prompt
    assert "Source number 1." not in prompt  # 588 characters hold one readable source, not five stubs


async def test_deferring_models_stops_where_a_model_would_be_called_and_answers_what_needs_none() -> None:
    model = FakeChatModel()
    chat = [tier(model)]
    why = "Why was the Eiffel Tower built?"
    deferred = await run_cascade(
        why, HITS, options=QueryOptions(), policy=POLICY, tiers=chat, defer_models=True
    )
    assert deferred.deferred
    assert deferred.cascade.tier == 1
    assert model.calls == []  # the model lane calls it
    # What needs no model is answered as before: a lookup, a request capped at tier 0, nothing found.
    for question, options, hits in (
        (LOOKUP, QueryOptions(), HITS),
        (why, QueryOptions(max_tier=0), HITS),
        (why, QueryOptions(), []),
    ):
        r = await run_cascade(question, hits, options=options, policy=POLICY, tiers=chat, defer_models=True)
        assert not r.deferred, question
        assert r.cascade.tier == 0
    assert model.calls == []
    assert not (await run_cascade(why, HITS, options=QueryOptions(), policy=POLICY, tiers=chat)).deferred
    assert len(model.calls) == 1
