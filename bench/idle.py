"""What an idle document path costs: ingest and embed, hosted as `ragbus up` hosts them, with one
documents-only client open (what `ragbus ingest` holds while it waits), and nothing to do.

    python bench/idle.py [--seconds 60] [--runs 3] [--config 'LABEL:ENV=VALUE,ENV=VALUE' ...]

Every consumer polls the broker and every group member heartbeats while the stack waits; on Tansu's
memory store each of those requests costs CPU, and during a model-bound bulk load the consumers ahead of
the model and the client's reply tail spend most of the run waiting, so this cost lands on the
pipeline's CPU per chunk (bench/ingest.py). Per configuration (environment variables set for that run
only; the first, `default`, sets none) and run, on a fresh local broker each: after a settling pause,
the CPU cores used over `--seconds` by the services (this process), their worker processes, the model's
worker and the broker, as bench/ingest.py splits them; then the median per configuration, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `bench.ingest`

from bench.ingest import TENANT, stack_environment, tree_cpu_by_role  # the data layer bench's helpers

from ragbus.client.client import RagbusClient
from ragbus.common.settings import KafkaSettings
from ragbus.stack.broker import LOCAL_KAFKA, scratch_broker
from ragbus.stack.runner import Host

ROLES = ("services", "workers", "model", "broker")


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    label, _, assignments = text.partition(":")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    return label, env


async def one_run(env: dict[str, str], seconds: float, settle: float) -> dict[str, float]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        async with scratch_broker(None) as address:
            os.environ.update(stack_environment("idle", address))
            host = Host(["ingest", "embed"])
            await host.start()
            try:
                async with RagbusClient(KafkaSettings(), tenant=TENANT, replies="documents"):
                    await asyncio.sleep(settle)
                    before, started = tree_cpu_by_role(), time.perf_counter()
                    await asyncio.sleep(seconds)
                    after, elapsed = tree_cpu_by_role(), time.perf_counter() - started
            finally:
                await host.stop()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for name in LOCAL_KAFKA:  # set by stack_environment for this run only, unless a config set it
            if (k := f"KAFKA_{name.upper()}") not in env:
                os.environ.pop(k, None)
    cores = {role: (after.get(role, 0.0) - before.get(role, 0.0)) / elapsed for role in ROLES}
    cores["total"] = sum(cores.values())
    return cores


ROW = "{label:<28} " + " ".join(f"{{{r}:>9.3f}}" for r in (*ROLES, "total"))
HEAD = f"{'configuration':<28} " + " ".join(f"{r:>9}" for r in (*ROLES, "total"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--config", action="append", default=[], help="LABEL:ENV=VALUE,ENV=VALUE")
    args = parser.parse_args()
    configs: list[tuple[str, dict[str, str]]] = [("default", {}), *(parse_config(c) for c in args.config)]
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _ in configs}
    print(f"idle cores used over {args.seconds:.0f} s, after {args.settle:.0f} s of settling", flush=True)
    print(HEAD, flush=True)
    # Configurations alternate within each round, so host drift falls on all of them alike.
    for n in range(args.runs):
        for label, env in configs:
            cores = await one_run(env, args.seconds, args.settle)
            results[label].append(cores)
            print(ROW.format(label=f"{label} (run {n + 1})", **cores), flush=True)
    print("\nmedians")
    print(HEAD)
    for label, rows in results.items():
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(ROW.format(label=label, **median))


if __name__ == "__main__":
    asyncio.run(main())
