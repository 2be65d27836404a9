"""End-to-end latency of questions through the running stack, per stage, so the bus overhead is a number.

    ragbus up --detach && ragbus ingest docs/
    python bench/e2e.py                 # 24 questions, the default cascade, then the same with --max-tier 0
    python bench/e2e.py --rounds 3 --max-tier 0

For every answer it reads the `stages` the services recorded (guard.input, retrieval, generation,
guard.output) and the client's own send and receive times, and prints the median and p95 of:
the whole request as the client sees it, each stage, and each hop between stages (time on the bus:
publish, broker, the consumer's fetch and decode). All clocks are this machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime

from ragbus.client.client import RagbusClient
from ragbus.common.events import QueryOptions
from ragbus.common.settings import KafkaSettings

QUESTIONS = [
    "Where does a service send a message it can never process?",
    "What happens when the vector store is down?",
    "Which headers carry the reason of a dead letter?",
    "How many times is an unrecognised error retried?",
    "What does the monitor store in PostgreSQL?",
    "What is the request_summary view?",
    "Where are spans written when no OTLP endpoint is set?",
    "Which attribute carries the tenant of an event?",
    "What key should questions be published with?",
    "What does the embed service do with chunks of older versions?",
    "What does the ingest service emit for a deletion request?",
    "Which topic does the orchestrator publish drafted answers to?",
    "What happens to a question the input guard blocks?",
    "Which personal data does the guard redact?",
    "What is the injection threshold of the guard?",
    "How is a big document split?",
    "What ids do chunks get?",
    "How does the monitor avoid storing an event twice?",
    "Which format do the events use?",
    "What does ragbus trace print?",
    "Why do embed and orchestrator run in one process under ragbus up?",
    "What does the output guard check about citations?",
    "How are incompatible event changes handled?",
    "What is the content type header of a ragbus message?",
]
HOPS = (
    ("client -> guard.input", None, "guard.input"),
    ("guard.input -> retrieval", "guard.input", "retrieval"),
    ("generation -> guard.output", "generation", "guard.output"),
    ("guard.output -> client", "guard.output", None),
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, values: list[float]) -> str:
    median, p95 = statistics.median(values), pct(values, 0.95)
    return f"  {name:<30} median {median:8.1f} ms   p95 {p95:8.1f} ms   n={len(values)}"


async def run(label: str, client: RagbusClient, rounds: int, options: QueryOptions) -> None:
    totals: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)
    hops: dict[str, list[float]] = defaultdict(list)
    tiers: Counter[int] = Counter()
    statuses: Counter[str] = Counter()
    await client.ask(QUESTIONS[0], options=options)  # warm-up: caches, first fetches
    for _ in range(rounds):
        for question in QUESTIONS:
            sent = datetime.now(UTC)
            result = await client.ask(question, options=options, timeout=300)
            received = datetime.now(UTC)
            answer = result.answer
            statuses[answer.status] += 1
            if answer.cascade:
                tiers[answer.cascade.tier] += 1
            totals.append((received - sent).total_seconds() * 1000)
            by_stage = {s.stage: s for s in answer.stages}
            for s in answer.stages:
                stages[s.stage].append(s.ms)
            for name, before, after in HOPS:
                start = by_stage[before].finished_at if before else sent
                end = by_stage[after].started_at if after else received
                hops[name].append((end - start).total_seconds() * 1000)
    bus = [sum(h[i] for h in hops.values()) for i in range(len(totals))]
    print(f"\n{label}: {len(totals)} questions, tiers {dict(sorted(tiers.items()))}, status {dict(statuses)}")
    print(row("whole request (client)", totals))
    for stage in ("guard.input", "retrieval", "generation", "guard.output"):
        if stages[stage]:
            print(row(f"stage {stage}", stages[stage]))
    for name, _, _ in HOPS:
        print(row(f"bus {name}", hops[name]))
    print(row("bus, all four hops", bus))
    share = statistics.median(b / t for b, t in zip(bus, totals, strict=True))
    print(f"  bus share of the whole request: median {share:.0%}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="times to ask the whole question list")
    parser.add_argument("--max-tier", type=int, help="only this cascade setting (default: both runs)")
    parser.add_argument("--tenant", default="default")
    args = parser.parse_args()
    kafka = KafkaSettings()
    print(f"bus {kafka.bootstrap}, consumer fetch wait as configured in the running services")
    async with RagbusClient(kafka, tenant=args.tenant, source="ragbus/bench") as client:
        if args.max_tier is None:
            # cache=False: every round measures the pipeline, not the semantic cache's earlier answers.
            await run("default cascade", client, args.rounds, QueryOptions(cache=False))
            await run("tier 0 only (max_tier=0)", client, args.rounds, QueryOptions(max_tier=0, cache=False))
        else:
            only = QueryOptions(max_tier=args.max_tier, cache=False)
            await run(f"max_tier={args.max_tier}", client, args.rounds, only)


if __name__ == "__main__":
    asyncio.run(main())
