"""Measure the local infrastructure: Tansu and the llama.cpp model server (SmolLM2-135M-Instruct).

    python bench/model_server.py [--threads 2 1] [--requests 10] [--max-tokens 64] [--no-broker]

For each thread count: start-to-ready time (spawn to a passing readiness check, as `ragbus up` sees it),
RSS when ready and after the run, then `--requests` chat completions one at a time with a RAG-like
prompt of ~300 tokens (a system prompt, two SciFact abstracts cut to fit, the claim as the question;
each request a different claim, so the prompt is really evaluated and not served from llama.cpp's
prompt cache) and `max_tokens` 64: latency median / p95, and generation speed (server-side decode
tokens/s from llama.cpp's `timings`, and end-to-end completion tokens / latency). Then two requests at
once (the server has 2 slots) for the aggregate decode rate. A configuration stops after `--budget-s`
(the `done` column says how many requests finished). `--burn N` adds N busy processes, standing in for
the embedder and services that share the cores under `ragbus up`. Tansu: start-to-ready over 5 starts and
idle RSS after 5 s. Servers run on free ports in a temporary RAGBUS_HOME and are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ragbus.common.refdata import find_data_dir
from ragbus.stack.broker import broker_process
from ragbus.stack.model import model_process
from ragbus.stack.process import free_port
from ragbus.stack.settings import BrokerSettings, ModelServerSettings

SCIFACT = find_data_dir("scifact")  # None: synthetic prompts
SYSTEM = (
    "You answer questions using only the numbered sources. Cite the sources you use like [1]. "
    "If the sources do not contain the answer, say you don't know."
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rag_prompts(n: int, chars_per_source: int = 520) -> list[list[dict[str, str]]]:
    """n chat requests: a claim and two of its cited abstracts (SciFact), or a synthetic stand-in."""
    if SCIFACT is not None:
        claims, corpus = SCIFACT / "train-claims.jsonl", SCIFACT / "corpus.jsonl"
        docs = {d["_id"]: d for d in map(json.loads, corpus.open())}
        filler = list(docs.values())
        picked: list[tuple[str, list[dict[str, Any]]]] = []
        for claim in map(json.loads, claims.open()):
            cited = [docs[str(c)] for c in claim["cited"] if str(c) in docs]
            sources = (cited + filler[len(picked) * 2 : len(picked) * 2 + 2])[:2]  # pad to two sources
            picked.append((claim["text"], sources))
            if len(picked) == n:
                break
    else:
        text = "Regular exercise lowers resting heart rate and blood pressure in adults. " * 12
        picked = [
            (f"Does exercise lower blood pressure? (variant {i})", [{"title": "Exercise", "text": text}] * 2)
            for i in range(n)
        ]
    requests = []
    for question, sources in picked:
        context = "\n\n".join(
            f"[{i}] {s['title']}\n{s['text'][:chars_per_source]}" for i, s in enumerate(sources, 1)
        )
        user = f"Sources:\n{context}\n\nQuestion: Is this claim true? {question}"
        requests.append([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])
    return requests


async def complete(
    http: httpx.AsyncClient, url: str, messages: list[dict[str, str]], max_tokens: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    reply = await http.post(
        f"{url}/chat/completions",
        json={
            "model": "smollm2-135m-instruct",
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
        },
    )
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    body["latency_s"] = time.perf_counter() - t0
    return body


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench_model(
    threads: int, poll: int, requests: int, max_tokens: int, budget_s: float, home: Path
) -> dict[str, Any]:
    """One server configuration; stops early when the requests take longer than `budget_s` in all."""
    server = model_process(ModelServerSettings(poll=poll), port=free_port(), threads=threads, home=home)
    running = await server.start()
    try:
        rss_ready = rss_mb(running.pid)
        prompts = rag_prompts(requests + 2)
        results: list[dict[str, Any]] = []
        pair_tps = float("nan")
        deadline = time.monotonic() + budget_s
        async with httpx.AsyncClient(timeout=budget_s) as http:
            try:
                await complete(http, running.address, prompts[-1], 8)  # pays one-off allocations
                for prompt in prompts[:requests]:
                    if time.monotonic() > deadline:
                        break
                    results.append(await complete(http, running.address, prompt, max_tokens))
                if time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    pair = await asyncio.gather(
                        *(complete(http, running.address, p, max_tokens) for p in prompts[:2])
                    )
                    pair_tps = sum(r["usage"]["completion_tokens"] for r in pair) / (time.perf_counter() - t0)
            except httpx.TimeoutException:
                pass  # reported as fewer requests done
        rss_after = rss_mb(running.pid)
    finally:
        await server.stop()
    nan = float("nan")
    latencies = [r["latency_s"] * 1000 for r in results] or [nan]
    completion = [r["usage"]["completion_tokens"] for r in results] or [0]
    return {
        "threads": threads,
        "poll": poll,
        "done": f"{len(results)}/{requests}",
        "ready_s": running.ready_after_s,
        "rss_ready_mb": rss_ready,
        "rss_after_mb": rss_after,
        "prompt_tokens": statistics.mean(r["usage"]["prompt_tokens"] for r in results) if results else nan,
        "completion_tokens": statistics.mean(completion),
        "p50_ms": statistics.median(latencies),
        "p95_ms": pct(latencies, 0.95),
        "decode_tps": statistics.median(r["timings"]["predicted_per_second"] for r in results)
        if results
        else nan,
        "prefill_tps": statistics.median(r["timings"]["prompt_per_second"] for r in results)
        if results
        else nan,
        "e2e_tps": sum(completion) / (sum(latencies) / 1000),
        "pair_tps": pair_tps,
        "sample": results[0]["choices"][0]["message"]["content"][:160] if results else "",
    }


async def bench_broker(home: Path, starts: int = 5) -> dict[str, float]:
    ready, rss = [], 0.0
    for i in range(starts):
        broker = broker_process(BrokerSettings(), port=free_port(), home=home)
        running = await broker.start()
        ready.append(running.ready_after_s * 1000)
        if i == starts - 1:
            await asyncio.sleep(5)
            rss = rss_mb(running.pid)
        await broker.stop()
    return {"ready_ms_median": statistics.median(ready), "ready_ms_max": max(ready), "idle_rss_mb": rss}


COLUMNS = {  # header: how a result row renders it
    "threads": "{threads}",
    "poll": "{poll}",
    "done": "{done}",
    "ready s": "{ready_s:.2f}",
    "RSS ready / after MB": "{rss_ready_mb:.0f} / {rss_after_mb:.0f}",
    "prompt tok": "{prompt_tokens:.0f}",
    "completion tok": "{completion_tokens:.1f}",
    "p50 ms": "{p50_ms:.0f}",
    "p95 ms": "{p95_ms:.0f}",
    "decode tok/s": "{decode_tps:.0f}",
    "prefill tok/s": "{prefill_tps:.0f}",
    "e2e tok/s": "{e2e_tps:.0f}",
    "2 at once tok/s": "{pair_tps:.0f}",
}


def burn(n: int) -> list[subprocess.Popen[bytes]]:
    """Busy processes, standing in for the embedder and services that share the cores under `ragbus up`."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--poll", type=int, nargs="+", default=[50], help="llama.cpp thread polling, 0-100")
    parser.add_argument("--burn", type=int, default=0, help="busy processes to run alongside (contention)")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--budget-s", type=float, default=300, help="time limit per configuration")
    parser.add_argument("--no-broker", action="store_true")
    args = parser.parse_args()
    cores, load = len(os.sched_getaffinity(0)), os.getloadavg()[0]
    print(f"cores usable: {cores}, load average {load:.1f}, busy processes added: {args.burn}")
    with tempfile.TemporaryDirectory(prefix="ragbus-bench-") as tmp:
        home = Path(tmp)
        if not args.no_broker:
            b = await bench_broker(home)
            ready = f"median {b['ready_ms_median']:.0f} ms, max {b['ready_ms_max']:.0f} ms over 5 starts"
            print(f"\nTansu: start-to-ready {ready}; idle RSS {b['idle_rss_mb']:.1f} MB")
        burners = await asyncio.to_thread(burn, args.burn)
        try:
            configs = [(t, p) for t in args.threads for p in args.poll]
            rows = [
                await bench_model(t, p, args.requests, args.max_tokens, args.budget_s, home)
                for t, p in configs
            ]
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
    print(f"\nModel server, {args.requests} sequential chat completions, max_tokens {args.max_tokens}:")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(cell.format(**r) for cell in COLUMNS.values()) + " |")
    print(f"\nsample answer ({rows[0]['threads']} threads): {rows[0]['sample']!r}")


if __name__ == "__main__":
    asyncio.run(main())
