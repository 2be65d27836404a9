"""PostgreSQL on this machine: checked where the stack's database URL points, started when it is down.

The machine's own server serves (`MONITOR_DATABASE_URL`, `DATABASE_URL`, or the common default). Where
it is down and local, the Debian/Ubuntu cluster for its port is started with `pg_ctlcluster`, and a
marker in `$RAGBUS_HOME/run` remembers that ragbus started it: only such a cluster is stopped again,
and only while nobody else uses it (another stack beside this one, any other client).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ragbus.common.settings import ragbus_home
from ragbus.stack.process import LocalInfraError, NotReady

NAME = "postgres"


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresRefusedError(LocalInfraError):
    """The server answers but refuses the connection (auth, missing database): starting it won't help."""


async def ping_postgres(url: str, *, timeout_s: float = 5.0) -> None:
    """Connect and run `SELECT 1`; NotReady when the server cannot be reached or is still starting."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=timeout_s)
    except asyncpg.CannotConnectNowError as exc:  # "the database system is starting up"
        raise NotReady(str(exc)) from None
    except asyncpg.PostgresError as exc:
        raise PostgresRefusedError(f"PostgreSQL at {redact(url)} refused the connection: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise NotReady(f"PostgreSQL not reachable at {redact(url)}: {exc or type(exc).__name__}") from None
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class PostgresStatus:
    url: str
    up: bool
    managed: bool  # ragbus started the cluster (so `stop` may stop it)
    detail: str = ""

    def line(self) -> str:
        state = "running" if self.up else "stopped"
        who = " (started by ragbus)" if self.managed and self.up else ""
        return f"postgres: {state} at {redact(self.url)}{who}" + (f": {self.detail}" if self.detail else "")


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname
    return host in (None, "", "127.0.0.1", "localhost", "::1") or (host or "").startswith("/")


def _marker(home: Path | None) -> Path:
    return (home or ragbus_home()) / "run" / "postgres.started"


def _cluster_for(url: str) -> tuple[str, str]:
    """The (version, name) of the local pg_ctlcluster cluster configured for the URL's port."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        raise LocalInfraError(
            f"PostgreSQL is not reachable at {redact(url)} and pg_ctlcluster is not available to start it; "
            "start PostgreSQL yourself or set DATABASE_URL"
        )
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    port = str(urlsplit(url).port or 5432)
    clusters = [line.split() for line in out.stdout.splitlines() if len(line.split()) >= 4]
    for version, name, cluster_port, *_ in clusters:
        if cluster_port == port:
            return version, name
    raise LocalInfraError(
        f"PostgreSQL is not reachable at {redact(url)} and no local cluster listens on port {port} "
        f"(pg_lsclusters: {', '.join(f'{c[0]}/{c[1]}:{c[2]}' for c in clusters) or 'none'})"
    )


def _pg_ctlcluster(version: str, name: str, action: str) -> None:
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise LocalInfraError(
            f"pg_ctlcluster {version} {name} {action} failed ({done.returncode}): "
            f"{reason[-1] if reason else 'no output'} (run it as root or the cluster's owner)"
        )


async def postgres_status(url: str, *, home: Path | None = None) -> PostgresStatus:
    """Whether PostgreSQL answers at `url`, and whether ragbus started it."""
    managed = _marker(home).exists()
    try:
        await ping_postgres(url)
    except NotReady as exc:
        return PostgresStatus(url, False, managed, str(exc))
    return PostgresStatus(url, True, managed)


async def ensure_postgres(url: str, *, home: Path | None = None, timeout_s: float = 30.0) -> PostgresStatus:
    """Check PostgreSQL answers at `url`; start the local cluster if it is down and local, and wait."""
    try:
        await ping_postgres(url)
        return PostgresStatus(url, True, _marker(home).exists())
    except NotReady as exc:
        if not _is_local(url):
            raise LocalInfraError(f"{exc}; it is not on this machine, so ragbus cannot start it") from None
    version, name = _cluster_for(url)
    await asyncio.to_thread(_pg_ctlcluster, version, name, "start")
    marker = _marker(home)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{version} {name}\n")
    return await _wait_started(url, version, name, timeout_s)


async def _wait_started(url: str, version: str, name: str, timeout_s: float) -> PostgresStatus:
    cluster = f"{version}/{name}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await ping_postgres(url)
            return PostgresStatus(url, True, True, f"started cluster {cluster}")
        except NotReady as exc:
            if time.monotonic() > deadline:
                raise LocalInfraError(
                    f"started cluster {cluster} but it is not ready after {timeout_s:.0f}s ({exc}); "
                    f"see /var/log/postgresql/postgresql-{version}-{name}.log"
                ) from None
        await asyncio.sleep(0.2)


async def other_connections(url: str, *, timeout_s: float = 5.0) -> int:
    """How many client connections besides this one the server has (0 when it does not answer)."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return 0
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return count


async def stop_postgres(url: str, *, home: Path | None = None) -> str:
    """Stop the cluster only if ragbus started it and nobody else is connected (another stack, another
    program); a server someone else runs is left alone."""
    marker = _marker(home)
    try:
        version, name = marker.read_text().split()[:2]
    except (FileNotFoundError, ValueError):
        return f"postgres: left running at {redact(url)} (not started by ragbus)"
    if users := await other_connections(url):
        return (
            f"postgres: left running at {redact(url)} (started by ragbus, but {users} other "
            f"connection{'' if users == 1 else 's'} use it; `ragbus down` stops it once unused)"
        )
    await asyncio.to_thread(_pg_ctlcluster, version, name, "stop")
    marker.unlink(missing_ok=True)
    return f"postgres: stopped cluster {version}/{name}"
