"""The orchestrator's cascade on SciFact: every tier alone, the cascade by rule and by learned router,
and the semantic cache on a replay, on the same claims.

    python bench/cascade.py [--data DIR] [--claims 200] [--offset 0] [--chat-base-url URL]
                            [--model-alias NAME] [--model smollm2|gemma3|FILE.gguf] [--prompts ID,...]
                            [--price IN,OUT] [--rows OUT.jsonl] [--router-out R.json] [--json OUT]
    python bench/cascade.py --from-rows A.jsonl [B.jsonl ...] [--holdout C.jsonl] [--router-out R.json]

1. Indexes the 5,183 SciFact abstracts (one chunk each, title + text) with all-MiniLM-L6-v2 into the
   embedded Qdrant Edge store in a temporary directory (vectors cached in `--cache` between runs).
2. Runs retrieval and tier 0 (extractive) on all 809 training claims under the default thresholds of
   `OrchestratorSettings`: the share tier 0 accepts vs escalates, why it escalates, and whether the
   accepted answers cite a document the claim's qrels name (precision); plus a threshold sweep.
3. On `--claims` claims (every k-th from `--offset`): tier 1 (the real llama.cpp server:
   `--chat-base-url`, RAGBUS_CHAT_BASE_URL, or one started here with `--model` and stopped after) is
   asked whether the sources support or contradict each claim, as `ragbus eval answers` asks, and
   every answer it gives is scored: the verdict it opens with against SciFact's label (accuracy),
   whether the cascade's checks accept it, its citations' precision against the qrels, tokens and
   latency; tier 0's answer to the same question and the router's features beside it (`--rows`
   keeps each as it comes).
4. The table, from those records: tier 0 alone, tier 1 alone (as served, and with the checks off),
   the cascade by rule, by a learned router (`ragbus.orchestrator.routing`; 5-fold cross-validation:
   each claim routed by a router fitted, and its operating point chosen, on the other claims) and by an
   oracle; accuracy, citation precision, share answered per tier, calls, tokens, cost at `--price`
   (USD per 1k prompt and completion tokens; the local tier is free, so gpt-4o-mini's by default),
   latency p50/p95. `--router-out` fits the router on every claim and writes it (JSON, with its
   figures). `--holdout` tests a router fitted on the `--from-rows` claims on other claims.
5. The semantic cache on a replay: the accepted answers stored, then every claim asked again as is,
   in lowercase, with the request or the claim reworded (the answer stands: hits), and negated, with
   a number or a name changed (it does not: a hit is false).

`--from-rows` redoes 4 and 5 from recorded answers without the model: retrieval, tier 0 and the
features are recomputed by the current code, the model's answers stand (temperature 0).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

# bench/cache.py, beside this script: the rewordings and changed variants of a claim.
from cache import changed, rewordings  # type: ignore[import-not-found]

from ragbus.client.answers_eval import CLAIM_TEMPLATE, Label, claim_label, parse_verdict
from ragbus.common.events import QueryOptions
from ragbus.common.ids import record_id
from ragbus.common.refdata import require_data_dir
from ragbus.orchestrator import routing
from ragbus.orchestrator.adapters.answer_cache import VectorAnswerCache
from ragbus.orchestrator.adapters.chat_openai import OpenAIChatModel
from ragbus.orchestrator.cascade import CascadePolicy, ChatTier, judge_extractive, run_cascade
from ragbus.orchestrator.citations import parse_citations
from ragbus.orchestrator.extractive import extract_answer
from ragbus.orchestrator.ports import CacheEntry, ChatMessage, ChatModel, ChatResult
from ragbus.orchestrator.prompts import PROMPTS
from ragbus.orchestrator.retrieval import Retrieval, normalise_question, retrieve
from ragbus.orchestrator.semantic_cache import CachePolicy
from ragbus.orchestrator.settings import AnswerPolicy, OrchestratorSettings
from ragbus.orchestrator.text import non_lookup_trigger
from ragbus.vectors.factory import open_embedder, open_vector_store
from ragbus.vectors.ports import ChunkPoint, Embedder, Hit, VectorStore
from ragbus.vectors.settings import EmbedderSettings, VectorStoreSettings

TENANT = "scifact"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_qrels(path: Path) -> dict[str, set[str]]:
    rel: dict[str, set[str]] = {}
    for line in path.read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            rel.setdefault(qid, set()).add(doc)
    return rel


async def index_corpus(
    docs: list[dict[str, Any]], embedder: Embedder, store: VectorStore, cache: Path | None
) -> float:
    """Index every abstract; returns the seconds spent embedding (0 when the vectors were cached)."""
    texts = [f"{d['title']}. {d['text']}" for d in docs]
    took = 0.0
    cached = np.load(cache) if cache and cache.is_file() else None  # noqa: ASYNC240 - a script, once
    if cached is not None and cached.shape[0] == len(texts):
        vectors = cached.tolist()
    else:
        start = time.perf_counter()
        vectors = await embedder.embed_documents(texts)
        took = time.perf_counter() - start
        if cache:
            np.save(cache, np.asarray(vectors, dtype=np.float32))
    await store.ensure(embedder.dim)
    points = [
        ChunkPoint(
            id=record_id(TENANT, d["_id"], "0"),
            vector=v,
            tenant=TENANT,
            doc_id=d["_id"],
            version="v1",
            index=0,
            text=d["text"],
            title=d["title"],
        )
        for d, v in zip(docs, vectors, strict=True)
    ]
    await store.upsert(points)
    return took


@dataclass
class ClaimRun:
    qid: str
    text: str
    retrieval_ms: float
    top_doc: str | None
    top_score: float
    retrieved: list[str]
    accepted: bool
    reason: str
    coverage: float
    has_answer: bool
    trigger: str | None
    cited: str | None  # the doc of the answer's first citation


def reason_kinds(reason: str) -> list[str]:
    kinds = []
    for key, label in (
        ("nothing relevant", "nothing retrieved above min_score"),
        ("no retrieved sentence", "no sentence shares a word"),
        ("needs more than quoting", "not a lookup question"),
        ("best retrieval score", "best hit under accept_min_score"),
        ("content words", "coverage under accept_min_coverage"),
    ):
        if key in reason:
            kinds.append(label)
    return kinds


async def timed_retrieve(
    question: str, embedder: Embedder, store: VectorStore, policy: AnswerPolicy
) -> tuple[Retrieval, float]:
    """Retrieval for one claim as the orchestrator does it, and how long it took (ms)."""
    start = time.perf_counter()
    r = await retrieve(
        embedder, store, tenant=TENANT, question=question, top_k=policy.top_k, min_score=policy.min_score
    )
    return r, (time.perf_counter() - start) * 1000


async def run_tier0(
    claims: list[dict[str, Any]], embedder: Embedder, store: VectorStore, settings: OrchestratorSettings
) -> list[ClaimRun]:
    policy = settings.answer_policy()
    runs = []
    for claim in claims:
        r, retrieval_ms = await timed_retrieve(claim["text"], embedder, store, policy)
        result = await run_cascade(
            claim["text"], r.hits, options=QueryOptions(max_tier=0), policy=policy.cascade, tiers=[]
        )
        ex = extract_answer(claim["text"], r.hits, max_sentences=policy.cascade.max_sentences)
        attempt = result.cascade.attempts[0] if result.cascade.attempts else None
        runs.append(
            ClaimRun(
                qid=str(claim["_id"]),
                text=claim["text"],
                retrieval_ms=retrieval_ms,
                top_doc=r.hits[0].doc_id if r.hits else None,
                top_score=r.top_score,
                retrieved=[h.doc_id for h in r.hits],
                accepted=bool(attempt and attempt.accepted),
                reason=attempt.reason if attempt else result.cascade.reason,
                coverage=ex.coverage,
                has_answer=bool(ex.text),
                trigger=non_lookup_trigger(claim["text"]),
                cited=result.citations[0].doc_id if result.citations else None,
            )
        )
    return runs


def pct(part: int, whole: int) -> str:
    return f"{part}/{whole} = {100 * part / whole:.1f}%" if whole else "n/a"


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Recorder:
    """A chat model that keeps its last completion: the cascade keeps no text of an answer it rejects,
    and tier 1 is scored on every answer it gives."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.last: ChatResult | None = None

    @property
    def name(self) -> str:
        return self.model.name

    def take(self) -> ChatResult | None:
        """The last completion, forgotten here."""
        last, self.last = self.last, None
        return last

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> ChatResult:
        self.last = await self.model.complete(messages, max_tokens=max_tokens, temperature=temperature)
        return self.last

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], Awaitable[None]],
    ) -> ChatResult:
        self.last = await self.model.stream(
            messages, max_tokens=max_tokens, temperature=temperature, on_text=on_text
        )
        return self.last

    async def ping(self) -> None:
        await self.model.ping()

    async def aclose(self) -> None:
        await self.model.aclose()


@dataclass
class Tier1Answer:
    qid: str
    label: Label | None
    verdict: Label | None
    accepted: bool
    reason: str
    valid_markers: bool  # at least one `[n]` naming a source given (else the cascade cites them all)
    cited: list[str]  # the documents it cites as served (all the sources when its markers name none)
    precision: float | None  # cited documents in the qrels; None: nothing cited
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    cut: bool  # stopped at max_tokens
    text: str
    features: dict[str, float]  # what a router knows before the call (ragbus.orchestrator.routing)
    tier0: dict[str, Any]  # tier 0 alone on the same question: accepted, verdict, cited, precision


def tier0_alone(question: str, hits: list[Hit], policy: CascadePolicy, gold: set[str]) -> dict[str, Any]:
    """What tier 0 alone answers to the question: its answer, whether its rule accepts it, the verdict
    its quotes happen to open with (they state none: usually no verdict) and its citations' precision."""
    ex = extract_answer(question, hits, max_sentences=policy.max_sentences, flagged=policy.flagged_sources)
    accepted, _ = judge_extractive(question, ex, policy)
    cited = list(dict.fromkeys(c.doc_id for c in ex.citations))
    return {
        "accepted": accepted,
        "verdict": parse_verdict(ex.text) if ex.text else "NOINFO",
        "cited": cited,
        "precision": sum(d in gold for d in cited) / len(cited) if cited else None,
        "features": routing.features(question, hits, ex),
    }


async def answer_claim(
    claim: dict[str, Any],
    hits: list[Hit],
    tier: ChatTier,
    recorder: Recorder,
    settings: OrchestratorSettings,
    gold: set[str],
) -> Tier1Answer:
    """Tier 1 alone on one claim, asked for a verdict, scored whatever the cascade makes of it."""
    policy = settings.answer_policy().cascade
    recorder.take()
    question = CLAIM_TEMPLATE.format(text=claim["text"])
    zero = tier0_alone(question, hits, policy, gold)
    result = await run_cascade(question, hits, options=QueryOptions(min_tier=1), policy=policy, tiers=[tier])
    a = result.cascade.attempts[-1]
    last = recorder.take()
    raw = last.text if last else ""
    parsed = parse_citations(raw, hits, policy.flagged_sources)
    valid = bool(parsed.citations) and not parsed.fell_back
    # As served: an answer whose markers name no source cites every source it was given.
    cited = list(dict.fromkeys(c.doc_id for c in parsed.citations))
    return Tier1Answer(
        qid=str(claim["_id"]),
        label=claim_label(claim.get("evidence") or []),
        verdict=parse_verdict(parsed.text),
        accepted=a.accepted,
        reason=a.reason,
        valid_markers=valid,
        cited=cited,
        precision=sum(d in gold for d in cited) / len(cited) if cited else None,
        latency_ms=a.latency_ms,
        prompt_tokens=a.prompt_tokens,
        completion_tokens=a.completion_tokens,
        cut=bool(last and last.finish_reason == "length"),
        text=raw,
        features=zero.pop("features"),
        tier0=zero,
    )


def summarise_tier1(answers: list[Tier1Answer]) -> dict[str, Any]:
    n = len(answers)
    lat = [a.latency_ms for a in answers]
    accepted = [a for a in answers if a.accepted]
    precisions = [a.precision for a in answers if a.precision is not None]
    return {
        "answers": n,
        "accuracy": sum(a.verdict == a.label for a in answers) / n if n else float("nan"),
        "accepted_share": len(accepted) / n if n else float("nan"),
        "accuracy_of_accepted": sum(a.verdict == a.label for a in accepted) / len(accepted)
        if accepted
        else float("nan"),
        "valid_citation_rate": sum(a.valid_markers for a in answers) / n if n else float("nan"),
        "citation_precision": statistics.fmean(precisions) if precisions else float("nan"),
        "verdicts": dict(Counter(a.verdict or "none" for a in answers)),
        "latency_ms_median": med(lat),
        "latency_ms_p95": float(np.percentile(lat, 95)) if lat else float("nan"),
        "prompt_tokens_median": med([a.prompt_tokens for a in answers]),
        "completion_tokens_median": med([a.completion_tokens for a in answers]),
        "cut_at_max_tokens": sum(a.cut for a in answers),
        "rows": [vars(a) for a in answers],
    }


async def run_latency(
    claims: list[dict[str, Any]],
    embedder: Embedder,
    store: VectorStore,
    settings: OrchestratorSettings,
    base_url: str,
    qrels: dict[str, set[str]],
    *,
    model_alias: str,
    prompt_ids: Sequence[str],
    done: Callable[[str, dict[str, Any]], None] = lambda _id, _figures: None,
    rows: Path | None = None,
) -> dict[str, Any]:
    """Tier 0 and tier 1 on `claims`; `done` is called with each prompt's figures as soon as they are
    in (a slow model takes minutes per prompt, and a run cut short keeps what it measured)."""
    policy = settings.answer_policy()
    recorder = Recorder(OpenAIChatModel(base_url=base_url, model=model_alias, timeout_s=300))
    await recorder.ping()
    out: dict[str, Any] = {}
    hits_by_claim = []
    retrieval_ms = []
    for claim in claims:
        r, took_ms = await timed_retrieve(claim["text"], embedder, store, policy)
        retrieval_ms.append(took_ms)
        hits_by_claim.append(r.hits)
    out["retrieval_ms_median"] = med(retrieval_ms)

    tier0 = []
    for claim, hits in zip(claims, hits_by_claim, strict=True):
        result = await run_cascade(
            claim["text"], hits, options=QueryOptions(max_tier=0), policy=policy.cascade, tiers=[]
        )
        if result.cascade.attempts:
            tier0.append(result.cascade.attempts[0].latency_ms)
    out["tier0_ms_median"] = med(tier0)

    for prompt_id in prompt_ids:
        prompt = PROMPTS[prompt_id]
        tier = ChatTier(
            model=recorder,
            prompt=prompt,
            max_tokens=settings.chat_max_tokens,
            temperature=settings.chat_temperature,
            max_source_chars=settings.chat_max_source_chars,
        )
        await recorder.complete(
            prompt.render("warm-up", hits_by_claim[0], max_source_chars=500), max_tokens=4, temperature=0
        )
        answers = []
        for claim, hits in zip(claims, hits_by_claim, strict=True):
            if not hits:
                continue
            gold = qrels.get(str(claim["_id"]), set())
            answers.append(await answer_claim(claim, hits, tier, recorder, settings, gold))
            if rows:  # one line per answer as it comes: a long run cut short keeps what it scored
                with rows.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"prompt": prompt_id, **vars(answers[-1])}) + "\n")
        out[prompt_id] = summarise_tier1(answers)
        done(prompt_id, out)
    await recorder.aclose()
    return out


# --- the table: every tier alone, the cascade by rule and by router, on the same scored answers ------


@dataclass(frozen=True)
class Config:
    """How a configuration answers one question: the tier whose answer is kept, and which tiers ran."""

    name: str
    choose: Callable[[dict[str, Any], int], tuple[int, bool]]  # (row, index) -> (tier kept, tier 1 called)


def _answer(row: dict[str, Any], tier: int) -> tuple[Label | None, float | None]:
    if tier == 0:
        return row["tier0"]["verdict"], row["tier0"]["precision"]
    return row["verdict"], row["precision"]


def _cascade(row: dict[str, Any], call: bool) -> tuple[int, bool]:
    """The cascade's choice: tier 0 if its rule accepts; else tier 1 if called and accepted; else the
    fallback, tier 0's quotes (run_cascade keeps the highest usable draft)."""
    if row["tier0"]["accepted"]:
        return 0, False
    if call and row["accepted"]:
        return 1, True
    return 0, call


def useful(row: dict[str, Any]) -> bool:
    """What calling tier 1 is for: its answer is accepted by the checks and right (the oracle's rule)."""
    return bool(row["accepted"] and row["verdict"] == row["label"])


def passes(row: dict[str, Any]) -> bool:
    """What the router is fitted to predict: tier 1's answer passes the checks. A rejected answer is
    thrown away (the cascade keeps tier 0's), so the call was wasted; whether a small model's verdict is
    right is much harder to tell beforehand (fitted on `useful`, the router ranks worse: AUC 0.67 vs
    0.71 out of fold on 200 claims)."""
    return bool(row["accepted"])


def fit_router(rows: Sequence[dict[str, Any]], name: str) -> tuple[routing.Router, float]:
    """A router fitted on `rows`, and its operating point chosen on them."""
    router = routing.fit([r["features"] for r in rows], [passes(r) for r in rows], name=name)
    return router, operating_point(rows, [router.benefit(r["features"]) for r in rows])


def score(
    rows: Sequence[dict[str, Any]], config: Config, prices: tuple[float, float], tier0_ms: float
) -> dict[str, Any]:
    correct = 0
    precisions: list[float] = []
    kept: Counter[int] = Counter()
    tokens = cost = 0.0
    calls = 0
    latency = []
    for i, row in enumerate(rows):
        tier, called = config.choose(row, i)
        kept[tier] += 1
        calls += called
        verdict, precision = _answer(row, tier)
        correct += verdict == row["label"]
        if precision is not None:
            precisions.append(precision)
        ms = tier0_ms
        if called:
            tokens += row["prompt_tokens"] + row["completion_tokens"]
            cost += (row["prompt_tokens"] * prices[0] + row["completion_tokens"] * prices[1]) / 1000
            ms += row["latency_ms"]
        latency.append(ms)
    n = len(rows)
    return {
        "config": config.name,
        "accuracy": correct / n,
        "citation_precision": statistics.fmean(precisions) if precisions else float("nan"),
        "tier0_share": kept[0] / n,
        "tier1_share": kept[1] / n,
        "calls": calls / n,
        "tokens": tokens / n,
        "cost_usd": cost,
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p95": float(np.percentile(latency, 95)),
    }


def folds(n: int, k: int, seed: int = 7) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[j::k] for j in range(k)]


def operating_point(rows: Sequence[dict[str, Any]], benefit: Sequence[float], keep: float = 0.95) -> float:
    """The highest threshold whose cascade keeps `keep` of the rule cascade's accuracy on `rows` (which
    calls tier 1 for every question tier 0 declines): the calls it saves are the point. 0: call always."""

    def right(call: Callable[[int], bool]) -> int:
        return sum(_answer(r, _cascade(r, call(i))[0])[0] == r["label"] for i, r in enumerate(rows))

    best = right(lambda i: True)
    for t in sorted(set(benefit), reverse=True):
        if right(functools.partial(lambda i, t: benefit[i] >= t, t=t)) >= keep * best:
            return float(t)
    return 0.0


def cross_validate(
    rows: Sequence[dict[str, Any]], k: int = 5
) -> tuple[list[float], list[float], list[float]]:
    """Out-of-fold benefit of every row (a router fitted on the other folds), and the operating point
    each fold's router chose on its own training rows, given to the fold's rows."""
    benefit = [0.0] * len(rows)
    threshold = [0.0] * len(rows)
    for fold in folds(len(rows), k):
        held = set(fold)
        router, t = fit_router([r for i, r in enumerate(rows) if i not in held], "cv")
        for i in fold:
            benefit[i] = router.benefit(rows[i]["features"])
            threshold[i] = t
    return benefit, threshold, [float(useful(r)) for r in rows]


def auc(scores: Sequence[float], labels: Sequence[float]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


def cascade_table(
    rows: Sequence[dict[str, Any]],
    prices: tuple[float, float],
    tier0_ms: float,
    trained: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every configuration on the same questions. The router is fitted on `trained` when given (a
    held-out test), else out of fold (5-fold cross-validation on `rows`)."""
    if trained:
        router, t = fit_router(trained, "held-out test")
        benefit = [router.benefit(r["features"]) for r in rows]
        threshold = [t] * len(rows)
    else:
        benefit, threshold, _ = cross_validate(rows)
    labels = [float(useful(r)) for r in rows]
    how = "fitted on other claims" if trained else "out of fold"
    configs = [
        Config("tier 0 alone", lambda r, i: (0, False)),
        # Acceptance checks off: every answer the model gave (a diagnostic: what the checks cost).
        Config("tier 1 alone, checks off", lambda r, i: (1, True)),
        # As `min_tier=1` serves it: an answer the checks reject falls back to tier 0's quotes.
        Config("tier 1 alone, as served", lambda r, i: (1 if r["accepted"] else 0, True)),
        Config("cascade, rule (tier 1 when tier 0 declines)", lambda r, i: _cascade(r, True)),
        Config(f"cascade, learned router ({how})", lambda r, i: _cascade(r, benefit[i] >= threshold[i])),
        Config("cascade, oracle router (upper bound)", lambda r, i: _cascade(r, useful(r))),
    ]
    table = [score(rows, c, prices, tier0_ms) for c in configs]
    return {
        "rows": len(rows),
        "router": how,
        "router_auc": auc(benefit, labels),
        "router_auc_passes": auc(benefit, [float(passes(r)) for r in rows]),
        "useful_share": statistics.fmean(labels),
        "table": table,
    }


def print_table(result: dict[str, Any], prices: tuple[float, float]) -> None:
    table = result["table"]
    best = table[2]  # the best single tier as served: tier 1 (`vs best` columns)
    print(
        f"\n== the cascade on {result['rows']} claims (tier 1 priced at ${prices[0]}/${prices[1]} per 1k "
        f"prompt/completion tokens); router {result['router']}: AUC {result['router_auc']:.2f} for "
        f"'accepted and right' ({result['useful_share']:.0%} of tier 1's answers), "
        f"{result['router_auc_passes']:.2f} for 'accepted'"
    )
    print(
        f"{'configuration':50} {'acc':>5} {'vs best':>7} {'cit.prec':>8} {'t0':>5} {'t1':>5} "
        f"{'calls':>5} {'tok/q':>6} {'cost':>9} {'vs best':>7} {'p50 ms':>7} {'p95 ms':>7}"
    )
    for t in table:
        rel_acc = t["accuracy"] / best["accuracy"] if best["accuracy"] else float("nan")
        rel_cost = t["cost_usd"] / best["cost_usd"] if best["cost_usd"] else float("nan")
        print(
            f"{t['config']:50} {t['accuracy']:5.1%} {rel_acc:7.0%} {t['citation_precision']:8.2f} "
            f"{t['tier0_share']:5.0%} {t['tier1_share']:5.0%} {t['calls']:5.0%} {t['tokens']:6.0f} "
            f"{t['cost_usd']:9.5f} {rel_cost:7.0%} {t['latency_ms_p50']:7.0f} {t['latency_ms_p95']:7.0f}"
        )


# --- the cache on a replay: the same claims asked again, reworded, and changed ----------------------

REWORDED_TEMPLATE = "Is this claim supported or contradicted by the sources? {text}"


def replay_variants(claim: str, others: list[str], rng: random.Random) -> dict[str, str]:
    """The question asked again as users do: the same, in lowercase, with the claim reworded or the
    request worded otherwise (the answer stands); the claim negated, a number or a name changed (it
    does not: a hit there is a false hit)."""
    asked = CLAIM_TEMPLATE.format(text=claim)
    found = {
        "repeated": asked,
        "lowercase": asked.lower(),
        "request reworded": REWORDED_TEMPLATE.format(text=claim),
    }
    found |= {f"claim {k}": CLAIM_TEMPLATE.format(text=v) for k, v in rewordings(claim).items()}
    for kind, text in changed(claim, others, rng).items():
        if kind in ("negated", "number", "name"):
            found[kind] = CLAIM_TEMPLATE.format(text=text)
    return found


CHANGED = ("negated", "number", "name")


async def replay_cache(
    rows: Sequence[dict[str, Any]], claims: dict[str, str], embedder: Embedder, store: VectorStore
) -> dict[str, Any]:
    """Store the answers the rule cascade accepts (`usecases` stores those; an answer whose markers name
    no source cites them all, so each has citations), then ask every variant of every claim; a hit
    serves an answer without retrieval or a model call."""
    cache = VectorAnswerCache(store, CachePolicy())
    now = datetime.now(UTC)
    texts = [CLAIM_TEMPLATE.format(text=claims[r["qid"]]) for r in rows]
    vectors = [await embedder.embed_query(normalise_question(t)) for t in texts]
    stored: set[str] = set()
    for r, text, vector in zip(rows, texts, vectors, strict=True):
        tier, _ = _cascade(r, True)
        if r["tier0"]["accepted"] if tier == 0 else r["accepted"]:
            entry = CacheEntry(
                query_id=r["qid"], question=text, answer="...", citations=[], retrieved=[], tier=tier,
                reason="bench", cached_at=now,
            )  # fmt: skip
            await cache.store(TENANT, "replay", vector, entry)
            stored.add(r["qid"])
    rng = random.Random(5)
    pool = list(claims.values())
    variants = [
        (k, v, r["qid"]) for r in rows for k, v in replay_variants(claims[r["qid"]], pool, rng).items()
    ]
    embedded = [await embedder.embed_query(normalise_question(v)) for _, v, _ in variants]
    asked: Counter[str] = Counter()
    cached: Counter[str] = Counter()  # asked of a claim whose answer is in the cache
    hits: Counter[str] = Counter()
    false: Counter[str] = Counter()
    saved_tokens = 0
    by_qid = {r["qid"]: r for r in rows}
    for (kind, text, qid), vector in zip(variants, embedded, strict=True):
        asked[kind] += 1
        cached[kind] += qid in stored
        found = await cache.lookup(TENANT, "replay", text, vector)
        if found is None:
            continue
        if kind in CHANGED or found.entry.query_id != qid:
            false[kind] += 1
        else:
            hits[kind] += 1
            r = by_qid[qid]
            if _cascade(r, True)[1]:
                saved_tokens += r["prompt_tokens"] + r["completion_tokens"]
    keep = [k for k in asked if k not in CHANGED]
    return {
        "stored": len(stored),
        "asked": dict(asked),
        "cached": dict(cached),
        "hits": dict(hits),
        "false_hits": dict(false),
        "hit_rate_rewordings": sum(hits[k] for k in keep) / max(sum(asked[k] for k in keep), 1),
        "hit_rate_rewordings_of_cached": sum(hits[k] for k in keep) / max(sum(cached[k] for k in keep), 1),
        "saved_tokens": saved_tokens,
    }


def print_replay(replay: dict[str, Any]) -> None:
    print(
        f"\n== the semantic cache on a replay: {replay['stored']} answers stored (the accepted ones); "
        f"hit rate on the rewordings {replay['hit_rate_rewordings']:.0%} of all, "
        f"{replay['hit_rate_rewordings_of_cached']:.0%} of those whose answer is cached; "
        f"{replay['saved_tokens']} tier-1 tokens not spent again"
    )
    for kind, n in replay["asked"].items():
        served = replay["hits"].get(kind, 0)
        wrong = replay["false_hits"].get(kind, 0)
        what = "false hits (must be 0)" if kind in CHANGED else "hits"
        shown = wrong if kind in CHANGED else served
        extra = f", {wrong} of another claim (false)" if wrong and kind not in CHANGED else ""
        print(f"  {kind:26} {n:4d} asked ({replay['cached'].get(kind, 0)} cached), {what}: {shown}{extra}")


async def refresh(
    rows: Sequence[dict[str, Any]],
    claims: dict[str, str],
    embedder: Embedder,
    store: VectorStore,
    settings: OrchestratorSettings,
    qrels: dict[str, set[str]],
) -> None:
    """Recompute what does not need the model, by the current code: the retrieval, tier 0's answer and
    the router's features of each recorded answer (the model's answer to the same sources stands:
    temperature 0)."""
    policy = settings.answer_policy()
    for row in rows:
        claim = claims[row["qid"]]
        r, _ = await timed_retrieve(claim, embedder, store, policy)
        question = CLAIM_TEMPLATE.format(text=claim)
        zero = tier0_alone(question, r.hits, policy.cascade, qrels.get(row["qid"], set()))
        row["features"] = zero.pop("features")
        row["tier0"] = zero


async def report(
    rows: Sequence[dict[str, Any]],
    prices: tuple[float, float],
    tier0_ms: float,
    router_out: Path | None,
    name: str,
    replay: tuple[dict[str, str], Embedder, VectorStore] | None = None,
    holdout: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Print the cascade table; with `router_out`, fit the router on every answer and write it there,
    with the operating point chosen on them and the out-of-fold figures it was measured by."""
    rows = [r for r in rows if r.get("label")]  # mixed-evidence claims have no single verdict
    result = cascade_table(rows, prices, tier0_ms)
    print_table(result, prices)
    if holdout:
        test = [r for r in holdout if r.get("label")]
        result["holdout"] = cascade_table(test, prices, tier0_ms, trained=rows)
        print_table(result["holdout"], prices)
    if router_out:
        router, t = fit_router(rows, name)
        measured: dict[str, Any] = {
            "claims": len(rows),
            "target": "tier 1's answer passes the cascade's checks",
            # Out of fold, for what it is fitted on and for what calling is for.
            "router_auc_out_of_fold": round(result["router_auc_passes"], 3),
            "router_auc_out_of_fold_accepted_and_right": round(result["router_auc"], 3),
        }
        for t_row in result["table"]:
            measured[t_row["config"]] = {k: v for k, v in t_row.items() if k != "config"}
        router = dataclasses.replace(router, min_benefit=round(t, 4), measured=measured)
        router_out.write_text(router.to_json(), encoding="utf-8")  # noqa: ASYNC240 - once, at the end
        print(f"router written to {router_out} (operating point: benefit >= {t:.3f})")
    if replay:
        result["cache_replay"] = await replay_cache(rows, *replay)
        print_replay(result["cache_replay"])
    return result


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="reference data (default: RAGBUS_DATA_DIR or ../shared/data)")
    p.add_argument("--claims", "--latency-n", dest="claims", type=int, default=20, help="tier-1 sample")
    p.add_argument(
        "--offset", type=int, default=0, help="start the tier-1 sample here (another sample for more data)"
    )
    p.add_argument("--chat-base-url", default=os.environ.get("RAGBUS_CHAT_BASE_URL"))
    p.add_argument("--model-alias", help="the model id asked for (default: ORCHESTRATOR_CHAT_MODEL's)")
    p.add_argument("--model", help="no --chat-base-url: the local model to start (smollm2, gemma3, a GGUF)")
    p.add_argument("--prompts", default=",".join(PROMPTS), help="prompt ids, comma-separated")
    p.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "ragbus-bench-scifact-minilm.npy"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--rows", type=Path, help="append every scored tier-1 answer here (JSONL)")
    p.add_argument(
        "--from-rows",
        type=Path,
        nargs="+",
        help="no model run: the table and router from --rows files of past runs (features and tier 0 "
        "recomputed by the current code; the model's answers as recorded)",
    )
    p.add_argument(
        "--holdout",
        type=Path,
        nargs="*",
        default=[],
        help="--from-rows: test a router fitted on those on these",
    )
    p.add_argument("--router-out", type=Path, help="write the router fitted on all the answers here (JSON)")
    p.add_argument("--router-name", help="the name the router records (what it was trained for)")
    p.add_argument(
        "--price",
        default="0.00015,0.0006",
        help="tier 1's USD per 1k prompt,completion tokens in the table (default: gpt-4o-mini's)",
    )
    args = p.parse_args()
    prices = (float(args.price.split(",")[0]), float(args.price.split(",")[1]))
    sci = args.data / "scifact" if args.data else require_data_dir("scifact")
    if args.from_rows:
        rows = [r for path in args.from_rows for r in read_jsonl(path)]
        held = [r for path in args.holdout for r in read_jsonl(path)]
        claims = read_jsonl(sci / "train-claims.jsonl")
        texts = {str(c["_id"]): c["text"] for c in claims}
        embedder = open_embedder(EmbedderSettings())
        with tempfile.TemporaryDirectory() as tmp:
            store = open_vector_store(VectorStoreSettings(url=None, path=Path(tmp) / "shard"))
            await index_corpus(read_jsonl(sci / "corpus.jsonl"), embedder, store, args.cache)
            qrels = read_qrels(sci / "train-qrels.tsv")
            await refresh([*rows, *held], texts, embedder, store, OrchestratorSettings(), qrels)
            answers = open_vector_store(VectorStoreSettings(url=None, path=Path(tmp) / "answers"))
            name = args.router_name or args.from_rows[0].stem
            await report(rows, prices, 1.0, args.router_out, name, (texts, embedder, answers), held)
            await answers.aclose()
            await store.aclose()
        await embedder.aclose()
        return
    prompt_ids = [x.strip() for x in args.prompts.split(",") if x.strip()]
    if unknown := [x for x in prompt_ids if x not in PROMPTS]:
        p.error(f"unknown prompt(s) {', '.join(unknown)}; known: {', '.join(PROMPTS)}")

    docs = read_jsonl(sci / "corpus.jsonl")
    claims = read_jsonl(sci / "train-claims.jsonl")
    qrels = read_qrels(sci / "train-qrels.tsv")
    settings = OrchestratorSettings()
    print(
        f"SciFact: {len(docs)} abstracts, {len(claims)} training claims; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"defaults: top_k={settings.top_k} min_score={settings.min_score} "
        f"accept_min_score={settings.accept_min_score} accept_min_coverage={settings.accept_min_coverage}"
    )

    embedder = open_embedder(EmbedderSettings())
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_vector_store(VectorStoreSettings(url=None, path=Path(tmp) / "shard"))
        took = await index_corpus(docs, embedder, store, args.cache)
        if took:
            print(f"embedded {len(docs)} abstracts in {took:.0f} s ({len(docs) / took:.0f}/s)")

        runs = await run_tier0(claims, embedder, store, settings)
        n = len(runs)
        accepted = [r for r in runs if r.accepted]
        recall5 = sum(bool(qrels.get(r.qid, set()) & set(r.retrieved)) for r in runs)
        top1 = sum(r.top_doc in qrels.get(r.qid, set()) for r in runs)
        precise = sum(r.cited in qrels.get(r.qid, set()) for r in accepted)
        kinds = Counter(k for r in runs if not r.accepted for k in reason_kinds(r.reason))
        print("\n== retrieval (MiniLM, exact search) on all training claims")
        print(
            f"relevant doc at rank 1: {pct(top1, n)}; among the kept top {settings.top_k}: {pct(recall5, n)}"
        )
        print(f"retrieval median {med([r.retrieval_ms for r in runs]):.1f} ms (embed the claim + search)")
        print("\n== tier 0 under the defaults")
        print(f"accepted: {pct(len(accepted), n)}; escalated: {pct(n - len(accepted), n)}")
        print(f"accepted answers citing a relevant doc first: {pct(precise, len(accepted))}")
        print("why escalated (a claim may have several reasons):")
        for kind, count in kinds.most_common():
            print(f"  {kind}: {pct(count, n - len(accepted))}")
        figures["tier0"] = {
            "claims": n,
            "accepted": len(accepted),
            "precision": precise / max(len(accepted), 1),
            "recall_at_k": recall5 / n,
            "top1": top1 / n,
            "escalation_reasons": dict(kinds),
        }

        print("\n== threshold sweep (accept share / precision of accepted)")
        sweep = {}
        for score in (0.4, 0.5, 0.6):
            row = []
            for cov in (0.4, 0.5, 0.6, 0.7):
                ok = [
                    r
                    for r in runs
                    if r.has_answer and not r.trigger and r.top_score >= score and r.coverage >= cov
                ]
                good = sum(r.cited in qrels.get(r.qid, set()) for r in ok)
                row.append(f"cov>={cov}: {100 * len(ok) / n:4.1f}% / {100 * good / max(len(ok), 1):4.1f}%")
                sweep[f"{score}/{cov}"] = (len(ok) / n, good / max(len(ok), 1))
            print(f"  score>={score}: " + " | ".join(row))
        figures["sweep"] = sweep

        step = max(1, len(claims) // args.claims)
        sample = claims[args.offset :: step][: args.claims]
        server = None
        base_url = args.chat_base_url
        alias = args.model_alias or settings.chat_model
        if not base_url:
            from ragbus.stack.model import model_process
            from ragbus.stack.model_server import DEFAULT_MODEL, MODELS
            from ragbus.stack.process import free_port
            from ragbus.stack.settings import ModelServerSettings

            local = args.model or DEFAULT_MODEL
            server_settings = (
                ModelServerSettings(name=local) if local in MODELS else ModelServerSettings(gguf=Path(local))
            )
            server = model_process(server_settings, port=free_port(), home=Path(tmp) / "stack")
            base_url = (await server.start(detach=False)).address
        labels = Counter(claim_label(c.get("evidence") or []) or "mixed" for c in sample)
        print(
            f"\n== tier 1 on {len(sample)} claims (every {step}th from #{args.offset}); "
            f"model {alias} at {base_url}"
        )
        print(
            f"gold labels {dict(labels)}, so always 'supported' scores {labels['SUPPORT'] / len(sample):.0%}"
        )

        def done(prompt_id: str, lat: dict[str, Any]) -> None:
            if prompt_id == prompt_ids[0]:
                print(
                    f"retrieval: {lat['retrieval_ms_median']:.1f} ms; "
                    f"tier 0 (extractive): {lat['tier0_ms_median']:.2f} ms (medians)"
                )
            t = lat[prompt_id]
            print(
                f"{prompt_id}: accuracy {t['accuracy']:.0%} (accepted: {t['accuracy_of_accepted']:.0%}), "
                f"accepted {t['accepted_share']:.0%}, valid [n] {t['valid_citation_rate']:.0%}, "
                f"citation precision {t['citation_precision']:.2f}; {t['latency_ms_median']:.0f} ms p50, "
                f"{t['latency_ms_p95']:.0f} p95; tokens: prompt {t['prompt_tokens_median']:.0f}, completion "
                f"{t['completion_tokens_median']:.0f} (median), {t['cut_at_max_tokens']} cut at max_tokens; "
                f"verdicts {t['verdicts']}",
                flush=True,
            )
            figures["latency"] = lat
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2, default=str))

        try:
            figures["latency"] = await run_latency(
                sample,
                embedder,
                store,
                settings,
                base_url,
                qrels,
                model_alias=alias,
                prompt_ids=prompt_ids,
                done=done,
                rows=args.rows,
            )
        finally:
            if server is not None:
                await server.stop(grace_s=5.0)
        first = figures["latency"][prompt_ids[0]]["rows"]
        texts = {str(c["_id"]): c["text"] for c in claims}
        figures["cascade"] = await report(
            first,
            prices,
            figures["latency"]["tier0_ms_median"],
            args.router_out,
            f"{alias}-{prompt_ids[0]}",
            (texts, embedder, open_vector_store(VectorStoreSettings(url=None, path=Path(tmp) / "answers"))),
        )
        await store.aclose()
    await embedder.aclose()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    asyncio.run(main())
