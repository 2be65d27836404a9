"""The orchestrator's own overhead: a request's time in `draft_answer` outside retrieval and model calls.

    python bench/overhead.py [--requests 300]

The real use case (`ragbus.orchestrator.usecases.draft_answer`: cache lookup, retrieval, the cascade's
checks, citation renumbering, the event) over the repository's docs/ in qdrant-client's local mode, with
a hashing embedder and a scripted chat model that answers at once, so what is left is the orchestrator's
work. Per configuration: the median and p95 of the whole call, of retrieval (embedding the question and
the store's search), of the semantic cache's lookup, of the model calls, and of the rest (the overhead:
the cascade's checks, prompt rendering, citations, the event), in ms. The issue's target: overhead
under 5 ms p50.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from ragbus.common.envelope import Envelope
from ragbus.common.events import QueriesAccepted, QueryOptions
from ragbus.orchestrator.adapters.answer_cache import VectorAnswerCache
from ragbus.orchestrator.cascade import ChatTier
from ragbus.orchestrator.prompts import get_prompt
from ragbus.orchestrator.routing import FEATURES, Router
from ragbus.orchestrator.settings import DEFAULT_PROMPT, OrchestratorSettings
from ragbus.orchestrator.testing import FakeChatModel, index_texts
from ragbus.orchestrator.usecases import OrchestratorDeps, draft_answer
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.testing import HashingEmbedder

DOCS = Path(__file__).resolve().parents[1] / "docs"
QUESTIONS = [
    "Where does a service send a message it can never process?",
    "How does the cascade decide to call the model?",
    "What does the monitor store?",
    "Why are consumers idempotent?",
    "Which personal data does the guard redact?",
    "How are documents chunked?",
]


class TimedModel(FakeChatModel):
    """Answers at once, citing the first source, and counts the time spent in it."""

    spent_ms = 0.0

    async def complete(self, messages, *, max_tokens, temperature):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return await super().complete(messages, max_tokens=max_tokens, temperature=temperature)
        finally:
            TimedModel.spent_ms += (time.perf_counter() - started) * 1000


def chunks(text: str, size: int = 1200) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    embedder = HashingEmbedder(dim=384)
    store = QdrantServerStore(":memory:", collection="overhead")
    docs = {p.name: chunks(p.read_text(encoding="utf-8")) for p in sorted(DOCS.glob("*.md"))}
    await index_texts(store, embedder, "bench", docs)
    settings = OrchestratorSettings(min_score=0.05, accept_min_score=0.3)
    model = TimedModel("The answer is in the first source [1].")
    tier = ChatTier(model=model, prompt=get_prompt(DEFAULT_PROMPT))
    cache_store = QdrantServerStore(":memory:", collection="overhead-cache")
    cache = VectorAnswerCache(cache_store, settings.cache_policy())
    print(
        f"{sum(len(c) for c in docs.values())} chunks of {len(docs)} documents; {args.requests} requests each"
    )
    columns = f"{'whole p50/p95':>15} {'retrieval':>9} {'cache':>7} {'model':>7} {'overhead p50/p95':>17}"
    print(f"{'configuration':34} {columns}")
    # A router over every feature, its threshold at 0 so that the model is still called: its own cost
    # only (the weights do not change what computing the features and the benefit costs).
    ones = dict.fromkeys(FEATURES, 1.0)
    router = Router("overhead", ones, 0.0, dict.fromkeys(FEATURES, 0.0), ones)
    routed = ChatTier(model=model, prompt=get_prompt(DEFAULT_PROMPT), router=router, min_benefit=0)
    configs = {
        "cascade, cache off": (None, QueryOptions(cache=False)),
        "cascade + router, cache off": (None, QueryOptions(cache=False)),
        "tier 1 forced, cache off": (None, QueryOptions(min_tier=1, cache=False)),
        "cascade, cache miss (new question)": (cache, QueryOptions()),
        "cascade, cache hit": (cache, QueryOptions()),
    }
    for name, (answer_cache, options) in configs.items():
        deps = OrchestratorDeps(
            embedder=embedder,
            store=store,
            policy=settings.answer_policy(),
            chat_tiers=[routed if "router" in name else tier],
            cache=answer_cache,
        )
        whole, retrieval, lookups, models, rest = [], [], [], [], []
        for i in range(args.requests):
            question = QUESTIONS[i % len(QUESTIONS)]
            if name.endswith("(new question)"):
                question = f"{question} (variant {i})"  # never cached before: a miss, then stored
            query = QueriesAccepted(query_id=f"q{i}", question=question, options=options)
            event = Envelope.new(query, source="bench", tenant="bench")
            TimedModel.spent_ms = 0.0
            started = time.perf_counter()
            drafted = await draft_answer(deps, event)
            total = (time.perf_counter() - started) * 1000
            assert drafted is not None  # only the fast lane (defer_models) leaves a question undrafted
            took = {s.stage: (s.finished_at - s.started_at).total_seconds() * 1000 for s in drafted.stages}
            searched, looked_up = took.get("retrieval", 0.0), took.get("cache lookup", 0.0)
            whole.append(total)
            retrieval.append(searched)
            lookups.append(looked_up)
            models.append(TimedModel.spent_ms)
            rest.append(total - searched - looked_up - TimedModel.spent_ms)
        print(
            f"{name:34} {statistics.median(whole):6.2f} /{pct(whole, 0.95):6.2f} "
            f"{statistics.median(retrieval):9.2f} {statistics.median(lookups):7.2f} "
            f"{statistics.median(models):7.2f} "
            f"{statistics.median(rest):8.2f} /{pct(rest, 0.95):6.2f}"
        )
    await store.aclose()
    await cache_store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
