"""Chaos: kill the services or the broker with SIGKILL mid-ingest and mid-query, restart them, and count
what was lost or duplicated, from the monitor's record against what the client submitted.

    python bench/chaos.py [--docs 300] [--questions 60] [--kill-after 0.33] [--scenarios ingest query ...]

It runs a stack of its own, as a user would: `ragbus up --detach --no-model` in a temporary RAGBUS_HOME
on free ports. Then, for each scenario:

- `ingest`: `ragbus ingest` of `--docs` SciFact abstracts (tenant `chaos-ingest`). Once a third of them
  are indexed, the services process gets SIGKILL and `ragbus up` is run again (the broker and its topics
  stay). The client waits on.
- `query`: `--questions` tier-0 questions asked at once through the client (tenant `chaos-query`), with the
  same kill and restart after a third of them are answered.
- `ingest-broker`, `query-broker`: the same, but the broker gets SIGKILL. The local broker keeps its log
  in memory, so everything on it is gone; `ragbus up` starts a new one, and re-drives from the monitor's
  record what was submitted and has no outcome (`ragbus journal`). The services are not restarted.

Each prints: submitted, completed, lost (submitted, never completed), duplicated (an outcome on record
more than once, by id or by content), and the time. The run fails (exit 1) on any loss or duplicate.
Loopback only; the stack is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from ragbus.client.client import RagbusClient
from ragbus.common.events import QueryOptions
from ragbus.common.settings import DEFAULT_DATABASE_URL, KafkaSettings
from ragbus.stack.settings import monitor_schema_for

SCENARIOS = ("ingest", "query", "ingest-broker", "query-broker")
REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
RAGBUS = str(Path(sys.executable).parent / "ragbus")
INDEXED = (
    "SELECT count(DISTINCT data->>'doc_id') FROM events "
    "WHERE type = 'io.ragbus.docs.indexed.v1' AND tenant = $1"
)
# One docs.indexed per (document, part) is the rule, and ids are deterministic (a redelivery is one row):
# two rows for one part are two different outcomes.
INDEXED_TWICE = (
    "SELECT count(*) FROM (SELECT data->>'doc_id', data->>'part' FROM events "
    "WHERE type = 'io.ragbus.docs.indexed.v1' AND tenant = $1 GROUP BY 1, 2 HAVING count(*) > 1) d"
)
ANSWERED = (
    "SELECT count(DISTINCT data->>'query_id') FROM events "
    "WHERE type = 'io.ragbus.answers.completed.v1' AND tenant = $1"
)
ANSWERED_TWICE = (
    "SELECT count(*) FROM (SELECT data->>'query_id' FROM events "
    "WHERE type = 'io.ragbus.answers.completed.v1' AND tenant = $1 GROUP BY 1 HAVING count(*) > 1) d"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ragbus(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([RAGBUS, *args], env=env, capture_output=True, text=True, check=False, timeout=600)
    if check and done.returncode != 0:
        raise RuntimeError(f"ragbus {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done


def pid_of(home: Path, name: str) -> int:
    return int((home / "run" / f"{name}.pid").read_text().split()[0])


class Record:
    """The monitor's record of this stack (its schema in the machine's PostgreSQL)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    async def rows(self, query: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
        try:
            await conn.execute(f'SET search_path TO "{self.schema}"')
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def count(self, query: str, *args: Any) -> int:
        return int((await self.rows(query, *args))[0][0])


async def settled(record: Record, query: str, tenant: str, expect: int, timeout: float = 60) -> int:
    """The count once the monitor has caught up: `expect`, or what it holds when it stops growing for
    10 s (it writes in batches, after the client has its replies)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        value = await record.count(query, tenant)
        if value >= expect or time.monotonic() > deadline or time.monotonic() - since > 10:
            return value
        if value != last:
            last, since = value, time.monotonic()
        await asyncio.sleep(0.5)


async def kill_and_restart(env: dict[str, str], home: Path, target: str) -> float:
    pid = pid_of(home, target)
    os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    while True:  # wait until it is gone, as a crash leaves it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    up = await asyncio.to_thread(ragbus, "up", "--detach", "--no-model", env=env)
    said = [line.strip() for line in up.stdout.splitlines() if line.strip().startswith("journal")]
    print(f"  {target} killed, `ragbus up` again: {said[0] if said else 'no journal line'}", flush=True)
    return time.monotonic() - start


async def scenario_ingest(
    env: dict[str, str], home: Path, record: Record, docs: int, kill_at: float, target: str
) -> dict[str, Any]:
    tenant = f"chaos-ingest-{target}"
    folder = home / f"corpus-{target}"
    folder.mkdir()
    with SCIFACT.open() as f:
        for i, line in enumerate(f):
            if i >= docs:
                break
            doc = json.loads(line)
            (folder / f"{doc['_id']}.txt").write_text(f"{doc['title']}\n\n{doc['text']}")
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        RAGBUS, "ingest", str(folder), "--tenant", tenant, "--stall-timeout", "300",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    while await record.count(INDEXED, tenant) < docs * kill_at:  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.2)
    restart_s = await kill_and_restart(env, home, target)
    out, err = await proc.communicate()
    elapsed = time.monotonic() - start
    done = await settled(record, INDEXED, tenant, docs)
    dup = await record.count(INDEXED_TWICE, tenant)
    return {
        "scenario": f"ingest, {target} SIGKILLed",
        "submitted": docs,
        "completed": done,
        "lost": docs - done,
        "duplicated": dup,
        "seconds": round(elapsed, 1),
        "restart_s": round(restart_s, 1),
        "client": (out.decode().strip().splitlines() or [""])[-1] + err.decode().strip()[-200:],
    }


async def scenario_query(
    env: dict[str, str], home: Path, record: Record, n: int, kill_at: float, target: str
) -> dict[str, Any]:
    tenant = f"chaos-query-{target}"
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{env['RAGBUS_BROKER_PORT']}")
    questions = [f"Which headers carry the reason of a dead letter? ({i})" for i in range(n)]
    start = time.monotonic()
    async with RagbusClient(kafka, tenant=tenant) as client:
        tasks = [
            asyncio.create_task(client.ask(q, options=QueryOptions(max_tier=0, cache=False), timeout=600))
            for q in questions
        ]
        while sum(t.done() for t in tasks) < n * kill_at:  # noqa: ASYNC110 - counts finished tasks
            await asyncio.sleep(0.05)
        restart_s = await kill_and_restart(env, home, target)
        results = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.monotonic() - start
    answered = [r for r in results if not isinstance(r, BaseException)]
    ids = [str(r.answer.query_id) for r in answered]
    completed = await settled(record, ANSWERED, tenant, n)
    dup = await record.count(ANSWERED_TWICE, tenant)
    return {
        "scenario": f"query, {target} SIGKILLed",
        "submitted": n,
        "completed": min(len(set(ids)), completed),
        "lost": n - min(len(set(ids)), completed),
        "duplicated": dup + (len(ids) - len(set(ids))),
        "seconds": round(elapsed, 1),
        "restart_s": round(restart_s, 1),
        "client": f"{len(answered)} answers, {n - len(answered)} errors",
    }


async def main_async(args: argparse.Namespace) -> int:
    home = Path(tempfile.mkdtemp(prefix="ragbus-chaos-"))
    env = {
        **os.environ,
        "RAGBUS_HOME": str(home),
        "RAGBUS_BROKER_PORT": str(free_port()),
        "RAGBUS_MODEL_PORT": str(free_port()),
        "RAGBUS_HEALTH_PORT": str(free_port()),
        "INGEST_ALLOWED_ROOTS": str(home),
    }
    env.pop("KAFKA_BOOTSTRAP", None)  # `ragbus up` starts its broker; clients find it by its port
    os.environ.pop("KAFKA_BOOTSTRAP", None)
    os.environ.update({k: env[k] for k in ("RAGBUS_HOME", "RAGBUS_BROKER_PORT")})
    record = Record(monitor_schema_for(home))
    ragbus("up", "--detach", "--no-model", env=env)
    rows = []
    try:
        for name in args.scenarios:
            kind, _, target = name.partition("-")
            run = scenario_ingest if kind == "ingest" else scenario_query
            size = args.docs if kind == "ingest" else args.questions
            print(f"{name}: ...", flush=True)
            rows.append(await run(env, home, record, size, args.kill_after, target or "services"))
    finally:
        ragbus("down", env=env, check=False)
    head = f"{'submitted':>9} {'completed':>9} {'lost':>5} {'dup':>4} {'seconds':>8} {'restart':>8}"
    print(f"\n{'scenario':28} {head}")
    for r in rows:
        print(
            f"{r['scenario']:28} {r['submitted']:>9} {r['completed']:>9} {r['lost']:>5} {r['duplicated']:>4} "
            f"{r['seconds']:>8} {r['restart_s']:>8}   {r['client']}"
        )
    return 1 if any(r["lost"] or r["duplicated"] for r in rows) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--kill-after", type=float, default=0.33, help="share completed before the kill")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
