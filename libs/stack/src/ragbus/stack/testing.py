"""pytest plugin: session fixtures for the real services the integration tests need.

Each endpoint comes from the environment when it is set (KAFKA_BOOTSTRAP, RAGBUS_CHAT_BASE_URL,
QDRANT_URL). Otherwise the session starts the embedded default on a free port of 127.0.0.1: Kafka in a
container where a Docker engine answers, else Tansu; the llama.cpp model server. A server starts only
when a test asks for it, once per session, and is stopped by PID at the end, also when tests fail (and,
on Linux, when pytest itself is killed). Its pid and log files live in the session's temporary
directory (`stack_home`), apart from a `ragbus up` the user may be running.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ragbus.common.settings import KafkaSettings
from ragbus.stack.broker import broker_process
from ragbus.stack.broker import local_kafka_settings as local_kafka_settings  # tests import it from here
from ragbus.stack.model import model_process
from ragbus.stack.process import NotInstalledError, free_port


def docker_reachable() -> bool:
    """Whether a Docker engine answers; cheap (no socket, no import) where there is none."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker  # type: ignore[import-untyped]
        from docker.errors import DockerException  # type: ignore[import-untyped]
    except ImportError:
        return False
    try:
        docker.from_env(timeout=3).ping()
    except (DockerException, OSError):
        return False
    return True


@pytest.fixture(scope="session")
def stack_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pid and log files of the servers this session starts (kept after the run, for the logs)."""
    return tmp_path_factory.mktemp("ragbus-stack")


def _kafka_container() -> Any:
    from testcontainers.community.kafka import KafkaContainer

    # Let the local group timeouts below through (Kafka's minimum is 6 s) and skip the join delay.
    return (
        KafkaContainer()
        .with_kraft()
        .with_env("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "500")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_bootstrap(stack_home: Path) -> AsyncIterator[str]:
    """`host:port` of a Kafka-protocol broker: KAFKA_BOOTSTRAP, a Kafka container, or Tansu."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    if docker_reachable():
        with _kafka_container() as kafka:
            yield kafka.get_bootstrap_server()
        return
    broker = broker_process(port=free_port(), home=stack_home)
    running = await broker.start(detach=False)
    try:
        yield running.address
    finally:
        await broker.stop(grace_s=5.0)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chat_base_url(stack_home: Path) -> AsyncIterator[str]:
    """An OpenAI-compatible base URL (`http://127.0.0.1:PORT/v1`): RAGBUS_CHAT_BASE_URL or the local
    SmolLM2 server. Skips the test where the model or xllamacpp is not installed."""
    if base_url := os.environ.get("RAGBUS_CHAT_BASE_URL"):
        yield base_url
        return
    try:
        server = model_process(port=free_port(), home=stack_home)
    except NotInstalledError as exc:
        pytest.skip(f"no chat model server: {exc} (or set RAGBUS_CHAT_BASE_URL)")
    running = await server.start(detach=False)
    try:
        yield running.address
    finally:
        await server.stop(grace_s=5.0)


@pytest.fixture(scope="session")
def qdrant_url() -> str | None:
    """A Qdrant server (QDRANT_URL), or None: tests then use the embedded store."""
    return os.environ.get("QDRANT_URL") or None


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, topic_prefix: str) -> KafkaSettings:
    """Kafka settings for one test: the session's broker, the test's own topic prefix, local timeouts."""
    return local_kafka_settings(kafka_bootstrap, topic_prefix)
