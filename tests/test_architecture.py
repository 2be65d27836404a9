"""The architecture, checked: every service has the same shape, services never import each other, and
only a service's `app.py` touches Kafka (and `cli.py`, a service's `ragbus` command, which builds its
dependencies the way `app.py` does: both are composition roots, nothing imports them).

One service pattern (docs/architecture.md): `settings.py`, pure domain modules, `ports.py` (Protocols and
the types they return), `adapters/`, one use-case module `usecases.py` whose functions take a deps
dataclass and return events, and `app.py`, whose `create_app(settings, deps)` wires a `Service` and
handlers of a few lines. The services are what `services/*/` holds; nothing lists them by hand.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))
# Where first-party modules live: every package's src/ directory.
SOURCE_ROOTS = sorted(REPO.glob("libs/*/src")) + sorted(REPO.glob("services/*/src"))

# Third-party packages that are the bus, and the first-party modules that wire it.
KAFKA_PACKAGES = frozenset({"faststream", "aiokafka", "kafka", "confluent_kafka"})
KAFKA_MODULES = frozenset(
    f"ragbus.common.{m}"
    for m in ("app", "admin", "broker", "bus", "kafka", "middleware", "service", "testing")
)
# The modules of the same name in every service (the layer each file is).
REQUIRED_FILES = ("app.py", "usecases.py", "settings.py")
OLD_USE_CASE_HOMES = ("service.py", "indexing.py", "answering.py")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """Modules a file imports, at any depth (a lazy import counts), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for child in node.body for n in ast.walk(child)}  # fmt: skip
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from ragbus.common import topics` imports the module ragbus.common.topics
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_file(module: str, roots: Iterable[Path]) -> Path | None:
    parts = module.split(".")
    for root in roots:
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


def kafka_path(module: str, roots: Iterable[Path]) -> list[str] | None:
    """The import chain by which `module` reaches Kafka (faststream, aiokafka or a wiring module of
    ragbus.common), following first-party imports transitively; None if it never does."""
    roots = list(roots)
    seen: set[str] = set()
    stack: list[list[str]] = [[module]]
    while stack:
        chain = stack.pop()
        current = chain[-1]
        if current in seen:
            continue
        seen.add(current)
        path = module_file(current, roots)
        if path is None:
            continue
        for name in sorted(imports_of(path)):
            if name.split(".")[0] in KAFKA_PACKAGES or name in KAFKA_MODULES:
                return [*chain, name]
            if name.startswith("ragbus.") and module_file(name, roots) is not None:
                stack.append([*chain, name])
    return None


def service_modules(service: str, root: Path = REPO) -> list[str]:
    src = root / "services" / service / "src"
    return sorted(
        ".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for p in (src / "ragbus" / service).rglob("*.py")
    )


def test_the_services_are_the_five_of_the_architecture() -> None:
    assert {"ingest", "embed", "orchestrator", "guard", "monitor"} <= set(SERVICES)


# Services that are clients of the bus themselves may use the client library: the HTTP gateway asks
# and waits as the CLI does (ARCHITECTURE.md: "one more Kafka client"), rather than through a second
# implementation of waiting for replies. Only its composition roots reach Kafka (the rule below).
BUS_CLIENTS = frozenset({"gateway"})


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_no_other_service(service: str) -> None:
    others = {f"ragbus.{s}" for s in SERVICES if s != service} | {"ragbus.stack"}
    if service not in BUS_CLIENTS:
        others.add("ragbus.client")
    src = REPO / "services" / service / "src"
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in src.rglob("*.py")
        for name in imports_of(path)
        if any(name == o or name.startswith(o + ".") for o in others)
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("service", SERVICES)
def test_only_app_py_reaches_kafka(service: str) -> None:
    offenders = {}
    for module in service_modules(service):
        if module in (f"ragbus.{service}.app", f"ragbus.{service}.cli"):
            continue
        chain = kafka_path(module, SOURCE_ROOTS)
        if chain is not None:
            offenders[module] = " -> ".join(chain)
    assert not offenders, f"only app.py (and cli.py) may reach Kafka: {offenders}"


@pytest.mark.parametrize("service", SERVICES)
def test_nothing_imports_a_composition_root(service: str) -> None:
    roots = {f"ragbus.{service}.app", f"ragbus.{service}.cli"}
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in (REPO / "services" / service / "src").rglob("*.py")
        if path.stem not in ("app", "cli")
        for name in imports_of(path)
        if name in roots
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_files_for_the_same_layer(service: str) -> None:
    pkg = REPO / "services" / service / "src" / "ragbus" / service
    assert (REPO / "services" / service / "pyproject.toml").exists()
    missing = [f for f in REQUIRED_FILES if not (pkg / f).exists()]
    assert not missing, f"{service} lacks {missing}"
    stale = [f for f in OLD_USE_CASE_HOMES if (pkg / f).exists()]
    assert not stale, f"{service}: use cases live in usecases.py, not {stale}"


@pytest.mark.parametrize("service", SERVICES)
def test_app_py_is_a_service_and_handlers(service: str) -> None:
    path = REPO / "services" / service / "src" / "ragbus" / service / "app.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    create = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "create_app"), None)
    assert create is not None, "app.py defines create_app(settings, deps)"
    assert [a.arg for a in create.args.args] == ["settings", "deps"]
    assert "ragbus.common.service" in imports_of(path), "create_app builds a ragbus.common.service.Service"
    for node in tree.body:  # no `broker = KafkaBroker(...)` or `app = FastStream(...)` globals
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            assert name not in {"KafkaBroker", "FastStream", "RagbusApp", "make_broker", "Service"}, (
                f"{service}/app.py creates a {name} at import time"
            )
    # Handlers are wiring: a few lines each, the work is in usecases.py.
    for handler in ast.walk(create):
        if isinstance(handler, ast.AsyncFunctionDef) and handler.decorator_list:
            lines = (handler.end_lineno or handler.lineno) - handler.body[0].lineno + 1
            assert lines <= 10, f"{service}: handler {handler.name} has {lines} lines"


@pytest.mark.parametrize("service", SERVICES)
def test_the_trust_file_grants_each_service_the_topics_it_publishes(service: str) -> None:
    """ragbus.common.trust.SERVICE_TOPICS (what `ragbus trust init` grants) and each app's
    `publishes=[...]` are one list: a service publishing an event its grant lacks would have every
    such record refused where trust is enforced."""
    from ragbus.common import events
    from ragbus.common.trust import SERVICE_TOPICS

    tree = ast.parse((REPO / "services" / service / "src" / "ragbus" / service / "app.py").read_text())
    declared = {
        getattr(events, element.id).topic
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "publishes" and isinstance(node.value, ast.List)
        for element in node.value.elts
        if isinstance(element, ast.Name)
    }
    assert declared, f"{service}/app.py declares what it publishes (Service(..., publishes=[...]))"
    assert declared == set(SERVICE_TOPICS[service])


@pytest.mark.parametrize("service", SERVICES)
def test_ports_own_the_types_they_return(service: str) -> None:
    path = REPO / "services" / service / "src" / "ragbus" / service / "ports.py"
    if not path.exists():
        pytest.skip(f"{service} uses shared ports (ragbus.vectors.ports)")
    own = {n for n in imports_of(path) if n.startswith(f"ragbus.{service}.")}
    assert not own, f"{service}/ports.py imports its own implementations' modules: {own}"


def test_libraries_do_not_import_services() -> None:
    services = {f"ragbus.{s}" for s in SERVICES}
    # Every library but the stack, whose runner hosts the services by their entry points.
    libs = [p.parent.name for p in (REPO / "libs").glob("*/pyproject.toml") if p.parent.name != "stack"]
    assert {"common", "vectors", "client", "shields"} <= set(libs)
    for lib in libs:
        for path in (REPO / "libs" / lib / "src").rglob("*.py"):
            bad = {n for n in imports_of(path) if any(n == s or n.startswith(s + ".") for s in services)}
            assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_the_client_does_not_import_the_stack() -> None:
    for path in (REPO / "libs" / "client" / "src").rglob("*.py"):
        bad = {n for n in imports_of(path) if n == "ragbus.stack" or n.startswith("ragbus.stack.")}
        assert not bad, f"{path.relative_to(REPO)} imports {bad} (the stack plugs its commands in instead)"


def test_topic_names_live_only_in_the_topics_module() -> None:
    from ragbus.common import topics

    names = set(topics.ALL) | {topics.dlq(t) for t in topics.ALL}
    allowed = REPO / "libs/common/src/ragbus/common/topics.py"
    for root in ("libs", "services"):
        for path in (REPO / root).rglob("src/**/*.py"):
            if path == allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in names:
                    pytest.fail(f"{path.relative_to(REPO)}:{node.lineno} spells topic {node.value!r}")


# --- the checker itself, on a made-up service: it must fail where the rule is broken -------------------


def _fake_service(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "services" / "fake" / "src"
    for name, text in files.items():
        path = src / "ragbus" / "fake" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return src


@pytest.mark.parametrize(
    ("files", "chain"),
    [
        ({"domain.py": "import faststream\n"}, ["ragbus.fake.domain", "faststream"]),
        (
            {"domain.py": "from ragbus.fake.helpers import x\n", "helpers.py": "from aiokafka import A\n"},
            ["ragbus.fake.domain", "ragbus.fake.helpers", "aiokafka"],
        ),
        (
            {"domain.py": "def f():\n    from ragbus.common.bus import Bus\n"},
            ["ragbus.fake.domain", "ragbus.common.bus"],
        ),
        (
            {"domain.py": "from ragbus.common import middleware\n"},
            ["ragbus.fake.domain", "ragbus.common.middleware"],
        ),
    ],
)
def test_the_checker_finds_a_domain_module_that_reaches_kafka(
    tmp_path: Path, files: dict[str, str], chain: list[str]
) -> None:
    src = _fake_service(tmp_path, files)
    assert kafka_path("ragbus.fake.domain", [src, *SOURCE_ROOTS]) == chain


def test_the_checker_passes_a_pure_module_and_type_only_imports(tmp_path: Path) -> None:
    src = _fake_service(
        tmp_path,
        {
            "domain.py": "from typing import TYPE_CHECKING\nfrom ragbus.common.events import DocsChunked\n"
            "if TYPE_CHECKING:\n    from faststream.kafka import KafkaMessage\n",
        },
    )
    assert kafka_path("ragbus.fake.domain", [src, *SOURCE_ROOTS]) is None


def test_this_checker_sees_the_same_modules_python_imports() -> None:
    # A guard against the checker resolving nothing (and so passing everything).
    assert module_file("ragbus.common.events", SOURCE_ROOTS) is not None
    assert kafka_path("ragbus.common.service", SOURCE_ROOTS) is not None
