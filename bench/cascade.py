"""The orchestrator's cascade on SciFact: how often tier 0 answers, and what tier 1 costs in time and tokens.

    python bench/cascade.py [--data DIR] [--claims 20] [--chat-base-url URL] [--model-alias NAME]
                            [--model smollm2|gemma3|FILE.gguf] [--prompts ID,...] [--cache FILE] [--json OUT]

1. Indexes the 5,183 SciFact abstracts (one chunk each, title + text) with all-MiniLM-L6-v2 into the
   embedded Qdrant Edge store in a temporary directory (vectors cached in `--cache` between runs).
2. Runs retrieval and tier 0 (extractive) on all 809 training claims under the default thresholds of
   `OrchestratorSettings`: the share tier 0 accepts vs escalates, why it escalates, and whether the
   accepted answers cite a document the claim's qrels name (precision); plus a threshold sweep.
3. On `--claims` claims (spread over the set): the median latency of tier 0 and of tier 1 (the real
   llama.cpp server: `--chat-base-url`, RAGBUS_CHAT_BASE_URL, or one started here on a free port with
   `--model` and stopped after), retrieval time apart, for each prompt version (`--prompts`, default
   all released). Tier 1 is asked whether the sources support or contradict the claim, as
   `ragbus eval answers` asks, and every answer it gives (accepted or not) is scored: the verdict it
   opens with against SciFact's label (accuracy), whether the cascade's checks accept it, whether it
   cites by valid `[n]` markers and how many of the documents cited are in the claim's qrels
   (precision), tokens, and latency p50/p95. Comparing local models: start each on its own port and
   point `--chat-base-url` at it, or let `--model` start it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragbus.client.answers_eval import CLAIM_TEMPLATE, Label, claim_label, parse_verdict
from ragbus.common.events import QueryOptions
from ragbus.common.ids import record_id
from ragbus.common.refdata import require_data_dir
from ragbus.orchestrator.adapters.chat_openai import OpenAIChatModel
from ragbus.orchestrator.cascade import ChatTier, non_lookup_trigger, run_cascade
from ragbus.orchestrator.citations import parse_citations
from ragbus.orchestrator.extractive import extract_answer
from ragbus.orchestrator.ports import ChatMessage, ChatModel, ChatResult
from ragbus.orchestrator.prompts import PROMPTS
from ragbus.orchestrator.retrieval import Retrieval, retrieve
from ragbus.orchestrator.settings import AnswerPolicy, OrchestratorSettings
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
    cited: list[str]  # the documents its valid markers name
    precision: float | None  # cited documents in the qrels; None: no valid marker
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    cut: bool  # stopped at max_tokens
    text: str


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
    result = await run_cascade(question, hits, options=QueryOptions(min_tier=1), policy=policy, tiers=[tier])
    a = result.cascade.attempts[-1]
    last = recorder.take()
    raw = last.text if last else ""
    parsed = parse_citations(raw, hits, policy.flagged_sources)
    valid = bool(parsed.citations) and not parsed.fell_back
    cited = list(dict.fromkeys(c.doc_id for c in parsed.citations)) if valid else []
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
        answers = [
            await answer_claim(claim, hits, tier, recorder, settings, qrels.get(str(claim["_id"]), set()))
            for claim, hits in zip(claims, hits_by_claim, strict=True)
            if hits
        ]
        out[prompt_id] = summarise_tier1(answers)
        done(prompt_id, out)
    await recorder.aclose()
    return out


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="reference data (default: RAGBUS_DATA_DIR or ../shared/data)")
    p.add_argument("--claims", "--latency-n", dest="claims", type=int, default=20, help="tier-1 sample")
    p.add_argument("--chat-base-url", default=os.environ.get("RAGBUS_CHAT_BASE_URL"))
    p.add_argument("--model-alias", help="the model id asked for (default: ORCHESTRATOR_CHAT_MODEL's)")
    p.add_argument("--model", help="no --chat-base-url: the local model to start (smollm2, gemma3, a GGUF)")
    p.add_argument("--prompts", default=",".join(PROMPTS), help="prompt ids, comma-separated")
    p.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "ragbus-bench-scifact-minilm.npy"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    prompt_ids = [x.strip() for x in args.prompts.split(",") if x.strip()]
    if unknown := [x for x in prompt_ids if x not in PROMPTS]:
        p.error(f"unknown prompt(s) {', '.join(unknown)}; known: {', '.join(PROMPTS)}")

    sci = args.data / "scifact" if args.data else require_data_dir("scifact")
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
        sample = claims[::step][: args.claims]
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
        print(f"\n== tier 1 on {len(sample)} claims (every {step}th); model {alias} at {base_url}")
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
            )
        finally:
            if server is not None:
                await server.stop(grace_s=5.0)
        await store.aclose()
    await embedder.aclose()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    asyncio.run(main())
