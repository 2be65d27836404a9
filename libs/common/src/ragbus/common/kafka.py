"""Plain aiokafka clients (producers, consumers, admin) configured from `KafkaSettings`.

The services' FastStream broker is built in `ragbus.common.broker`; this module serves the code that
talks to Kafka directly: the client library, the CLI, topic creation, test taps and benchmarks.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ragbus.common.settings import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments for plain aiokafka clients (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "request_timeout_ms": settings.request_timeout_ms,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context()
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


async def tail(settings: KafkaSettings, names: Sequence[str]) -> AIOKafkaConsumer:
    """A started consumer, in no group, positioned at the current end of every partition of `names`.

    For readers that wait for what is published from now on (the client's replies, test taps): no
    group means no rebalance and nothing committed, so any number of them can read at once.
    """
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, fetch_max_wait_ms=settings.fetch_max_wait_ms
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, including those just created
        partitions = []
        for name in names:
            found = consumer.partitions_for_topic(name)
            if not found:
                raise RuntimeError(f"topic {name} has no partitions on {settings.bootstrap}")
            partitions += [TopicPartition(name, p) for p in found]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve positions now, so nothing published after this is missed
            await consumer.position(tp)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def rewind_truncated(
    consumer: AIOKafkaConsumer, suspects: Collection[TopicPartition] | None = None
) -> list[TopicPartition]:
    """Move each assigned partition whose log now ends before the consumer's position back to its
    beginning, and return them. That happens when the broker lost its log (the local Tansu keeps it in
    memory): Kafka answers a fetch past the end with OFFSET_OUT_OF_RANGE and the consumer resets itself,
    Tansu answers with no records, so without this a reader would wait there, missing every new record
    until the new log grew past its old position.

    `suspects`: rewind only partitions that were behind at the previous look too (`truncated`), for a
    reader that looks again and again under traffic: Tansu's end offsets can trail the records a fetch
    has already returned for a moment, and one look would take a live log for lost and re-read it all.
    (They also trail for as long as a partition's last write was a batch of several records: see
    `truncated`.)"""
    behind = await truncated(consumer)
    if suspects is not None:
        behind = [tp for tp in behind if tp in suspects]
    if behind:
        await consumer.seek_to_beginning(*behind)
    return behind


async def truncated(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    """The assigned partitions whose log ends before the consumer's position (see rewind_truncated)."""
    assigned = sorted(consumer.assignment())
    if not assigned:
        return []
    # Positions first, ends after: a log only grows, so a position read before its end is never past it
    # unless the log was lost. The other order raced the consumer's fetches: under steady traffic the
    # position moved past the end read a moment before, and a live log was taken for lost and re-read.
    positions = {tp: await consumer.position(tp) for tp in assigned}
    ends = await consumer.end_offsets(assigned)
    # Tansu (0.6) answers a request for a partition's end with its last batch's first offset + 1: after
    # a batch of several records (a producer sending several at once) the end reads short until the
    # next write, and a reader that was at the true end looked truncated, was rewound and re-read the
    # partition every two looks. Its fetch responses carry the true end (the high watermark, which the
    # consumer keeps from its last fetch, empty or not): past both, the log was lost.
    return [tp for tp in assigned if positions[tp] > max(ends[tp], consumer.highwater(tp) or 0)]
