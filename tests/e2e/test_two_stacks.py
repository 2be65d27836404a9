"""Two stacks on one machine, as two users (or a user and a test run) would have them: each `ragbus up`
with its own RAGBUS_HOME and ports, sharing the machine's PostgreSQL. Both answer from their own
documents, each monitor writes to its own schema, and `status` / `down` of one never touch the other.

Every command is the CLI as a user types it, configured only by RAGBUS_* variables (no KAFKA_BOOTSTRAP:
the client commands find the stack's broker from RAGBUS_BROKER_PORT), and documents are ingested by
reference from the directory `ragbus up` was started from.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ragbus.common.settings import gateway_schema_for, monitor_schema_for
from ragbus.stack.process import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.model, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
NOTE = """# The zorblax fleet

The zorblax fleet of the second stack has exactly seven hovercraft, all of them painted teal.
"""
OWN_VARIABLES = (
    "KAFKA_", "RAGBUS_", "ORCHESTRATOR_", "OTEL_", "INGEST_", "MONITOR_", "GATEWAY_", "DATABASE_URL",
)  # fmt: skip


@dataclass
class Stack:
    name: str
    home: Path
    cwd: Path
    env: dict[str, str]
    exe: str

    @property
    def schema(self) -> str:
        return monitor_schema_for(self.home)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['RAGBUS_GATEWAY_PORT']}"

    def __call__(self, *args: str, ok: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.exe, *args], env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=timeout
        )
        if ok:
            assert result.returncode == 0, (
                f"[{self.name}] ragbus {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
            )
        return result


def make_stack(name: str, home: Path, cwd: Path, database_url: str) -> Stack:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)}
    env.update(
        RAGBUS_HOME=str(home),
        RAGBUS_BROKER_PORT=str(free_port()),
        RAGBUS_MODEL_PORT=str(free_port()),
        RAGBUS_HEALTH_PORT=str(free_port()),
        RAGBUS_GATEWAY_PORT=str(free_port()),
        MONITOR_DATABASE_URL=database_url,
    )
    exe = shutil.which("ragbus", path=str(Path(sys.executable).parent)) or "ragbus"
    return Stack(name, home, cwd, env, exe)


def drop_schema(database_url: str, schema: str) -> None:
    subprocess.run(
        ["psql", database_url, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
        capture_output=True,
        check=False,
    )


def questions(stack: Stack, database_url: str, query_id: str, *, wait_for: int = 0) -> int:
    """How many `queries.submitted` events with this id the stack's monitor recorded (waiting up to
    30 s for `wait_for` of them: the monitor writes asynchronously)."""
    sql = (
        f'SELECT count(*) FROM "{stack.schema}".events '
        f"WHERE type = 'io.ragbus.queries.submitted.v1' AND data ->> 'query_id' = '{query_id}'"
    )
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            ["psql", database_url, "-tAc", sql], capture_output=True, text=True, check=False
        )
        found = int(done.stdout.strip()) if done.returncode == 0 else 0
        if found >= wait_for or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[tuple[Stack, Stack]]:
    if shutil.which("psql") is None:
        pytest.skip("psql is needed to look into the monitors' schemas")
    first = make_stack("first", tmp_path_factory.mktemp("first") / ".ragbus", REPO, database_url)
    work = tmp_path_factory.mktemp("second-work")
    (work / "notes.md").write_text(NOTE, encoding="utf-8")
    # The second stack's home lies inside the directory it reads documents from: ingest must refuse it.
    second = make_stack("second", work / ".ragbus-second", work, database_url)
    try:
        yield first, second
    finally:
        for stack in (second, first):
            stack("down", ok=False)
            drop_schema(database_url, stack.schema)
            drop_schema(database_url, gateway_schema_for(stack.home))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def query_id(ask: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"^query (\S+)  ·  rate it: ragbus feedback \1 up\|down$", ask.stdout, re.M)
    assert found, ask.stdout
    return found.group(1)


def test_a_second_stack_beside_the_first_on_other_ports_and_homes(
    stacks: tuple[Stack, Stack], database_url: str
) -> None:
    first, second = stacks
    assert first.schema != second.schema

    for stack in (first, second):
        up = stack("up", "--detach", "--no-model")
        assert f"127.0.0.1:{stack.env['RAGBUS_BROKER_PORT']}" in up.stdout, up.stdout  # RAGBUS_BROKER_PORT
        assert f"schema {stack.schema}" in up.stdout, up.stdout
        assert f"readable under {stack.cwd} (INGEST_ALLOWED_ROOTS), never under {stack.home}" in up.stdout
        assert f"web          ready    {stack.gateway}/" in up.stdout, up.stdout  # RAGBUS_GATEWAY_PORT
        assert "stack is up" in up.stdout

    # Each reads documents by reference from the directory it was started from.
    ingest = first("ingest", "--by-reference", "docs/cascade.md")
    assert re.search(r"^1 document, \d+ chunks? indexed in ", ingest.stdout, re.M), ingest.stdout
    second("ingest", "--by-reference", "notes.md")
    # ... but never the stack's own files, though they lie under that directory.
    own_log = second("ingest", "--by-reference", ".ragbus-second/logs/services.log", ok=False)
    assert own_log.returncode == 1
    assert "inside a denied root (INGEST_DENIED_ROOTS" in own_log.stderr, own_log.stderr

    # Each answers from its own documents.
    ask_first = first("ask", "How does the cascade decide to call the model?")
    assert re.search(r"^\s+\[1\] cascade\.md", ask_first.stdout, re.M), ask_first.stdout
    ask_second = second("ask", "How many hovercraft does the zorblax fleet have?")
    assert re.search(r"^\s+\[1\] notes\.md", ask_second.stdout, re.M), ask_second.stdout
    assert "seven hovercraft" in ask_second.stdout
    elsewhere = first("ask", "How many hovercraft does the zorblax fleet have?", ok=False)
    assert "notes.md" not in elsewhere.stdout  # answered (or withheld) without the other stack's note

    # Each monitor records its own questions, in its own schema, and knows only those.
    first_id, second_id = query_id(ask_first), query_id(ask_second)
    assert second("feedback", second_id, "up").stdout == "feedback recorded\n"
    unknown = second("feedback", first_id, "down", ok=False)
    assert (unknown.returncode, unknown.stderr) == (
        1,
        f"ragbus: error: no question with id {first_id} on record for tenant default\n",
    )
    assert questions(first, database_url, first_id, wait_for=1) == 1
    assert questions(second, database_url, first_id) == 0

    # Each gateway serves its own stack, with keys of its own: one stack's key is refused by the other.
    keys = {s.name: s("keys", "create", "--tenant", "default").stdout.strip() for s in (first, second)}
    for stack, other in ((first, second), (second, first)):
        mine = httpx.get(f"{stack.gateway}/v1/models", headers=bearer(keys[stack.name]))
        assert mine.status_code == 200, mine.text
        theirs = httpx.get(f"{stack.gateway}/v1/models", headers=bearer(keys[other.name]))
        assert theirs.status_code == 401, theirs.text
    question = {"role": "user", "content": "How many hovercraft does the zorblax fleet have?"}
    chat = httpx.post(
        f"{second.gateway}/v1/chat/completions",
        headers=bearer(keys["second"]),
        json={"model": "ragbus", "messages": [question]},
        timeout=120,
    )
    assert chat.status_code == 200, chat.text
    assert "seven hovercraft" in chat.json()["choices"][0]["message"]["content"]

    # A document that is not there is said to be so.
    missing = first("delete", "no-such-document.md", ok=False)
    assert (missing.returncode, missing.stderr) == (
        1,
        "ragbus: error: document no-such-document.md not found for tenant default: nothing to delete\n",
    )

    # `down` of the second stops the second only.
    second_status = second("status").stdout
    assert f"127.0.0.1:{second.env['RAGBUS_BROKER_PORT']}" in second_status
    assert f"127.0.0.1:{first.env['RAGBUS_BROKER_PORT']}" not in second_status
    down = second("down")
    assert "services: stopped" in down.stdout
    assert "broker: stopped" in down.stdout
    assert "postgres: left running" in down.stdout
    status = first("status").stdout
    assert "services: running" in status, status
    assert f"broker: running at 127.0.0.1:{first.env['RAGBUS_BROKER_PORT']}" in status, status
    again = first("ask", "How does the cascade decide to call the model?")
    assert re.search(r"^\s+\[1\] cascade\.md", again.stdout, re.M), again.stdout
    assert "services: stopped" in second("status").stdout

    down = first("down")
    assert "services: stopped" in down.stdout
    assert "broker: stopped" in down.stdout
