"""The semantic cache on SciFact's claims: hits on rewordings, and false hits on claims that need another
answer, with the safety rules (ragbus.orchestrator.semantic_cache) and without them (similarity alone,
as a plain semantic cache decides), side by side.

    python bench/cache.py [--data DIR] [--limit N] [--min-similarity 0.9]

Every training claim (809) is cached as answered, in the real cache adapter over an embedded
Qdrant Edge shard in a temporary directory, with all-MiniLM-L6-v2 embeddings. Then variants are looked
up, each against all entries:

- rewordings that keep the answer: lowercase without the full stop, a question ("Is it true that ...?"),
  and reordered around a comma where there is one;
- variants that change it: a negation inserted after the first auxiliary ("... is not ..."), a number
  changed (claims with a number), a name swapped for another claim's (claims with a capitalised name or
  an acronym), a content word swapped for another claim's (in lowercase, where capitals cannot help),
  and the first and last content words swapped (the relation reversed).

A hit on a rewording must return its own claim's entry; a hit on a changed variant is false unless the
entry is that very question (SciFact holds a few claims beside their negations: the "right twin").
Latency: median / p95 of a lookup (embedding excluded), and of a store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ragbus.common.refdata import require_data_dir
from ragbus.orchestrator.adapters.answer_cache import VectorAnswerCache
from ragbus.orchestrator.ports import CacheEntry
from ragbus.orchestrator.semantic_cache import CachePolicy, normalise, signature
from ragbus.vectors.adapters.qdrant_edge import EdgeVectorStore
from ragbus.vectors.factory import open_embedder

_AUX = re.compile(r"\b(is|are|was|were|does|do|did|can|could|has|have|had|will|may|might|should)\b")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
_NAME = re.compile(r"\b(?:[A-Z][a-z]+|[A-Z0-9]{2,}[a-z]?)\b")


def claims(data: Path) -> list[str]:
    """SciFact's training claims (the labelled set the reference data holds), in order, once each."""
    path = data / "scifact" / "train-claims.jsonl"
    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8") if line.strip()]
    return list(dict.fromkeys(texts))


KEEP = ("lowercase", "question", "reordered")


def same(a: str, b: str) -> bool:
    return normalise(a) == normalise(b)


def rewordings(claim: str) -> dict[str, str]:
    body = claim.rstrip(". ")
    found = {"lowercase": body.lower(), "question": f"Is it true that {body[0].lower()}{body[1:]}?"}
    if ", " in body:
        head, tail = body.split(", ", 1)
        found["reordered"] = f"{tail[0].upper()}{tail[1:]}, {head[0].lower()}{head[1:]}"
    return found


def changed(claim: str, others: list[str], rng: random.Random) -> dict[str, str]:
    found: dict[str, str] = {}
    if m := _AUX.search(claim):
        found["negated"] = f"{claim[: m.end()]} not{claim[m.end() :]}"
    if m := _NUMBER.search(claim):
        value = m.group(0)
        other = str(int(float(value)) + 1) if "." not in value else f"{float(value) * 2:g}"
        found["number"] = f"{claim[: m.start()]}{other}{claim[m.end() :]}"
    names = [m for m in _NAME.finditer(claim) if m.start() > 0]
    if names:
        m = names[0]
        pool = [n.group(0) for o in rng.sample(others, 20) for n in _NAME.finditer(o) if n.start() > 0]
        pool = [p for p in pool if p.lower() != m.group(0).lower()]
        if pool:
            found["name"] = f"{claim[: m.start()]}{rng.choice(pool)}{claim[m.end() :]}"
    content = re.findall(r"[a-z]{5,}", claim.lower())
    if len(content) >= 2 and content[0] != content[-1]:  # the relation reversed: A ... B -> B ... A
        first, last = content[0], content[-1]
        marked = re.sub(rf"\b{first}\b", "\x00", claim.lower(), count=1)  # a placeholder for A
        found["reversed"] = re.sub(rf"\b{last}\b", first, marked, count=1).replace("\x00", last, 1)
    words = [w for w in content if w in signature(claim).words]
    if words:
        target = rng.choice(words)
        pool = [w for o in rng.sample(others, 20) for w in re.findall(r"[a-z]{5,}", o.lower())]
        pool = [p for p in pool if p != target]
        if pool:
            found["word"] = re.sub(rf"\b{target}\b", rng.choice(pool), claim.lower(), count=1)
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--min-similarity", type=float, default=CachePolicy().min_similarity)
    args = parser.parse_args()
    data = args.data or require_data_dir()
    rng = random.Random(0)
    texts = claims(data)[: args.limit]
    embedder = open_embedder()
    started = time.perf_counter()
    vectors = await embedder.embed_documents(texts)
    print(f"{len(texts)} claims embedded in {time.perf_counter() - started:.1f} s ({embedder.name})")

    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeVectorStore(Path(tmp) / "answers")
        safe = VectorAnswerCache(store, CachePolicy(min_similarity=args.min_similarity))
        plain = VectorAnswerCache(  # similarity alone: every rule past it switched off
            store, CachePolicy(min_similarity=args.min_similarity, check_wording=False)
        )
        now = datetime.now(UTC)
        store_ms = []
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            entry = CacheEntry(
                query_id=f"c{i}", question=text, answer="...", citations=[], retrieved=[], tier=1,
                reason="bench", cached_at=now,
            )  # fmt: skip
            t0 = time.perf_counter()
            await safe.store("bench", "scope", vector, entry)
            store_ms.append((time.perf_counter() - t0) * 1000)

        variants: list[tuple[str, str, int]] = []  # (kind, text, index of its claim)
        for i, text in enumerate(texts):
            variants += [(k, v, i) for k, v in rewordings(text).items()]
            variants += [(k, v, i) for k, v in changed(text, texts, rng).items()]
        embedded = await embedder.embed_documents([v for _, v, _ in variants])

        hits: dict[str, Counter[str]] = {"rules": Counter(), "similarity alone": Counter()}
        totals: Counter[str] = Counter()
        lookup_ms = []
        for (kind, text, own), vector in zip(variants, embedded, strict=True):
            totals[kind] += 1
            for name, cache in (("rules", safe), ("similarity alone", plain)):
                t0 = time.perf_counter()
                found = await cache.lookup("bench", "scope", text, vector)
                if name == "rules":
                    lookup_ms.append((time.perf_counter() - t0) * 1000)
                if found is None:
                    continue
                keeps = kind in KEEP
                # Right: its own claim's entry for a rewording, or an entry of exactly this question
                # (SciFact holds some claims and their negations both).
                right = found.entry.query_id == f"c{own}" if keeps else same(found.entry.question, text)
                hits[name][kind if right else f"{kind} (false)"] += 1
        await store.aclose()

    print(
        f"\nmin similarity {args.min_similarity}; {sum(totals.values())} lookups against {len(texts)} entries"
    )
    print(f"{'variant':12} {'n':>6}  {'hits, rules':>14}  {'hits, similarity alone':>24}")
    for kind in (*KEEP, "negated", "number", "name", "word", "reversed"):
        n = totals[kind]
        if not n:
            continue
        label = kind if kind in KEEP else f"{kind} (false)"
        cells = [f"{hits[name][label]:5d} ({hits[name][label] / n:6.1%})" for name in hits]
        other = f"{kind} (false)" if kind in KEEP else kind
        what = "wrong entry" if kind in KEEP else "right twin"
        extra = f"   {what}: {hits['rules'][other]} / {hits['similarity alone'][other]}"
        print(f"{kind:12} {n:6d}  {cells[0]:>14}  {cells[1]:>24}{extra}")
    lookup_ms.sort()
    p95 = lookup_ms[int(len(lookup_ms) * 0.95)]
    print(
        f"\nlookup p50 {statistics.median(lookup_ms):.2f} ms, p95 {p95:.2f} ms (embedding excluded); "
        f"store p50 {statistics.median(store_ms):.2f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
