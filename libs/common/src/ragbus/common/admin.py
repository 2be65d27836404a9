"""Topic administration: create the ragbus topics that are missing and wait until they serve.

One implementation for every caller: the runner and the client (local brokers, tests) and the compose
`topic-init` step (`ragbus topics create`) on a production cluster.

Existing topics are left alone, so running it again changes nothing. A topic that exists with fewer
partitions than asked is reported, not grown: adding partitions moves keys to other partitions, which
breaks the per-document and per-conversation order while old events are still in flight; that is an
operator's decision (`kafka-topics.sh --alter --partitions`), not a start-up step's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from ragbus.common.kafka import client_options
from ragbus.common.logging import get_logger
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import DLQ_SUFFIX

log = get_logger("ragbus.admin")


class TopicAdminError(RuntimeError):
    """Topics could not be created, or did not become ready in time."""


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """The topics asked for, split by what the cluster had before anything was created."""

    missing: tuple[str, ...]
    existing: tuple[str, ...]
    # (name, partitions it has) for existing topics with fewer partitions than asked
    short: tuple[tuple[str, int], ...]


def plan_topics(
    names: Iterable[str], existing: Mapping[str, int], partitions: int | Mapping[str, int]
) -> TopicPlan:
    """What to create, given the partition counts of the topics that exist already and the count
    asked for (one for all, or per topic)."""
    names = tuple(dict.fromkeys(names))
    wanted = partitions if isinstance(partitions, Mapping) else dict.fromkeys(names, partitions)
    return TopicPlan(
        missing=tuple(n for n in names if n not in existing),
        existing=tuple(n for n in names if n in existing),
        short=tuple((n, existing[n]) for n in names if n in existing and existing[n] < wanted[n]),
    )


def partition_counts(names: Iterable[str], partitions: int, dlq_partitions: int) -> dict[str, int]:
    """The partitions each topic is created with: `dlq_partitions` for a `.dlq` topic, else
    `partitions` (KafkaSettings)."""
    return {n: dlq_partitions if n.endswith(DLQ_SUFFIX) else partitions for n in dict.fromkeys(names)}


async def _connect(settings: KafkaSettings, deadline: float | None) -> Any:
    """An admin client; with a deadline, retrying while the broker is not reachable yet (it may still be
    starting), else failing at once with aiokafka's own error."""
    delay = 0.5
    while True:
        admin = AIOKafkaAdminClient(client_id="ragbus-admin", **client_options(settings))
        try:
            await admin.start()
            return admin
        except KafkaError as exc:
            await admin.close()
            if deadline is None:
                raise
            if time.monotonic() + delay > deadline:
                raise TopicAdminError(f"cannot reach Kafka at {settings.bootstrap}: {exc!r}") from exc
            log.warning("Kafka not reachable yet, retrying", bootstrap=settings.bootstrap, error=repr(exc))
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
    admin: Any, names: Sequence[str], partitions: Mapping[str, int], replication: int, timeout_ms: int
) -> None:
    response = await admin.create_topics(
        [NewTopic(n, num_partitions=partitions[n], replication_factor=replication) for n in names],
        timeout_ms=timeout_ms,
    )
    # aiokafka reports per-topic failures in the response instead of raising them.
    errors = []
    for topic, code, *message in getattr(response, "topic_errors", ()):
        # Already there: another process creating the same topics got there first.
        if code not in (0, TopicAlreadyExistsError.errno):
            detail = message[0] if message and message[0] else for_code(code).__name__
            errors.append(f"{topic}: {detail}")
    if errors:
        raise TopicAdminError("could not create " + "; ".join(errors))


async def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    *,
    partitions: int | None = None,
    dlq_partitions: int | None = None,
    replication: int = 1,
    timeout_s: float = 30.0,
    wait_for_broker: bool = False,
) -> TopicPlan:
    """Create those of `names` that do not exist and wait until every one has its partitions' leaders.

    Consumers subscribed to a topic that does not exist yet may not see it until their metadata
    refreshes (minutes), so topics are created before any service starts. Returns the plan as found
    before anything was created (`missing` is what this call created). A broker that does not answer
    fails at once, unless `wait_for_broker` (a start-up step beside a booting cluster) waits for it.
    """
    names = tuple(dict.fromkeys(names))
    wanted = partition_counts(
        names, partitions or settings.partitions, dlq_partitions or settings.dlq_partitions
    )
    deadline = time.monotonic() + timeout_s
    admin = await _connect(settings, deadline if wait_for_broker else None)
    try:
        before = plan_topics(names, await _partition_counts(admin, names), wanted)
        if before.missing:
            remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
            await _create(admin, before.missing, wanted, replication, remaining_ms)
        while True:  # topics appear in metadata once their partitions have leaders
            after = plan_topics(names, await _partition_counts(admin, names), wanted)
            if not after.missing:
                return before
            if time.monotonic() > deadline:
                raise TopicAdminError(
                    f"topics still missing after {timeout_s:.0f} s: {', '.join(after.missing)}"
                )
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
