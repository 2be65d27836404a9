"""Topic creation: compose's one-shot `topic-init` runs `ragbus topics create` (ragbus.common.admin)
before any service starts, with the services' own topic settings.

- The plan (what to create, what is there, what is too small) as a unit.
- The compose wiring, through the real Compose v2 binary.
- The command compose runs, against a real Kafka-protocol broker (integration): it creates every topic
  and its .dlq, and a second run changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import CliRunner

from ragbus.client.cli import main as ragbus_cli
from ragbus.common.admin import partition_counts, plan_topics
from ragbus.common.topics import ALL, DLQ_SUFFIX, Topics

from .conftest import REPO, SERVICES, Compose, read_toml, workspace_pyprojects

TOPIC_INIT = ["ragbus", "topics", "create", "--replication-factor", "1"]


def test_plan_creates_the_missing_and_never_grows_a_topic() -> None:
    result = plan_topics(["a", "b", "c"], {"b": 6, "c": 3}, partitions=6)
    assert result.missing == ("a",)
    assert result.existing == ("b", "c")
    assert result.short == (("c", 3),)  # reported, never grown


def test_plan_takes_a_count_per_topic_and_dead_letter_topics_get_their_own() -> None:
    wanted = partition_counts(["a", "a.dlq", "b"], partitions=6, dlq_partitions=1)
    assert wanted == {"a": 6, "a.dlq": 1, "b": 6}
    result = plan_topics(wanted, {"a.dlq": 1, "b": 8}, wanted)
    assert (result.missing, result.short) == (("a",), ())
    assert plan_topics(wanted, {"a.dlq": 1, "b": 3}, wanted).short == (("b", 3),)


def test_plan_asks_for_each_topic_once() -> None:
    assert plan_topics(["a", "b", "a"], {}, partitions=1).missing == ("a", "b")


@pytest.mark.parametrize("prefix", ["", "staging."])
def test_every_topic_and_its_dead_letter_topic_is_created(prefix: str) -> None:
    """`ragbus topics list` shows the names `topics create` creates, under KAFKA_TOPIC_PREFIX."""
    result = CliRunner().invoke(ragbus_cli, ["topics", "list"], env={"KAFKA_TOPIC_PREFIX": prefix or None})
    assert result.exit_code == 0, result.output
    expected = [*ALL, *(f"{t}.dlq" for t in ALL)]
    assert result.output.split() == [f"{prefix}{t}" for t in expected]


def test_topic_init_runs_before_the_services_with_their_topic_settings(compose: Compose) -> None:
    services = compose.config(env={"RAGBUS_TOPIC_PREFIX": "staging.", "RAGBUS_TOPIC_PARTITIONS": "12"})[
        "services"
    ]
    init = services["topic-init"]
    assert init["command"] == TOPIC_INIT
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init["environment"]["KAFKA_PARTITIONS"] == "12"  # `topics create` defaults to it
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "12"
    for name in (*SERVICES, "topic-init"):
        env = services[name]["environment"]
        assert (env["KAFKA_TOPIC_PREFIX"], env["KAFKA_BOOTSTRAP"]) == ("staging.", "kafka:9092"), name
    for name in SERVICES:
        assert services[name]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"


def test_default_partitions_are_six(services: dict[str, dict[str, Any]]) -> None:
    assert services["topic-init"]["environment"]["KAFKA_PARTITIONS"] == "6"


def test_the_image_has_the_command_topic_init_runs() -> None:
    """`ragbus` is a console script of a workspace package (so the image has it), and it takes the
    arguments compose passes."""
    scripts: dict[str, str] = {}
    for pyproject in workspace_pyprojects():
        scripts |= read_toml(pyproject)["project"].get("scripts", {})
    assert scripts.get(TOPIC_INIT[0]) == "ragbus.client.cli:main", (
        f"no `{TOPIC_INIT[0]}` script in {REPO.name}'s packages"
    )
    # Options are parsed before --help is acted on: an unknown one would fail here.
    result = CliRunner().invoke(ragbus_cli, [*TOPIC_INIT[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "--partitions" in result.output


def ragbus_executable() -> str:
    """The `ragbus` console script of this environment, as the image has it on PATH."""
    beside = Path(sys.executable).parent / "ragbus"
    found = str(beside) if beside.is_file() else shutil.which("ragbus")
    if found is None:
        pytest.skip("the ragbus console script is not installed (bash scripts/setup.sh)")
    return found


@pytest.mark.integration
async def test_topic_init_against_a_broker(
    kafka_bootstrap: str, topic_prefix: str, services: dict[str, dict[str, Any]]
) -> None:
    """Compose's topic-init command, as the container runs it (a subprocess with the container's Kafka
    variables, pointed at the test broker)."""
    command = services["topic-init"]["command"]
    assert command[0] == "ragbus"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "KAFKA_PARTITIONS": services["topic-init"]["environment"]["KAFKA_PARTITIONS"],
    }
    names = Topics(topic_prefix).all_with_dlq
    assert len(names) == 2 * len(ALL)

    async def run() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            ragbus_executable(),
            *command[1:],
            "--timeout",
            "30",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode()

    code, out = await run()
    assert code == 0, out
    assert f"{len(names)} topics created with 6 partitions (1 for .dlq topics), 0 already present" in out

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(names))}
    finally:
        await admin.close()
    assert described == {n: 1 if n.endswith(DLQ_SUFFIX) else 6 for n in names}

    code, out = await run()  # again: nothing to do, still success
    assert code == 0, out
    assert f"0 topics created with 6 partitions (1 for .dlq topics), {len(names)} already present" in out
    assert "fewer partitions" not in out
