"""Fixtures shared by every package's tests.

Endpoints come from the environment (KAFKA_BOOTSTRAP, DATABASE_URL, QDRANT_URL, RAGBUS_CHAT_BASE_URL);
where one is unset, the session starts the embedded default (see ragbus.stack.testing). Each test gets
its own topic prefix, database schema and vector collection, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ragbus.common.refdata import ReferenceDataNotFound, require_data_dir
from ragbus.common.settings import database_url

pytest_plugins = ["ragbus.stack.testing"]

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared reference data (SciFact, guard and PII sets); tests that need it skip without it."""
    try:
        return require_data_dir()
    except ReferenceDataNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture
def unique() -> str:
    """A short id unique to this test, for topic prefixes, schemas and collections."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def topic_prefix(unique: str) -> str:
    return f"{unique}."


@pytest.fixture(scope="session", name="database_url")
def database_url_fixture() -> str:
    return database_url()


@pytest.fixture
async def pg_schema(database_url: str, unique: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    asyncpg = pytest.importorskip("asyncpg")
    try:
        conn = await asyncpg.connect(database_url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {database_url}: {exc}")
    try:
        yield unique
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{unique}" CASCADE')
        await conn.close()


@pytest.fixture
def ragbus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private RAGBUS_HOME (span file, vector store, pid files) for one test."""
    home = tmp_path / "ragbus-home"
    home.mkdir()
    monkeypatch.setenv("RAGBUS_HOME", str(home))
    return home
