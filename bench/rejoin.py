"""Reproduces a hang: the guard app started, stopped and started again on the same consumer group of a
local Tansu broker stops starting after a few rounds (`Application.start` waits in `_start_broker` for
good, aiokafka's group coordinator running). Plain aiokafka consumers in one group, on one topic or on two,
restart fine on the same broker, so the cause is in FastStream's start or in this app's subscriptions.

    ragbus local broker start --port 19092
    python bench/rejoin.py --rounds 12 --limit 20

2026-12-05, four runs: rounds 0-2 start in 3 s each time; then 4 to 9 rounds in a row do not start
within 20-40 s, and the runs that went on started again after that (one in 17.5 s, then 4 s each). One
run of 6 rounds had no hang.

Prints each round's start time, or HANG with the pending start's stack, and the number of hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time


async def main(rounds: int, pause: float, limit: float) -> int:
    from ragbus.common.admin import ensure_topics
    from ragbus.common.settings import KafkaSettings
    from ragbus.common.topics import Topics
    from ragbus.guard.app import create_app

    kafka = KafkaSettings()
    await ensure_topics(kafka, Topics(kafka.topic_prefix).all_with_dlq)
    hangs = 0
    for i in range(rounds):
        app = create_app()
        start = time.monotonic()
        task = asyncio.ensure_future(app.start())
        try:
            await asyncio.wait_for(asyncio.shield(task), limit)
            print(f"round {i}: started in {time.monotonic() - start:.1f} s", flush=True)
        except TimeoutError:
            hangs += 1
            print(f"round {i}: HANG (not started after {limit:.0f} s)", flush=True)
            task.print_stack(limit=20)
            task.cancel()
            continue
        await asyncio.sleep(pause)
        await app.stop()
    print(f"hangs: {hangs} of {rounds}")
    return hangs


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds each round runs before it stops")
    parser.add_argument("--limit", type=float, default=40.0, help="seconds a start may take")
    args = parser.parse_args()
    from ragbus.stack.broker import local_kafka_overrides

    os.environ.update(
        {
            "KAFKA_BOOTSTRAP": args.bootstrap,
            "KAFKA_TOPIC_PREFIX": f"rejoin{int(time.time())}.",
            "RAGBUS_TELEMETRY_ENABLED": "false",
            "RAGBUS_LOG_LEVEL": "WARNING",
            "GUARD_CLASSIFIERS": "false",
            "GUARD_NER": "false",
            **{f"KAFKA_{k.upper()}": str(v) for k, v in local_kafka_overrides().items()},
        }
    )
    asyncio.run(main(args.rounds, args.pause, args.limit))


if __name__ == "__main__":
    cli()
