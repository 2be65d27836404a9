"""Create every ragbus topic and its dead-letter topic on a Kafka cluster: the compose `topic-init` step.

    python infra/docker/create_topics.py [--partitions N] [--replication-factor N] [--timeout S] [--list]

Connection settings are the services' own (`KAFKA_BOOTSTRAP`, `KAFKA_TOPIC_PREFIX`, `KAFKA_SECURITY_*`,
`KAFKA_SASL_*`); partitions default to `KAFKA_PARTITIONS`. The names come from `ragbus.common.topics`,
so this list cannot drift from the one the services subscribe to.

Existing topics are left alone, so running it again changes nothing. A topic that exists with fewer
partitions than asked is reported, not grown: adding partitions moves keys to other partitions, which
breaks the per-document and per-conversation order while old events are still in flight; that is an
operator's decision (`kafka-topics.sh --alter --partitions`), not a start-up step's.
Exit status: 0 when every topic exists afterwards, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import KafkaError, for_code  # type: ignore[import-untyped, unused-ignore]

from ragbus.common.bus import client_options
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics

TOPIC_ALREADY_EXISTS = 36


def topic_names(prefix: str = "") -> tuple[str, ...]:
    """Every topic the services use under `prefix`, dead-letter topics included."""
    return Topics(prefix).all_with_dlq


@dataclass(frozen=True, slots=True)
class Plan:
    missing: tuple[str, ...]
    existing: tuple[str, ...]
    # (name, partitions it has) for existing topics with fewer partitions than asked
    short: tuple[tuple[str, int], ...]


def plan(names: Iterable[str], existing: Mapping[str, int], partitions: int) -> Plan:
    """What to create, given the partition counts of the topics that exist already."""
    names = tuple(dict.fromkeys(names))
    return Plan(
        missing=tuple(n for n in names if n not in existing),
        existing=tuple(n for n in names if n in existing),
        short=tuple((n, existing[n]) for n in names if n in existing and existing[n] < partitions),
    )


class TopicInitError(Exception):
    pass


async def _connect(settings: KafkaSettings, deadline: float) -> Any:
    """An admin client, retrying while the broker is not reachable yet (it may still be starting)."""
    delay = 0.5
    while True:
        admin = AIOKafkaAdminClient(client_id="ragbus-topic-init", **client_options(settings))
        try:
            await admin.start()
            return admin
        except KafkaError as exc:
            await admin.close()
            if time.monotonic() + delay > deadline:
                raise TopicInitError(f"cannot reach Kafka at {settings.bootstrap}: {exc!r}") from exc
            print(
                f"topic-init: Kafka at {settings.bootstrap} not reachable yet ({exc!r}); retrying", flush=True
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _partition_counts(admin: Any, names: Sequence[str]) -> dict[str, int]:
    """Partition counts of those of `names` that exist and have a leader for every partition."""
    present = sorted(set(await admin.list_topics()) & set(names))
    if not present:
        return {}
    counts: dict[str, int] = {}
    for topic in await admin.describe_topics(present):
        if topic["error_code"] == 0 and topic["partitions"]:
            counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def _create(
    admin: Any, names: Sequence[str], partitions: int, replication: int, timeout_ms: int
) -> None:
    response = await admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in names],
        timeout_ms=timeout_ms,
    )
    errors = []
    for topic, code, *message in response.topic_errors:
        # Already there: another topic-init (or a service's own ensure_topics) got there first.
        if code not in (0, TOPIC_ALREADY_EXISTS):
            detail = message[0] if message and message[0] else for_code(code).__name__
            errors.append(f"{topic}: {detail}")
    if errors:
        raise TopicInitError("could not create " + "; ".join(errors))


async def ensure(settings: KafkaSettings, *, partitions: int, replication: int, timeout_s: float) -> Plan:
    """Create the missing ragbus topics and wait until every one is ready. Returns what was found first."""
    names = topic_names(settings.topic_prefix)
    deadline = time.monotonic() + timeout_s
    admin = await _connect(settings, deadline)
    try:
        before = plan(names, await _partition_counts(admin, names), partitions)
        if before.missing:
            remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
            await _create(admin, before.missing, partitions, replication, remaining_ms)
        # Topics appear in metadata once their partitions have leaders; wait for all of them.
        while True:
            after = plan(names, await _partition_counts(admin, names), partitions)
            if not after.missing:
                return before
            if time.monotonic() > deadline:
                raise TopicInitError(
                    f"topics still missing after {timeout_s:.0f} s: {', '.join(after.missing)}"
                )
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


def parse_args(argv: Sequence[str] | None, settings: KafkaSettings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="create_topics.py",
        description="Create every ragbus topic and its .dlq topic on a Kafka cluster.",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=settings.partitions,
        help="partitions of each new topic (default: KAFKA_PARTITIONS, now %(default)s)",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=1,
        help="replicas of each new topic; 3 on a cluster of 3 brokers or more (default: 1)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the broker")
    parser.add_argument("--list", action="store_true", help="print the topic names and exit")
    args = parser.parse_args(argv)
    if args.partitions < 1 or args.replication_factor < 1:
        parser.error("--partitions and --replication-factor must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    settings = KafkaSettings()
    args = parse_args(argv, settings)
    if args.list:
        print("\n".join(topic_names(settings.topic_prefix)))
        return 0
    try:
        found = asyncio.run(
            ensure(
                settings,
                partitions=args.partitions,
                replication=args.replication_factor,
                timeout_s=args.timeout,
            )
        )
    except TopicInitError as exc:
        print(f"topic-init: error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(
        f"topic-init: {len(found.missing)} topics created with {args.partitions} partitions, "
        f"{len(found.existing)} already present (Kafka at {settings.bootstrap})",
        flush=True,
    )
    if found.short:
        listed = ", ".join(f"{name} ({count})" for name, count in found.short)
        print(
            f"topic-init: warning: {len(found.short)} topics have fewer than {args.partitions} partitions, "
            f"left as they are (growing a topic reorders its keys): {listed}",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
