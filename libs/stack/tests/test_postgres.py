"""PostgreSQL: checked where DATABASE_URL points; started only when local and down; never stopped
unless ragbus started it. The tests never stop the machine's server (other tests use it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ragbus.stack.postgres import (
    PostgresRefusedError,
    ensure_postgres,
    postgres_status,
    redact,
    stop_postgres,
)
from ragbus.stack.process import LocalInfraError, free_port

pytestmark = pytest.mark.timeout(60)


async def reachable(url: str) -> None:
    if not (await postgres_status(url)).up:
        pytest.skip(f"PostgreSQL not reachable at {url}")


@pytest.mark.integration
async def test_a_running_server_is_found_and_left_as_it_is(database_url: str, ragbus_home: Path) -> None:
    await reachable(database_url)
    status = await ensure_postgres(database_url)
    assert (status.up, status.managed) == (True, False)
    assert status.line() == f"postgres: running at {redact(database_url)}"
    # ragbus did not start it, so `stop` leaves it alone.
    assert (
        await stop_postgres(database_url)
        == f"postgres: left running at {redact(database_url)} (not started by ragbus)"
    )
    assert (await postgres_status(database_url)).up


@pytest.mark.integration
async def test_a_server_that_refuses_the_database_is_an_error_not_a_start(
    database_url: str, ragbus_home: Path
) -> None:
    await reachable(database_url)
    url = database_url.rsplit("/", 1)[0] + "/ragbus_no_such_db"
    with pytest.raises(
        PostgresRefusedError, match='refused the connection: database "ragbus_no_such_db" does not exist'
    ):
        await ensure_postgres(url)


async def test_a_remote_server_that_is_down_is_not_started(ragbus_home: Path) -> None:
    url = "postgresql://postgres@db.invalid:5432/test"
    with pytest.raises(LocalInfraError, match=r"not reachable at .*db\.invalid.*it is not on this machine"):
        await ensure_postgres(url)


async def test_without_pg_ctlcluster_the_error_says_to_start_postgres(
    ragbus_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    with pytest.raises(
        LocalInfraError, match="pg_ctlcluster is not available to start it; start PostgreSQL yourself"
    ):
        await ensure_postgres(url)
    assert not (ragbus_home / "run" / "postgres.started").exists()


async def test_a_local_port_without_a_cluster_is_named_in_the_error(ragbus_home: Path) -> None:
    if shutil.which("pg_lsclusters") is None:
        pytest.skip("no pg_lsclusters here")
    port = free_port()
    with pytest.raises(LocalInfraError, match=rf"no local cluster listens on port {port} \(pg_lsclusters: "):
        await ensure_postgres(f"postgresql://postgres@127.0.0.1:{port}/test")


def test_passwords_never_reach_messages() -> None:
    assert redact("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact("postgresql://postgres@127.0.0.1/test") == "postgresql://postgres@127.0.0.1/test"


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_local_cluster_that_is_down_is_started_and_then_stopped_again(ragbus_home: Path) -> None:
    """Creates a throwaway cluster (opt-in: it changes /etc/postgresql; needs root)."""
    if os.environ.get("RAGBUS_TEST_PG_CLUSTER") != "1" or shutil.which("pg_createcluster") is None:
        pytest.skip("set RAGBUS_TEST_PG_CLUSTER=1 (as root, with postgresql-common) to run this")

    async def run(argv: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=check)

    version = await run(["pg_lsclusters", "--no-header"], check=True)
    version_id = version.stdout.split()[0]
    name, port = f"ragbus{free_port()}", free_port()
    await run(
        [
            "pg_createcluster",
            version_id,
            name,
            "-p",
            str(port),
            "--",
            "--auth-host=trust",
            "--auth-local=trust",
        ],
        check=True,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        assert not (await postgres_status(url)).up
        started = await ensure_postgres(url, timeout_s=60)
        assert (started.up, started.managed) == (True, True)
        assert (
            started.line()
            == f"postgres: running at {url} (started by ragbus): started cluster {version_id}/{name}"
        )
        assert await stop_postgres(url) == f"postgres: stopped cluster {version_id}/{name}"
        assert not (await postgres_status(url)).up
    finally:
        await run(["pg_dropcluster", "--stop", version_id, name], check=False)


@pytest.mark.integration
async def test_a_cluster_ragbus_started_is_left_running_while_others_use_it(
    ragbus_home: Path, database_url: str
) -> None:
    """Another stack beside this one (or any program) still connected: `down` must not stop it."""
    import asyncpg

    try:
        other = await asyncpg.connect(database_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {database_url}: {exc}")
    marker = ragbus_home / "run" / "postgres.started"
    marker.parent.mkdir(parents=True)
    marker.write_text("99 not-a-cluster\n")  # were it stopped, pg_ctlcluster would fail on this
    try:
        line = await stop_postgres(database_url, home=ragbus_home)
    finally:
        await other.close()
    assert line.startswith(f"postgres: left running at {database_url} (started by ragbus, but ")
    assert line.endswith("use it; `ragbus down` stops it once unused)")
    assert marker.exists()  # a later `down` stops it once nobody uses it
