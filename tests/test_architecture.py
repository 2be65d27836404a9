"""The architecture, checked: services never import each other, and each has the expected shape."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("ingest", "embed", "orchestrator", "guard", "monitor")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_no_other_service(service: str) -> None:
    others = {f"ragbus.{s}" for s in SERVICES if s != service} | {"ragbus.stack", "ragbus.client"}
    src = REPO / "services" / service / "src"
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in src.rglob("*.py")
        for name in _imports(path)
        if any(name == o or name.startswith(o + ".") for o in others)
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("service", SERVICES)
def test_service_has_settings_app_factory_and_no_module_level_broker(service: str) -> None:
    pkg = REPO / "services" / service / "src" / "ragbus" / service
    assert (pkg / "settings.py").exists()
    assert (REPO / "services" / service / "pyproject.toml").exists()
    app = ast.parse((pkg / "app.py").read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "create_app" for n in app.body)
    for node in app.body:  # no `broker = KafkaBroker(...)` or `app = FastStream(...)` globals
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            assert name not in {"KafkaBroker", "FastStream", "RagbusApp", "make_broker"}, (
                f"{service}/app.py creates a {name} at import time"
            )


def test_libraries_do_not_import_services() -> None:
    services = {f"ragbus.{s}" for s in SERVICES}
    for lib in ("common", "vectors"):
        for path in (REPO / "libs" / lib / "src").rglob("*.py"):
            bad = {n for n in _imports(path) if any(n == s or n.startswith(s + ".") for s in services)}
            assert not bad, f"{path.relative_to(REPO)} imports {bad}"


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
