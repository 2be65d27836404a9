"""Learned routing: the features a router sees, fitting one, and the cascade calling a tier only when
its router predicts the call pays."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest

from ragbus.common.events import QueryOptions
from ragbus.orchestrator import routing
from ragbus.orchestrator.cascade import CascadePolicy, CascadeResult, ChatTier, run_cascade
from ragbus.orchestrator.extractive import extract_answer
from ragbus.orchestrator.prompts import RAG_ANSWER_V1
from ragbus.orchestrator.routing import FEATURES, Router, features, fit
from ragbus.orchestrator.testing import FakeChatModel, make_hit

HITS = [
    make_hit("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.", 0.62, doc_id="a"),
    make_hit("Gustave Eiffel's company designed and built the tower.", 0.41, doc_id="b", index=1),
]
WHY = "Why was the Eiffel Tower built?"


def router(bias: float, min_benefit: float = 0.5) -> Router:
    """A router that predicts sigmoid(bias) for every question (no weights)."""
    return Router(name="test", weights={}, bias=bias, mean={}, scale={}, min_benefit=min_benefit)


def test_features_describe_the_retrieval_and_tier_0s_quotes() -> None:
    f = features(WHY, HITS, extract_answer(WHY, HITS))
    assert set(f) == set(FEATURES)
    assert f["top_score"] == pytest.approx(0.62)
    assert f["score_gap"] == pytest.approx(0.21)
    assert f["mean_score"] == pytest.approx(0.515)
    assert f["hits"] == 2
    assert (f["non_lookup"], f["question_mark"], f["quoted"]) == (1.0, 1.0, 1.0)
    assert 0 < f["coverage"] <= 1
    statement = "The tower was built in 1889."
    g = features(statement, [], extract_answer(statement, []))
    assert (g["top_score"], g["hits"], g["quoted"], g["question_mark"], g["non_lookup"]) == (0, 0, 0, 0, 0)


def test_fit_learns_which_feature_predicts_a_useful_answer_and_ranks_new_questions_by_it() -> None:
    rng = random.Random(3)

    def sample(n: int) -> tuple[list[dict[str, float]], list[bool]]:
        rows = [{f: rng.random() for f in FEATURES} for _ in range(n)]
        # Useful when the retrieval is strong, with noise; the other features are irrelevant.
        return rows, [r["top_score"] + rng.gauss(0, 0.15) > 0.6 for r in rows]

    rows, labels = sample(300)
    r = fit(rows, labels, name="synthetic")
    assert r.weights["top_score"] > 1.0
    assert all(abs(w) < 0.5 for f, w in r.weights.items() if f != "top_score")
    held, truth = sample(200)
    scores = [r.benefit(x) for x in held]
    pos = [s for s, y in zip(scores, truth, strict=True) if y]
    neg = [s for s, y in zip(scores, truth, strict=True) if not y]
    auc = sum((p > q) for p in pos for q in neg) / (len(pos) * len(neg))
    assert auc > 0.85


def test_fit_needs_both_outcomes() -> None:
    with pytest.raises(ValueError, match="kept and answers that were not"):
        fit([{"top_score": 0.5}] * 3, [True] * 3, name="x")


def test_a_router_survives_its_json_and_loads_by_path(tmp_path: Path) -> None:
    r = dataclasses.replace(router(0.3), weights={"top_score": 2.0}, mean={"top_score": 0.4})
    path = tmp_path / "r.json"
    path.write_text(r.to_json(), encoding="utf-8")
    again = routing.load(str(path))
    assert again == r
    assert again.benefit({"top_score": 0.4}) == pytest.approx(1 / (1 + math.exp(-0.3)))
    with pytest.raises(ValueError, match="no router file 'nope'"):
        routing.load("nope")


async def ask(tier: ChatTier, **options: int) -> tuple[list[str], CascadeResult]:
    result = await run_cascade(
        WHY, HITS, options=QueryOptions(**options), policy=CascadePolicy(), tiers=[tier]
    )
    return [a.reason for a in result.cascade.attempts], result


async def test_a_tier_its_router_does_not_expect_to_pay_is_not_called() -> None:
    model = FakeChatModel("It was built for the World's Fair [1].")
    reasons, result = await ask(ChatTier(model=model, prompt=RAG_ANSWER_V1, router=router(-3.0)))
    assert model.calls == []
    attempt = result.cascade.attempts[-1]
    assert (attempt.tier, attempt.accepted) == (1, False)
    assert attempt.benefit == pytest.approx(0.047, abs=1e-3)
    assert "not called: its router (test) gives its answer a 5% chance of being kept" in reasons[-1]
    # Tier 0's quotes are the answer, and the reason says the model was not asked.
    assert result.cascade.tier == 0
    assert "tier 1: not called" in result.cascade.reason


async def test_a_tier_its_router_expects_to_pay_is_called_and_the_attempt_keeps_the_prediction() -> None:
    model = FakeChatModel("It was built for the World's Fair in Paris [1].")
    _, result = await ask(ChatTier(model=model, prompt=RAG_ANSWER_V1, router=router(2.0)))
    assert len(model.calls) == 1
    attempt = result.cascade.attempts[-1]
    assert attempt.tier == 1
    assert attempt.benefit == pytest.approx(0.881, abs=1e-3)


async def test_the_tiers_min_benefit_overrides_the_routers_operating_point() -> None:
    model = FakeChatModel("It was built for the World's Fair in Paris [1].")
    tier = ChatTier(model=model, prompt=RAG_ANSWER_V1, router=router(0.0, min_benefit=0.9), min_benefit=0.4)
    await ask(tier)
    assert len(model.calls) == 1  # 50% >= 40%, although the router's own point is 90%


async def test_a_tier_the_request_asks_for_is_called_whatever_its_router_says() -> None:
    model = FakeChatModel("It was built for the World's Fair in Paris [1].")
    _, result = await ask(ChatTier(model=model, prompt=RAG_ANSWER_V1, router=router(-5.0)), min_tier=1)
    assert len(model.calls) == 1
    assert result.cascade.attempts[-1].benefit is None
